//! PostgreSQL invitations and their conduits.
//!
//! A conduit step is one transaction: it locks the invitation row
//! (`FOR UPDATE OF invitation`, not the greeter or organization rows it
//! joins), applies the rules shared with the memory store
//! ([`Conduit::talk`] / [`Conduit::listen`]) and writes the conduit back if
//! they changed it. All of a conduit's state is in that row, so the greeter
//! and the claimer may talk to different server instances: only the
//! wake-ups (`invite.conduit_updated`) travel between them, as events.
//!
//! `invite_new` locks the organization row, as user creation does (the
//! memory store's single lock), so that "already a member" and the reuse of
//! a pending invitation are race-free. Claimer presence is the row's
//! `claimer_connections` counter, shared by every instance.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::schema::{invitation, user_};

use super::{PgStore, bind, dt, internal_from_diesel, org_pk, parse_id, prepared, ts, user_pk};
use crate::backend::*;

internal_from_diesel!(InviteNewError, InviteLookupError, ConduitError);

/// An authenticated request's organization or user is gone: only a bug (or
/// a database edited by hand) gets here.
fn vanished(what: impl std::fmt::Display) -> Internal {
    Internal(anyhow::anyhow!("{what} vanished from the database"))
}

// ------------------------------------------------------------------ views

/// What `invite_list` and the invited handshake read: the invitation and
/// its greeter.
#[derive(Queryable)]
struct InvitationRow {
    token: Uuid,
    kind: String,
    claimer_email: Option<String>,
    created_on: chrono::DateTime<chrono::Utc>,
    deleted_on: Option<chrono::DateTime<chrono::Utc>>,
    claimer_connections: i32,
    greeter: String,
    greeter_email: Option<String>,
    greeter_label: Option<String>,
    greeter_revoked_on: Option<chrono::DateTime<chrono::Utc>>,
}

/// The columns of [`InvitationRow`], over `invitation JOIN user_`.
type InvitationColumns = (
    invitation::token,
    invitation::type_,
    invitation::claimer_email,
    invitation::created_on,
    invitation::deleted_on,
    invitation::claimer_connections,
    user_::user_id,
    user_::human_email,
    user_::human_label,
    user_::revoked_on,
);

const INVITATION_COLUMNS: InvitationColumns = (
    invitation::token,
    invitation::type_,
    invitation::claimer_email,
    invitation::created_on,
    invitation::deleted_on,
    invitation::claimer_connections,
    user_::user_id,
    user_::human_email,
    user_::human_label,
    user_::revoked_on,
);

fn kind_of(kind: &str, claimer_email: Option<String>) -> Result<InvitationKind, Internal> {
    match (kind, claimer_email) {
        ("USER", Some(claimer_email)) => Ok(InvitationKind::User { claimer_email }),
        ("DEVICE", None) => Ok(InvitationKind::Device),
        (other, _) => Err(Internal(anyhow::anyhow!(
            "invalid invitation type in database `{other}`"
        ))),
    }
}

impl InvitationRow {
    fn view(self) -> Result<Invitation, Internal> {
        // As the reference's query: the handle of a greeter without any
        // revocation (one dated in the future already hides it).
        let greeter_human_handle = match (self.greeter_email, self.greeter_label, self.greeter_revoked_on) {
            (Some(email), Some(label), None) => Some(HumanHandle { email, label }),
            _ => None,
        };
        Ok(Invitation {
            token: self.token,
            kind: kind_of(&self.kind, self.claimer_email)?,
            greeter_user_id: parse_id(&self.greeter)?,
            greeter_human_handle,
            created_on: dt(self.created_on),
            claimer_online: self.claimer_connections > 0,
        })
    }
}

// ---------------------------------------------------------------- conduit

/// An invitation row locked for the rest of the transaction.
#[derive(QueryableByName)]
struct LockedInvitation {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    conduit_state: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    conduit_greeter_payload: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    conduit_claimer_payload: Option<Vec<u8>>,
}

impl LockedInvitation {
    fn conduit(&self) -> Result<Conduit, Internal> {
        let state = ConduitState::parse(&self.conduit_state).ok_or_else(|| {
            Internal(anyhow::anyhow!(
                "invalid conduit state in database `{}`",
                self.conduit_state
            ))
        })?;
        Ok(Conduit {
            state,
            greeter_payload: self.conduit_greeter_payload.clone(),
            claimer_payload: self.conduit_claimer_payload.clone(),
        })
    }
}

