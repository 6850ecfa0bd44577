//! Server side of the handshake (README §4.5): who the client is, checked in
//! the reference's order so that each refusal gets the reference's result.

use parsec_protocol::handshake::{self, Answer, HandshakeError};
use parsec_protocol::types::DateTime;

use super::ActorsRef;
use crate::Actors;
use crate::backend::*;
use crate::client::{AnonymousClient, AuthenticatedClient, InvitedClient};
use crate::event::Event;
use crate::organization::{CreateOrganization, GetOrganization};
use crate::user::GetHandshakeIdentity;

/// A successful handshake.
pub(crate) enum Identity {
    Authenticated(AuthenticatedClient),
    Invited(InvitedClient),
    AnonymousV1(AnonymousClient),
}

/// Why the handshake did not succeed.
pub(crate) enum Refusal {
    /// Answered with a handshake result, then the connection is dropped.
    Refused(HandshakeError),
    /// Storage failure: logged, connection dropped.
    Internal(Internal),
}

impl From<HandshakeError> for Refusal {
    fn from(e: HandshakeError) -> Self {
        Refusal::Refused(e)
    }
}

impl From<Internal> for Refusal {
    fn from(e: Internal) -> Self {
        Refusal::Internal(e)
    }
}

impl From<actix::MailboxError> for Refusal {
    fn from(e: actix::MailboxError) -> Self {
        Refusal::Internal(e.into())
    }
}

async fn organization(actors: &Actors, answer: &Answer) -> Result<Option<Organization>, Refusal> {
    match actors
        .organization
        .send(GetOrganization(answer.organization_id().clone()))
        .await?
    {
        Ok(org) => Ok(Some(org)),
        Err(OrganizationLookupError::NotFound) => Ok(None),
        Err(OrganizationLookupError::Internal(e)) => Err(e.into()),
    }
}

/// An expired organization also closes its live connections (README §4.5).
fn expired(actors: &Actors, org: &parsec_protocol::types::OrganizationId) -> Refusal {
    actors.publish(Event::OrganizationExpired { org: org.clone() });
    HandshakeError::OrganizationExpired.into()
}

/// Checks the answer to `challenge`.
pub(crate) async fn identify(
    actors: ActorsRef,
    conn_id: u64,
    raw_answer: Vec<u8>,
    challenge: Vec<u8>,
) -> Result<Identity, Refusal> {
    let answer = handshake::parse_answer(&raw_answer)?;
    match answer {
        Answer::Authenticated {
            version,
            ref organization_id,
            ref device_id,
            rvk,
            answer: ref signed,
        } => {
            let msg = GetHandshakeIdentity {
                org: organization_id.clone(),
                device_id: device_id.clone(),
            };
            // One lookup: an unknown organization, device or user is the same refusal.
            let id = match actors.user.send(msg).await? {
                Ok(found) => found,
                Err(UserLookupError::NotFound) => return Err(HandshakeError::BadIdentity.into()),
                Err(UserLookupError::Internal(e)) => return Err(e.into()),
            };
            if id.root_verify_key != Some(rvk) {
                return Err(HandshakeError::RvkMismatch.into());
            }
            if id.organization_expired {
                return Err(expired(&actors, organization_id));
            }
            if id.is_revoked(DateTime::now()) {
                return Err(HandshakeError::RevokedDevice.into());
            }
            handshake::verify_signed_answer(version, signed, &id.verify_key, &challenge)?;
            Ok(Identity::Authenticated(AuthenticatedClient {
                conn_id,
                org: organization_id.clone(),
                device_id: id.device_id,
                user_id: id.user_id,
                profile: id.profile,
                human_handle: id.human_handle,
                device_label: id.device_label,
                verify_key: id.verify_key,
            }))
        }
        Answer::Invited {
            invitation_type, token, ..
        } => {
            let org = organization(&actors, &answer)
                .await?
                .ok_or(HandshakeError::BadIdentity)?;
            if org.is_expired {
                return Err(expired(&actors, &org.id));
            }
            // The two help texts are matched by the client (README §0 item 3).
            let invitation = match crate::invite::lookup(&actors, &org.id, token).await {
                Ok(invitation) => invitation,
                Err(InviteLookupError::NotFound) => return Err(HandshakeError::InvitationNotFound.into()),
                Err(InviteLookupError::AlreadyDeleted) => return Err(HandshakeError::InvitationAlreadyDeleted.into()),
                Err(InviteLookupError::Internal(e)) => return Err(e.into()),
            };
            if invitation.kind.invitation_type() != invitation_type {
                return Err(HandshakeError::BadIdentity.into());
            }
            Ok(Identity::Invited(InvitedClient {
                conn_id,
                org: org.id,
                invitation_type,
                token,
                invitation,
            }))
        }
        Answer::AnonymousV1 {
            ref organization_id,
            rvk,
            ..
        } => {
            let org = match organization(&actors, &answer).await? {
                Some(org) => org,
                None if actors.settings.spontaneous_organization_bootstrap => {
                    let settings = &actors.settings;
                    let msg = CreateOrganization {
                        id: organization_id.clone(),
                        bootstrap_token: String::new(),
                        active_users_limit: settings.organization_initial_active_users_limit,
                        user_profile_outsider_allowed: settings.organization_initial_user_profile_outsider_allowed,
                    };
                    match actors.organization.send(msg).await? {
                        Ok(()) | Err(OrganizationCreateError::AlreadyExists) => {}
                        Err(OrganizationCreateError::Internal(e)) => return Err(e.into()),
                    }
                    organization(&actors, &answer)
                        .await?
                        .ok_or(HandshakeError::BadIdentity)?
                }
                None => return Err(HandshakeError::BadIdentity.into()),
            };
            if org.is_expired {
                return Err(expired(&actors, &org.id));
            }
            if rvk.is_some() && rvk != org.root_verify_key {
                return Err(HandshakeError::RvkMismatch.into());
            }
            Ok(Identity::AnonymousV1(AnonymousClient { conn_id, org: org.id }))
        }
    }
}
