//! The `MOCKED` store's invitations and their conduits.
//!
//! Same lock and same discipline as the parent module: every operation locks
//! once, checks in the reference PostgreSQL order, writes, unlocks. The
//! conduit rules themselves are [`Conduit::talk`] / [`Conduit::listen`],
//! shared with PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use parsec_protocol::types::*;

use super::{MemoryStore, OrgState};
use crate::backend::*;

/// Invitations of one organization, deleted ones included (a deleted token
/// must still answer "already deleted", never "not found").
#[derive(Debug, Default)]
pub(super) struct InviteState {
    invitations: HashMap<Uuid, StoredInvitation>,
    /// Creation counter: orders invitations created in the same microsecond.
    created: u64,
}

#[derive(Debug)]
struct StoredInvitation {
    token: Uuid,
    kind: InvitationKind,
    greeter: UserId,
    created_on: DateTime,
    seq: u64,
    deleted: Option<(DateTime, InvitationDeletedReason)>,
    conduit: Conduit,
    /// Open invited connections ([`InviteBackend::claimer_connection`]).
    claimer_connections: u64,
}

impl StoredInvitation {
    fn view(&self, org: &OrgState) -> Invitation {
        Invitation {
            token: self.token,
            kind: self.kind.clone(),
            greeter_user_id: self.greeter.clone(),
            greeter_human_handle: greeter_human_handle(org, &self.greeter),
            created_on: self.created_on,
            claimer_online: self.claimer_connections > 0,
        }
    }
}

/// As the reference's PostgreSQL query: the handle of a greeter never revoked
/// (a revocation dated in the future already hides it).
fn greeter_human_handle(org: &OrgState, greeter: &UserId) -> Option<HumanHandle> {
    org.users
        .get(greeter)
        .filter(|u| u.revoked_on.is_none())
        .and_then(|u| u.human_handle.clone())
}

/// An authenticated request's organization is gone: only a bug gets here.
fn vanished() -> Internal {
    Internal(anyhow::anyhow!("organization vanished from the memory store"))
}

/// The invitation a conduit step addresses: a greeter only sees its own.
fn conduit_of<'a>(
    org: Option<&'a mut OrgState>,
    peer: &ConduitPeer,
    token: Uuid,
) -> Result<&'a mut StoredInvitation, ConduitError> {
    let invitation = org
        .and_then(|o| o.invites.invitations.get_mut(&token))
        .ok_or(ConduitError::NotFound)?;
    match peer {
        ConduitPeer::Greeter(greeter) if *greeter != invitation.greeter => Err(ConduitError::NotFound),
        _ => Ok(invitation),
    }
}

#[async_trait]
impl InviteBackend for MemoryStore {
    async fn new_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        kind: &InvitationKind,
        now: DateTime,
    ) -> Result<Uuid, InviteNewError> {
        let mut orgs = self.lock();
        let o = orgs.get_mut(org).ok_or_else(vanished)?;
        if let Some(email) = kind.claimer_email() {
            let member = o
                .users
                .values()
                .any(|u| !u.is_revoked(now) && u.human_handle.as_ref().is_some_and(|h| h.email == email));
            if member {
                return Err(InviteNewError::AlreadyMember);
            }
        }
        let state = &mut o.invites;
        let existing = state
            .invitations
            .values()
            .filter(|i| i.deleted.is_none() && i.greeter == *greeter && i.kind == *kind)
            .min_by_key(|i| (i.created_on, i.seq));
        if let Some(existing) = existing {
            return Ok(existing.token);
        }
        let token = Uuid::new_v4();
        state.created += 1;
        let invitation = StoredInvitation {
            token,
            kind: kind.clone(),
            greeter: greeter.clone(),
            created_on: now,
            seq: state.created,
            deleted: None,
            conduit: Conduit::default(),
            claimer_connections: 0,
        };
        state.invitations.insert(token, invitation);
        Ok(token)
    }

    async fn delete_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        token: Uuid,
        on: DateTime,
        reason: InvitationDeletedReason,
    ) -> Result<(), InviteLookupError> {
        let mut orgs = self.lock();
        let invitation = orgs
            .get_mut(org)
            .and_then(|o| o.invites.invitations.get_mut(&token))
            .filter(|i| i.greeter == *greeter)
            .ok_or(InviteLookupError::NotFound)?;
        if invitation.deleted.is_some() {
            return Err(InviteLookupError::AlreadyDeleted);
        }
        invitation.deleted = Some((on, reason));
        Ok(())
    }

    async fn list_invitations(&self, org: &OrganizationId, greeter: &UserId) -> Result<Vec<Invitation>, Internal> {
        let orgs = self.lock();
        let Some(o) = orgs.get(org) else { return Ok(Vec::new()) };
        let mut mine: Vec<&StoredInvitation> = o
            .invites
            .invitations
            .values()
            .filter(|i| i.deleted.is_none() && i.greeter == *greeter)
            .collect();
        mine.sort_by_key(|i| (i.created_on, i.seq));
        Ok(mine.into_iter().map(|i| i.view(o)).collect())
    }

    async fn get_invitation(&self, org: &OrganizationId, token: Uuid) -> Result<Invitation, InviteLookupError> {
        let orgs = self.lock();
        let o = orgs.get(org).ok_or(InviteLookupError::NotFound)?;
        let invitation = o.invites.invitations.get(&token).ok_or(InviteLookupError::NotFound)?;
        if invitation.deleted.is_some() {
            return Err(InviteLookupError::AlreadyDeleted);
        }
        Ok(invitation.view(o))
    }

    async fn conduit_talk(
        &self,
        org: &OrganizationId,
        peer: &ConduitPeer,
        token: Uuid,
        state: ConduitState,
        payload: Vec<u8>,
    ) -> Result<ListenCtx, ConduitError> {
        let mut orgs = self.lock();
        let invitation = conduit_of(orgs.get_mut(org), peer, token)?;
        if invitation.deleted.is_some() {
            return Err(ConduitError::AlreadyDeleted);
        }
        let greeter = matches!(peer, ConduitPeer::Greeter(_));
        let peer_payload = invitation.conduit.talk(greeter, state, payload.clone())?;
        Ok(ListenCtx {
            org: org.clone(),
            token,
            peer: peer.clone(),
            state,
            payload,
            peer_payload,
        })
    }

    async fn conduit_listen(&self, ctx: &ListenCtx) -> Result<ListenStep, ConduitError> {
        let mut orgs = self.lock();
        let invitation = conduit_of(orgs.get_mut(&ctx.org), &ctx.peer, ctx.token)?;
        if invitation.deleted.is_some() {
            return match &ctx.peer_payload {
                Some(payload) if invitation.conduit.completed_for(ctx) => Ok(ListenStep::Done {
                    payload: payload.clone(),
                    advanced: false,
                }),
                _ => Err(ConduitError::AlreadyDeleted),
            };
        }
        Ok(invitation.conduit.listen(ctx)?)
    }

    async fn claimer_connection(&self, org: &OrganizationId, token: Uuid, opened: bool) -> Result<u64, Internal> {
        let mut orgs = self.lock();
        let Some(invitation) = orgs.get_mut(org).and_then(|o| o.invites.invitations.get_mut(&token)) else {
            return Ok(0);
        };
        let count = &mut invitation.claimer_connections;
        *count = if opened { *count + 1 } else { count.saturating_sub(1) };
        Ok(*count)
    }
}