/// Only the invitation row is locked (`OF i`): the joined greeter and
/// organization rows stay free for other writers. `$3`: the greeter the
/// invitation must belong to, if any (another user's invitation is neither
/// seen nor locked).
const LOCK_INVITATION: &str = "\
    SELECT i._id AS id, i.deleted_on IS NOT NULL AS deleted, \
           i.conduit_state, i.conduit_greeter_payload, i.conduit_claimer_payload \
    FROM invitation i \
    JOIN organization o ON o._id = i.organization \
    JOIN user_ u ON u._id = i.greeter \
    WHERE o.organization_id = $1 AND i.token = $2 AND ($3::text IS NULL OR u.user_id = $3) \
    FOR UPDATE OF i";

/// The invitation of `token`, locked; with `greeter`, only if it is theirs
/// (a greeter never sees another user's invitations).
async fn lock_invitation(
    conn: &mut AsyncPgConnection,
    org: &OrganizationId,
    token: Uuid,
    greeter: Option<&UserId>,
) -> QueryResult<Option<LockedInvitation>> {
    // Fixed texts through `prepared` (here and below): each conduit step
    // runs these, and `sql_query` or a diesel `update` would re-prepare them
    // on every step (a round trip and a fresh plan each).
    prepared(
        LOCK_INVITATION,
        &[
            &bind::<Text, _>(org.as_str()),
            &bind::<diesel::sql_types::Uuid, _>(token),
            &bind::<Nullable<Text>, _>(greeter.map(UserId::as_str)),
        ],
    )
    .get_result::<LockedInvitation>(conn)
    .await
    .optional()
}

