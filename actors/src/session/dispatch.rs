//! The only place mapping commands to their domain handlers.
//!
//! Every arm names its command (no catch-all), so a command added to the
//! protocol crate must be routed here before the server compiles. Commands
//! whose domain has not landed yet go through [`not_implemented`], which logs
//! and answers `unknown_command` rather than pretending to succeed.

use parsec_protocol::cmds::{self, anonymous, authenticated, invited};
use parsec_protocol::value::Value;

use super::ActorsRef;
use crate::backend::Internal;
use crate::client::{AnonymousClient, AuthenticatedClient, InvitedClient};
use crate::event::Event;
use crate::invite::{self, ClaimerOutcome};
use crate::organization::{self, BootstrapRequest};
use crate::{block, message, pki, realm, user, vlob};

fn not_implemented(who: &dyn std::fmt::Display, cmd: &str) -> Result<Value, Internal> {
    log::warn!("{who} cmd={cmd}: not implemented yet, answered unknown_command");
    Ok(cmds::unknown_command())
}

fn pong(ping: String) -> Value {
    cmds::ok(vec![("pong", Value::from(ping))])
}

/// Runs one authenticated command (`events_*` are handled by the session).
pub(crate) async fn authenticated(
    actors: ActorsRef,
    client: std::sync::Arc<AuthenticatedClient>,
    req: authenticated::AnyReq,
) -> Result<Value, Internal> {
    use authenticated::AnyReq as R;
    let c = &*client;
    let cmd = req.name();
    match req {
        R::Ping(r) => {
            actors.publish(Event::Pinged {
                org: c.org.clone(),
                author: c.device_id.clone(),
                ping: r.ping.clone(),
            });
            Ok(pong(r.ping))
        }
        R::OrganizationConfig => organization::config(&actors, c).await,
        R::OrganizationStats => organization::stats(&actors, c).await,
        R::UserGet(r) => user::get(&actors, c, r.user_id).await,
        // Handled by the session itself, which owns the event queue.
        R::EventsSubscribe | R::EventsListen(_) => not_implemented(c, cmd),
        R::MessageGet(r) => message::get(&actors, c, r).await,
        R::BlockCreate(r) => block::create(&actors, c, r).await,
        R::BlockRead(r) => block::read(&actors, c, r).await,
        R::VlobCreate(r) => vlob::create(&actors, c, r).await,
        R::VlobRead(r) => vlob::read(&actors, c, r).await,
        R::VlobUpdate(r) => vlob::update(&actors, c, r).await,
        R::VlobPollChanges(r) => vlob::poll_changes(&actors, c, r).await,
        R::VlobListVersions(r) => vlob::list_versions(&actors, c, r).await,
        R::VlobMaintenanceGetReencryptionBatch(r) => vlob::maintenance_get_reencryption_batch(&actors, c, r).await,
        R::VlobMaintenanceSaveReencryptionBatch(r) => vlob::maintenance_save_reencryption_batch(&actors, c, r).await,
        R::RealmCreate(r) => realm::create(&actors, c, r).await,
        R::RealmStatus(r) => realm::status(&actors, c, r).await,
        R::RealmStats(r) => realm::stats(&actors, c, r).await,
        R::RealmGetRoleCertificates(r) => realm::get_role_certificates(&actors, c, r).await,
        R::RealmUpdateRoles(r) => realm::update_roles(&actors, c, r).await,
        R::RealmStartReencryptionMaintenance(r) => realm::start_reencryption_maintenance(&actors, c, r).await,
        R::RealmFinishReencryptionMaintenance(r) => realm::finish_reencryption_maintenance(&actors, c, r).await,
        R::UserCreate(r) => user::create(&actors, c, r).await,
        R::UserRevoke(r) => user::revoke(&actors, c, r).await,
        R::DeviceCreate(r) => user::create_device(&actors, c, r).await,
        R::HumanFind(r) => user::find_humans(&actors, c, r).await,
        R::PkiEnrollmentList => pki::list(&actors, c).await,
        R::PkiEnrollmentReject(r) => pki::reject(&actors, c, r).await,
        R::PkiEnrollmentAccept(r) => pki::accept(&actors, c, r).await,
        R::InviteNew(r) => invite::new(&actors, c, r).await,
        R::InviteDelete(r) => invite::delete(&actors, c, r).await,
        R::InviteList => invite::list(&actors, c).await,
        R::Invite1GreeterWaitPeer(r) => invite::greeter_1_wait_peer(&actors, c, r).await,
        R::Invite2aGreeterGetHashedNonce(r) => invite::greeter_2a_get_hashed_nonce(&actors, c, r).await,
        R::Invite2bGreeterSendNonce(r) => invite::greeter_2b_send_nonce(&actors, c, r).await,
        R::Invite3aGreeterWaitPeerTrust(r) => invite::greeter_3a_wait_peer_trust(&actors, c, r).await,
        R::Invite3bGreeterSignifyTrust(r) => invite::greeter_3b_signify_trust(&actors, c, r).await,
        R::Invite4GreeterCommunicate(r) => invite::greeter_4_communicate(&actors, c, r).await,
    }
}

