//! The only place mapping commands to their domain handlers.
//!
//! Every arm names its command (no catch-all), so a command added to the
//! protocol crate must be routed here before the server compiles. Commands
//! whose domain has not landed yet go through [`not_implemented`], which logs
//! and answers `unknown_command` rather than pretending to succeed.

use parsec_protocol::cmds::{self, anonymous, authenticated, invited};
use parsec_protocol::value::Value;

use crate::backend::Internal;
use crate::client::{AnonymousClient, AuthenticatedClient, InvitedClient};
use crate::event::Event;
use crate::organization::{self, BootstrapRequest};
use crate::{Actors, block, message, realm, user, vlob};

fn not_implemented(who: &dyn std::fmt::Display, cmd: &str) -> Result<Value, Internal> {
    log::warn!("{who} cmd={cmd}: not implemented yet, answered unknown_command");
    Ok(cmds::unknown_command())
}

fn pong(ping: String) -> Value {
    cmds::ok(vec![("pong", Value::from(ping))])
}

/// Runs one authenticated command (`events_*` are handled by the session).
pub(crate) async fn authenticated(
    actors: Actors,
    client: std::sync::Arc<AuthenticatedClient>,
    req: authenticated::AnyReq,
) -> Result<Value, Internal> {
    use authenticated::AnyReq as R;
    let c = &*client;
    let cmd = req.name();
    match req {
        R::Ping(r) => {
            actors.publish(Event::Pinged { org: c.org.clone(), author: c.device_id.clone(), ping: r.ping.clone() });
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
        R::UserCreate(_)
        | R::UserRevoke(_)
        | R::DeviceCreate(_)
        | R::HumanFind(_)
        | R::InviteNew(_)
        | R::InviteDelete(_)
        | R::InviteList
        | R::Invite1GreeterWaitPeer(_)
        | R::Invite2aGreeterGetHashedNonce(_)
        | R::Invite2bGreeterSendNonce(_)
        | R::Invite3aGreeterWaitPeerTrust(_)
        | R::Invite3bGreeterSignifyTrust(_)
        | R::Invite4GreeterCommunicate(_)
        | R::PkiEnrollmentList
        | R::PkiEnrollmentReject(_)
        | R::PkiEnrollmentAccept(_) => not_implemented(c, cmd),
    }
}

/// Runs one invited (claimer) command.
pub(crate) async fn invited(
    _actors: Actors,
    client: std::sync::Arc<InvitedClient>,
    req: invited::AnyReq,
) -> Result<Value, Internal> {
    use invited::AnyReq as R;
    let cmd = req.name();
    let who = format!("conn={} org={} invitation", client.conn_id, client.org);
    match req {
        R::Ping(r) => Ok(pong(r.ping)),
        R::InviteInfo
        | R::Invite1ClaimerWaitPeer(_)
        | R::Invite2aClaimerSendHashedNonce(_)
        | R::Invite2bClaimerSendNonce(_)
        | R::Invite3aClaimerSignifyTrust
        | R::Invite3bClaimerWaitPeerTrust
        | R::Invite4ClaimerCommunicate(_) => not_implemented(&who, cmd),
    }
}

/// Runs one legacy API v1 anonymous command.
pub(crate) async fn anonymous_v1(
    actors: Actors,
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