async fn store_conduit(conn: &mut AsyncPgConnection, id: i64, conduit: &Conduit) -> QueryResult<()> {
    prepared(
        "UPDATE invitation SET conduit_state = $1, conduit_greeter_payload = $2, conduit_claimer_payload = $3 \
         WHERE _id = $4",
        &[
            &bind::<Text, _>(conduit.state.as_str()),
            &bind::<Nullable<Bytea>, _>(conduit.greeter_payload.as_deref()),
            &bind::<Nullable<Bytea>, _>(conduit.claimer_payload.as_deref()),
            &bind::<BigInt, _>(id),
        ],
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn greeter_of(peer: &ConduitPeer) -> Option<&UserId> {
    match peer {
        ConduitPeer::Greeter(user) => Some(user),
        ConduitPeer::Claimer => None,
    }
}

// ------------------------------------------------------------------- trait

#[async_trait]
impl InviteBackend for PgStore {
    async fn new_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        kind: &InvitationKind,
        now: DateTime,
    ) -> Result<Uuid, InviteNewError> {
        use invitation::dsl as i;
        use user_::dsl as u;
        let mut conn = self.conn().await?;
        conn.transaction::<_, InviteNewError, _>(async |c| {
            let org_pk = org_pk(c, org, true).await?.ok_or_else(|| vanished(org))?;
            let greeter_pk = user_pk(c, org_pk, greeter).await?.ok_or_else(|| vanished(greeter))?;
            if let Some(email) = kind.claimer_email() {
                // A member is a user whose revocation has not taken effect yet.
                let members = u::user_
                    .filter(u::organization.eq(org_pk))
                    .filter(u::human_email.eq(email))
                    .filter(u::revoked_on.is_null().or(u::revoked_on.gt(ts(now))));
                if diesel::select(diesel::dsl::exists(members))
                    .get_result::<bool>(c)
                    .await?
                {
                    return Err(InviteNewError::AlreadyMember);
                }
            }
            let type_ = kind.invitation_type().as_str();
            let mut pending = i::invitation
                .filter(i::organization.eq(org_pk))
                .filter(i::greeter.eq(greeter_pk))
                .filter(i::deleted_on.is_null())
                .filter(i::type_.eq(type_))
                .into_boxed();
            if let Some(email) = kind.claimer_email() {
                pending = pending.filter(i::claimer_email.eq(email));
            }
            let pending = pending
                .order((i::created_on, i::_id))
                .select(i::token)
                .first::<Uuid>(c)
                .await
                .optional()?;
            if let Some(token) = pending {
                return Ok(token);
            }
            let token = Uuid::new_v4();
            diesel::insert_into(i::invitation)
                .values((
                    i::organization.eq(org_pk),
                    i::token.eq(token),
                    i::type_.eq(type_),
                    i::greeter.eq(greeter_pk),
                    i::claimer_email.eq(kind.claimer_email()),
                    i::created_on.eq(ts(now)),
                ))
                .execute(c)
                .await?;
            Ok(token)
        })
        .await
    }

    async fn delete_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        token: Uuid,
        on: DateTime,
        reason: InvitationDeletedReason,
    ) -> Result<(), InviteLookupError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, InviteLookupError, _>(async |c| {
            let invitation = lock_invitation(c, org, token, Some(greeter))
                .await?
                .ok_or(InviteLookupError::NotFound)?;
            if invitation.deleted {
                return Err(InviteLookupError::AlreadyDeleted);
            }
            prepared(
                "UPDATE invitation SET deleted_on = $1, deleted_reason = $2 WHERE _id = $3",
                &[
                    &bind::<diesel::sql_types::Timestamptz, _>(ts(on)),
                    &bind::<Text, _>(reason.as_str()),
                    &bind::<BigInt, _>(invitation.id),
                ],
            )
            .execute(c)
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_invitations(&self, org: &OrganizationId, greeter: &UserId) -> Result<Vec<Invitation>, Internal> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, Internal, _>(async |c| {
            let Some(org_pk) = org_pk(c, org, false).await? else {
                return Ok(Vec::new());
            };
            let rows = invitation::table
                .inner_join(user_::table)
                .filter(user_::organization.eq(org_pk))
                .filter(user_::user_id.eq(greeter.as_str()))
                .filter(invitation::organization.eq(org_pk))
                .filter(invitation::deleted_on.is_null())
                .order((invitation::created_on, invitation::_id))
                .select(INVITATION_COLUMNS)
                .load::<InvitationRow>(c)
                .await?;
            rows.into_iter().map(InvitationRow::view).collect()
        })
        .await
    }

    async fn get_invitation(&self, org: &OrganizationId, token: Uuid) -> Result<Invitation, InviteLookupError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, InviteLookupError, _>(async |c| {
            let org_pk = org_pk(c, org, false).await?.ok_or(InviteLookupError::NotFound)?;
            let row = invitation::table
                .inner_join(user_::table)
                .filter(invitation::organization.eq(org_pk))
                .filter(invitation::token.eq(token))
                .select(INVITATION_COLUMNS)
                .first::<InvitationRow>(c)
                .await
                .optional()?
                .ok_or(InviteLookupError::NotFound)?;
            if row.deleted_on.is_some() {
                return Err(InviteLookupError::AlreadyDeleted);
            }
            Ok(row.view()?)
        })
        .await
    }

    async fn conduit_talk(
        &self,
        org: &OrganizationId,
        peer: &ConduitPeer,
        token: Uuid,
        state: ConduitState,
        payload: Vec<u8>,
    ) -> Result<ListenCtx, ConduitError> {
        let mut conn = self.conn().await?;
        let peer_payload = conn
            .transaction::<_, ConduitError, _>(async |c| {
                let invitation = lock_invitation(c, org, token, greeter_of(peer))
                    .await?
                    .ok_or(ConduitError::NotFound)?;
                if invitation.deleted {
                    return Err(ConduitError::AlreadyDeleted);
                }
                let mut conduit = invitation.conduit()?;
                let greeter = greeter_of(peer).is_some();
                let peer_payload = conduit.talk(greeter, state, payload.clone())?;
                store_conduit(c, invitation.id, &conduit).await?;
                Ok(peer_payload)
            })
            .await?;
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
        let mut conn = self.conn().await?;
        conn.transaction::<_, ConduitError, _>(async |c| {
            let invitation = lock_invitation(c, &ctx.org, ctx.token, greeter_of(&ctx.peer))
                .await?
                .ok_or(ConduitError::NotFound)?;
            let mut conduit = invitation.conduit()?;
            if invitation.deleted {
                return match &ctx.peer_payload {
                    Some(payload) if conduit.completed_for(ctx) => Ok(ListenStep::Done {
                        payload: payload.clone(),
                        advanced: false,
                    }),
                    _ => Err(ConduitError::AlreadyDeleted),
                };
            }
            let before = conduit.clone();
            let step = conduit.listen(ctx)?;
            // Most listens find the peer silent and change nothing.
            if conduit != before {
                store_conduit(c, invitation.id, &conduit).await?;
            }
            Ok(step)
        })
        .await
    }

    async fn claimer_connection(&self, org: &OrganizationId, token: Uuid, opened: bool) -> Result<u64, Internal> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, Internal, _>(async |c| {
            let Some(org_pk) = org_pk(c, org, false).await? else {
                return Ok(0);
            };
            #[derive(QueryableByName)]
            struct Open {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                claimer_connections: i32,
            }
            let sql = if opened {
                "UPDATE invitation SET claimer_connections = claimer_connections + 1 \
                 WHERE organization = $1 AND token = $2 RETURNING claimer_connections"
            } else {
                "UPDATE invitation SET claimer_connections = claimer_connections - 1 \
                 WHERE organization = $1 AND token = $2 AND claimer_connections > 0 RETURNING claimer_connections"
            };
            let count: Option<Open> = prepared(
                sql,
                &[&bind::<BigInt, _>(org_pk), &bind::<diesel::sql_types::Uuid, _>(token)],
            )
            .get_result(c)
            .await
            .optional()?;
            // No row: an unknown token, or a close with nothing left open.
            Ok(count.map_or(0, |n| u64::try_from(n.claimer_connections).unwrap_or(0)))
        })
        .await
    }
}