/// What the connection does with a command's outcome.
pub(crate) enum Reply {
    /// Answer it.
    Send(Value),
    /// A claimer step found its invitation deleted: close (1000) without
    /// answering, as the reference does.
    CloseInvited,
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Send(v)
    }
}

impl From<ClaimerOutcome> for Reply {
    fn from(o: ClaimerOutcome) -> Self {
        match o {
            ClaimerOutcome::Rep(v) => Reply::Send(v),
            ClaimerOutcome::InvitationDeleted => Reply::CloseInvited,
        }
    }
}

/// Runs one invited (claimer) command.
pub(crate) async fn invited(
    actors: ActorsRef,
    client: std::sync::Arc<InvitedClient>,
    req: invited::AnyReq,
) -> Result<Reply, Internal> {
    use invited::AnyReq as R;
    let c = &*client;
    let outcome = match req {
        R::Ping(r) => return Ok(pong(r.ping).into()),
        R::InviteInfo => return Ok(invite::info(c).into()),
        R::Invite1ClaimerWaitPeer(r) => invite::claimer_1_wait_peer(&actors, c, r).await,
        R::Invite2aClaimerSendHashedNonce(r) => invite::claimer_2a_send_hashed_nonce(&actors, c, r).await,
        R::Invite2bClaimerSendNonce(r) => invite::claimer_2b_send_nonce(&actors, c, r).await,
        R::Invite3aClaimerSignifyTrust => invite::claimer_3a_signify_trust(&actors, c).await,
        R::Invite3bClaimerWaitPeerTrust => invite::claimer_3b_wait_peer_trust(&actors, c).await,
        R::Invite4ClaimerCommunicate(r) => invite::claimer_4_communicate(&actors, c, r).await,
    };
    outcome.map(Reply::from)
}

/// Runs one legacy API v1 anonymous command.
pub(crate) async fn anonymous_v1(
    actors: ActorsRef,
    client: std::sync::Arc<AnonymousClient>,
    req: anonymous::AnyV1Req,
) -> Result<Value, Internal> {
    match req {
        anonymous::AnyV1Req::Ping(r) => Ok(pong(r.ping)),
        anonymous::AnyV1Req::OrganizationBootstrap(r) => {
            let req = BootstrapRequest {
                bootstrap_token: r.bootstrap_token,
                root_verify_key: r.root_verify_key,
                user_certificate: r.user_certificate,
                device_certificate: r.device_certificate,
                redacted_user_certificate: r.redacted_user_certificate,
                redacted_device_certificate: r.redacted_device_certificate,
            };
            organization::bootstrap(&actors, &client.org, req).await
        }
    }
}
