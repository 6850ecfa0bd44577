//! Requests of AUTHENTICATED connections (39 commands, README §8.1).
//!
//! One struct per command, loaded field by field as the reference's 2.10
//! schemas do (`parsec/api/protocol/*.py`): presence and nullability of each
//! key, value ranges (`validate=`), enum values. Every field is read before
//! the struct is built so that a `bad_message` lists all faulty fields.
//! Profile checks that the reference runs *before* parsing (`user_create`,
//! `human_find`…) are the dispatcher's business, not this module's.
//!
//! Integers are `i64`: the reference bounds none of them beyond the ranges
//! checked here, and the client never sends more than 63 bits.

use std::collections::BTreeMap;

use super::{LoadError, cmd_name, load_fields};
use crate::fields::{Fields, FromValue, nested};
use crate::types::{DateTime, InvitationDeletedReason, InvitationType, Key32, UserId, Uuid};
use crate::value::Value;

// ---------------------------------------------------------------- misc

/// `ping`: echo; also emits `pinged` to the organization's other devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Echoed back as `pong`.
    pub ping: String,
}

impl Ping {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { ping: f.req("ping")? })
    }
}

/// `events_listen`: pops the next queued event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsListen {
    /// Block until an event arrives (else answer `no_events` at once).
    pub wait: bool,
}

impl EventsListen {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { wait: f.req("wait")? })
    }
}

/// `message_get`: the requesting user's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageGet {
    /// Number of messages to skip; ≥ 0.
    pub offset: i64,
}

impl MessageGet {
    fn load(f: &mut Fields) -> Option<Self> {
        let offset = f.req("offset");
        let offset = f.check("offset", offset, |n: &i64| *n >= 0);
        Some(Self { offset: offset? })
    }
}

// ---------------------------------------------------------------- users

/// `user_get`: a user's certificates and trustchain.
#[derive(Debug, Clone, PartialEq)]
pub struct UserGet {
    /// The user to fetch.
    pub user_id: UserId,
}

impl UserGet {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            user_id: f.req("user_id")?,
        })
    }
}

/// `user_create`: a new user and its first device (ADMIN only).
#[derive(Debug, Clone, PartialEq)]
pub struct UserCreate {
    /// Signed user certificate.
    pub user_certificate: Vec<u8>,
    /// Signed device certificate of the user's first device.
    pub device_certificate: Vec<u8>,
    /// Same as `user_certificate` without `human_handle`.
    pub redacted_user_certificate: Vec<u8>,
    /// Same as `device_certificate` without `device_label`.
    pub redacted_device_certificate: Vec<u8>,
}

impl UserCreate {
    fn load(f: &mut Fields) -> Option<Self> {
        let user_certificate = f.req("user_certificate");
        let device_certificate = f.req("device_certificate");
        let redacted_user_certificate = f.req("redacted_user_certificate");
        let redacted_device_certificate = f.req("redacted_device_certificate");
        Some(Self {
            user_certificate: user_certificate?,
            device_certificate: device_certificate?,
            redacted_user_certificate: redacted_user_certificate?,
            redacted_device_certificate: redacted_device_certificate?,
        })
    }
}

/// `user_revoke`: revokes a user (ADMIN only).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRevoke {
    /// Signed revoked-user certificate.
    pub revoked_user_certificate: Vec<u8>,
}

impl UserRevoke {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            revoked_user_certificate: f.req("revoked_user_certificate")?,
        })
    }
}

/// `device_create`: a new device for the requester's own user.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCreate {
    /// Signed device certificate.
    pub device_certificate: Vec<u8>,
    /// Same as `device_certificate` without `device_label`.
    pub redacted_device_certificate: Vec<u8>,
}

impl DeviceCreate {
    fn load(f: &mut Fields) -> Option<Self> {
        let device_certificate = f.req("device_certificate");
        let redacted_device_certificate = f.req("redacted_device_certificate");
        Some(Self {
            device_certificate: device_certificate?,
            redacted_device_certificate: redacted_device_certificate?,
        })
    }
}

/// `human_find`: paginated search of the organization's users (not OUTSIDER).
#[derive(Debug, Clone, PartialEq)]
pub struct HumanFind {
    /// Text to look for in label or email; nil (or `""`) matches everyone.
    pub query: Option<String>,
    /// Drop users revoked by now.
    pub omit_revoked: bool,
    /// Drop users without a human handle.
    pub omit_non_human: bool,
    /// 1-based page number; ≥ 1.
    pub page: i64,
    /// Page size; 1..=100.
    pub per_page: i64,
}

impl HumanFind {
    fn load(f: &mut Fields) -> Option<Self> {
        let query = f.req_nullable("query");
        let omit_revoked = f.req("omit_revoked");
        let omit_non_human = f.req("omit_non_human");
        let page = f.req("page");
        let page = f.check("page", page, |n: &i64| *n >= 1);
        let per_page = f.req("per_page");
        let per_page = f.check("per_page", per_page, |n: &i64| (1..=100).contains(n));
        Some(Self {
            query: query?,
            omit_revoked: omit_revoked?,
            omit_non_human: omit_non_human?,
            page: page?,
            per_page: per_page?,
        })
    }
}

// ---------------------------------------------------------------- invitations (greeter side)

/// `invite_new`: creates (or reuses) an invitation greeted by the requester.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteNew {
    /// What is invited (the wire `type`), with its own fields.
    pub kind: InviteNewKind,
    /// Send the invitation e-mail (the reply then carries `email_sent`).
    pub send_email: bool,
}

/// The two request shapes of `invite_new`, selected by `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum InviteNewKind {
    /// `USER` (ADMIN only): a new user, reached at this address.
    User {
        /// Not validated as an e-mail address (nor by the reference).
        claimer_email: String,
    },
    /// `DEVICE`: a new device of the requester's user (a `claimer_email` is ignored).
    Device,
}

impl InviteNewKind {
    /// The wire `type`.
    pub fn invitation_type(&self) -> InvitationType {
        match self {
            InviteNewKind::User { .. } => InvitationType::User,
            InviteNewKind::Device => InvitationType::Device,
        }
    }
}

impl InviteNew {
    fn load(f: &mut Fields) -> Option<Self> {
        // The reference's OneOfSchema looks at `type` first and, when it is
        // unusable, reports only that field.
        match f.req("type")? {
            InvitationType::User => {
                let claimer_email = f.req("claimer_email");
                let send_email = f.req("send_email");
                Some(Self {
                    kind: InviteNewKind::User {
                        claimer_email: claimer_email?,
                    },
                    send_email: send_email?,
                })
            }
            InvitationType::Device => Some(Self {
                kind: InviteNewKind::Device,
                send_email: f.req("send_email")?,
            }),
        }
    }
}

/// `invite_delete`: deletes one of the requester's invitations.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteDelete {
    /// Invitation token.
    pub token: Uuid,
    /// Why it is deleted.
    pub reason: InvitationDeletedReason,
}

impl InviteDelete {
    fn load(f: &mut Fields) -> Option<Self> {
        let token = f.req("token");
        let reason = f.req("reason");
        Some(Self {
            token: token?,
            reason: reason?,
        })
    }
}

/// `invite_1_greeter_wait_peer`: exchanges public keys with the claimer.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite1GreeterWaitPeer {
    /// Invitation token.
    pub token: Uuid,
    /// Greeter's Curve25519 public key.
    pub greeter_public_key: Key32,
}

impl Invite1GreeterWaitPeer {
    fn load(f: &mut Fields) -> Option<Self> {
        let token = f.req("token");
        let greeter_public_key = f.req("greeter_public_key");
        Some(Self {
            token: token?,
            greeter_public_key: greeter_public_key?,
        })
    }
}

/// `invite_2a_greeter_get_hashed_nonce`: waits for the claimer's hashed nonce.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite2aGreeterGetHashedNonce {
    /// Invitation token.
    pub token: Uuid,
}

impl Invite2aGreeterGetHashedNonce {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { token: f.req("token")? })
    }
}

/// `invite_2b_greeter_send_nonce`: sends the greeter's nonce, gets the claimer's.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite2bGreeterSendNonce {
    /// Invitation token.
    pub token: Uuid,
    /// Greeter's nonce.
    pub greeter_nonce: Vec<u8>,
}

impl Invite2bGreeterSendNonce {
    fn load(f: &mut Fields) -> Option<Self> {
        let token = f.req("token");
        let greeter_nonce = f.req("greeter_nonce");
        Some(Self {
            token: token?,
            greeter_nonce: greeter_nonce?,
        })
    }
}

/// `invite_3a_greeter_wait_peer_trust`: waits for the claimer to trust the greeter.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite3aGreeterWaitPeerTrust {
    /// Invitation token.
    pub token: Uuid,
}

impl Invite3aGreeterWaitPeerTrust {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { token: f.req("token")? })
    }
}

/// `invite_3b_greeter_signify_trust`: tells the claimer the greeter trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite3bGreeterSignifyTrust {
    /// Invitation token.
    pub token: Uuid,
}

impl Invite3bGreeterSignifyTrust {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { token: f.req("token")? })
    }
}

/// `invite_4_greeter_communicate`: exchanges one opaque payload with the claimer.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite4GreeterCommunicate {
    /// Invitation token.
    pub token: Uuid,
    /// Greeter's payload (may be empty; empty is not "no payload").
    pub payload: Vec<u8>,
}

impl Invite4GreeterCommunicate {
    fn load(f: &mut Fields) -> Option<Self> {
        let token = f.req("token");
        let payload = f.req("payload");
        Some(Self {
            token: token?,
            payload: payload?,
        })
    }
}

// ---------------------------------------------------------------- blocks

/// `block_create`: stores a block in a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCreate {
    /// Client-chosen block id, unique in the organization.
    pub block_id: Uuid,
    /// Realm the block belongs to.
    pub realm_id: Uuid,
    /// Encrypted block data (≤ 1 MiB by the decoding limit).
    pub block: Vec<u8>,
}

impl BlockCreate {
    fn load(f: &mut Fields) -> Option<Self> {
        let block_id = f.req("block_id");
        let realm_id = f.req("realm_id");
        let block = f.req("block");
        Some(Self {
            block_id: block_id?,
            realm_id: realm_id?,
            block: block?,
        })
    }
}

/// `block_read`: fetches a block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRead {
    /// The block to read.
    pub block_id: Uuid,
}

impl BlockRead {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            block_id: f.req("block_id")?,
        })
    }
}

// ---------------------------------------------------------------- vlobs

/// `vlob_create`: first version of a new vlob.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobCreate {
    /// Realm the vlob belongs to.
    pub realm_id: Uuid,
    /// Must be the realm's current encryption revision.
    pub encryption_revision: i64,
    /// Client-chosen vlob id, unique in the organization.
    pub vlob_id: Uuid,
    /// Client-declared write time (ballpark-checked).
    pub timestamp: DateTime,
    /// Encrypted content.
    pub blob: Vec<u8>,
}

impl VlobCreate {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let encryption_revision = f.req("encryption_revision");
        let vlob_id = f.req("vlob_id");
        let timestamp = f.req("timestamp");
        let blob = f.req("blob");
        Some(Self {
            realm_id: realm_id?,
            encryption_revision: encryption_revision?,
            vlob_id: vlob_id?,
            timestamp: timestamp?,
            blob: blob?,
        })
    }
}

/// `vlob_read`: one version of a vlob (by number, by time, or the latest).
#[derive(Debug, Clone, PartialEq)]
pub struct VlobRead {
    /// Revision to read at (the previous one during re-encryption).
    pub encryption_revision: i64,
    /// The vlob to read.
    pub vlob_id: Uuid,
    /// Exact version wanted (≥ 1); key required, nil allowed.
    pub version: Option<i64>,
    /// Latest version created at or before this time; key required, nil allowed.
    pub timestamp: Option<DateTime>,
}

impl VlobRead {
    fn load(f: &mut Fields) -> Option<Self> {
        let encryption_revision = f.req("encryption_revision");
        let vlob_id = f.req("vlob_id");
        let version = f.req_nullable("version");
        let version = f.check("version", version, |v: &Option<i64>| v.is_none_or(|n| n >= 1));
        let timestamp = f.req_nullable("timestamp");
        Some(Self {
            encryption_revision: encryption_revision?,
            vlob_id: vlob_id?,
            version: version?,
            timestamp: timestamp?,
        })
    }
}

/// `vlob_update`: a new version of an existing vlob.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobUpdate {
    /// Must be the realm's current encryption revision.
    pub encryption_revision: i64,
    /// The vlob to update.
    pub vlob_id: Uuid,
    /// Client-declared write time (ballpark-checked).
    pub timestamp: DateTime,
    /// The new version number (latest + 1); ≥ 1.
    pub version: i64,
    /// Encrypted content.
    pub blob: Vec<u8>,
}

impl VlobUpdate {
    fn load(f: &mut Fields) -> Option<Self> {
        let encryption_revision = f.req("encryption_revision");
        let vlob_id = f.req("vlob_id");
        let timestamp = f.req("timestamp");
        let version = f.req("version");
        let version = f.check("version", version, |n: &i64| *n >= 1);
        let blob = f.req("blob");
        Some(Self {
            encryption_revision: encryption_revision?,
            vlob_id: vlob_id?,
            timestamp: timestamp?,
            version: version?,
            blob: blob?,
        })
    }
}

/// `vlob_poll_changes`: vlobs changed in a realm since a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobPollChanges {
    /// Realm to poll.
    pub realm_id: Uuid,
    /// Changes with a greater checkpoint are returned.
    pub last_checkpoint: i64,
}

impl VlobPollChanges {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let last_checkpoint = f.req("last_checkpoint");
        Some(Self {
            realm_id: realm_id?,
            last_checkpoint: last_checkpoint?,
        })
    }
}

/// `vlob_list_versions`: every version of a vlob with its time and author.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobListVersions {
    /// The vlob to list.
    pub vlob_id: Uuid,
}

impl VlobListVersions {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            vlob_id: f.req("vlob_id")?,
        })
    }
}

/// `vlob_maintenance_get_reencryption_batch`: vlob versions still to re-encrypt.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobMaintenanceGetReencryptionBatch {
    /// Realm under re-encryption.
    pub realm_id: Uuid,
    /// The new revision R.
    pub encryption_revision: i64,
    /// Maximum number of entries returned; 0..=1000.
    pub size: i64,
}

impl VlobMaintenanceGetReencryptionBatch {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let encryption_revision = f.req("encryption_revision");
        let size = f.req("size");
        let size = f.check("size", size, |n: &i64| (0..=1000).contains(n));
        Some(Self {
            realm_id: realm_id?,
            encryption_revision: encryption_revision?,
            size: size?,
        })
    }
}

/// One vlob version of a re-encryption batch, as `{"vlob_id", "version", "blob"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReencryptionBatchEntry {
    /// The vlob.
    pub vlob_id: Uuid,
    /// Which of its versions; ≥ 0.
    pub version: i64,
    /// The version's content, encrypted at the new revision.
    pub blob: Vec<u8>,
}

impl FromValue for ReencryptionBatchEntry {
    fn from_value(v: &Value) -> Result<Self, String> {
        nested(v, |f| {
            let vlob_id = f.req("vlob_id");
            let version = f.req("version");
            let version = f.check("version", version, |n: &i64| *n >= 0);
            let blob = f.req("blob");
            Some(Self {
                vlob_id: vlob_id?,
                version: version?,
                blob: blob?,
            })
        })
    }
}

/// `vlob_maintenance_save_reencryption_batch`: stores re-encrypted vlob versions.
#[derive(Debug, Clone, PartialEq)]
pub struct VlobMaintenanceSaveReencryptionBatch {
    /// Realm under re-encryption.
    pub realm_id: Uuid,
    /// The new revision R.
    pub encryption_revision: i64,
    /// Re-encrypted versions; unknown or already saved ones are ignored by the server.
    pub batch: Vec<ReencryptionBatchEntry>,
}

impl VlobMaintenanceSaveReencryptionBatch {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let encryption_revision = f.req("encryption_revision");
        let batch = f.req("batch");
        Some(Self {
            realm_id: realm_id?,
            encryption_revision: encryption_revision?,
            batch: batch?,
        })
    }
}

// ---------------------------------------------------------------- realms

/// `realm_create`: a new realm, with its creator as OWNER.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmCreate {
    /// Self-signed OWNER role certificate (carries the realm id).
    pub role_certificate: Vec<u8>,
}

impl RealmCreate {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            role_certificate: f.req("role_certificate")?,
        })
    }
}

/// `realm_status`: encryption revision and maintenance state of a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmStatus {
    /// The realm.
    pub realm_id: Uuid,
}

impl RealmStatus {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            realm_id: f.req("realm_id")?,
        })
    }
}

/// `realm_stats`: block and vlob sizes of a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmStats {
    /// The realm.
    pub realm_id: Uuid,
}

impl RealmStats {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            realm_id: f.req("realm_id")?,
        })
    }
}

/// `realm_get_role_certificates`: every role certificate of a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmGetRoleCertificates {
    /// The realm.
    pub realm_id: Uuid,
}

impl RealmGetRoleCertificates {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            realm_id: f.req("realm_id")?,
        })
    }
}

/// `realm_update_roles`: grants, changes or removes a user's role in a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmUpdateRoles {
    /// Role certificate signed by the requester (carries realm, user and role).
    pub role_certificate: Vec<u8>,
    /// Opaque message for the target user; key required, nil allowed.
    pub recipient_message: Option<Vec<u8>>,
}

impl RealmUpdateRoles {
    fn load(f: &mut Fields) -> Option<Self> {
        let role_certificate = f.req("role_certificate");
        let recipient_message = f.req_nullable("recipient_message");
        Some(Self {
            role_certificate: role_certificate?,
            recipient_message: recipient_message?,
        })
    }
}

/// `realm_start_reencryption_maintenance`: starts re-encryption at a new revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmStartReencryptionMaintenance {
    /// The realm.
    pub realm_id: Uuid,
    /// Must be the current revision + 1.
    pub encryption_revision: i64,
    /// Client-declared time (ballpark-checked), also the messages' timestamp.
    pub timestamp: DateTime,
    /// One message per realm participant (the requester included), keyed by user id.
    pub per_participant_message: BTreeMap<UserId, Vec<u8>>,
}

impl RealmStartReencryptionMaintenance {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let encryption_revision = f.req("encryption_revision");
        let timestamp = f.req("timestamp");
        let per_participant_message = f.req("per_participant_message");
        Some(Self {
            realm_id: realm_id?,
            encryption_revision: encryption_revision?,
            timestamp: timestamp?,
            per_participant_message: per_participant_message?,
        })
    }
}

/// `realm_finish_reencryption_maintenance`: ends re-encryption once every version is saved.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmFinishReencryptionMaintenance {
    /// The realm.
    pub realm_id: Uuid,
    /// Must be the current (new) revision.
    pub encryption_revision: i64,
}

impl RealmFinishReencryptionMaintenance {
    fn load(f: &mut Fields) -> Option<Self> {
        let realm_id = f.req("realm_id");
        let encryption_revision = f.req("encryption_revision");
        Some(Self {
            realm_id: realm_id?,
            encryption_revision: encryption_revision?,
        })
    }
}

// ---------------------------------------------------------------- PKI enrollment

/// `pki_enrollment_reject`: rejects a submitted enrollment (ADMIN only).
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentReject {
    /// The enrollment.
    pub enrollment_id: Uuid,
}

impl PkiEnrollmentReject {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            enrollment_id: f.req("enrollment_id")?,
        })
    }
}

/// `pki_enrollment_accept`: accepts a submitted enrollment by creating its user (ADMIN only).
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentAccept {
    /// The enrollment.
    pub enrollment_id: Uuid,
    /// Accepter's X.509 certificate (DER), opaque to the server.
    pub accepter_der_x509_certificate: Vec<u8>,
    /// Signature of `accept_payload`, opaque to the server.
    pub accept_payload_signature: Vec<u8>,
    /// `PkiEnrollmentAcceptPayload` (zlib + msgpack); must decode.
    pub accept_payload: Vec<u8>,
    /// As in `user_create`.
    pub user_certificate: Vec<u8>,
    /// As in `user_create`.
    pub device_certificate: Vec<u8>,
    /// As in `user_create`.
    pub redacted_user_certificate: Vec<u8>,
    /// As in `user_create`.
    pub redacted_device_certificate: Vec<u8>,
}

impl PkiEnrollmentAccept {
    fn load(f: &mut Fields) -> Option<Self> {
        let enrollment_id = f.req("enrollment_id");
        let accepter_der_x509_certificate = f.req("accepter_der_x509_certificate");
        let accept_payload_signature = f.req("accept_payload_signature");
        let accept_payload = f.req("accept_payload");
        let user_certificate = f.req("user_certificate");
        let device_certificate = f.req("device_certificate");
        let redacted_user_certificate = f.req("redacted_user_certificate");
        let redacted_device_certificate = f.req("redacted_device_certificate");
        Some(Self {
            enrollment_id: enrollment_id?,
            accepter_der_x509_certificate: accepter_der_x509_certificate?,
            accept_payload_signature: accept_payload_signature?,
            accept_payload: accept_payload?,
            user_certificate: user_certificate?,
            device_certificate: device_certificate?,
            redacted_user_certificate: redacted_user_certificate?,
            redacted_device_certificate: redacted_device_certificate?,
        })
    }
}

// ---------------------------------------------------------------- dispatch

/// Every request an authenticated connection may send.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReq {
    /// `ping`.
    Ping(Ping),
    /// `events_subscribe`: starts queueing events for this connection (no field).
    EventsSubscribe,
    /// `events_listen`.
    EventsListen(EventsListen),
    /// `message_get`.
    MessageGet(MessageGet),
    /// `user_get`.
    UserGet(UserGet),
    /// `user_create`.
    UserCreate(UserCreate),
    /// `user_revoke`.
    UserRevoke(UserRevoke),
    /// `device_create`.
    DeviceCreate(DeviceCreate),
    /// `human_find`.
    HumanFind(HumanFind),
    /// `invite_new`.
    InviteNew(InviteNew),
    /// `invite_delete`.
    InviteDelete(InviteDelete),
    /// `invite_list`: the requester's pending invitations (no field).
    InviteList,
    /// `invite_1_greeter_wait_peer`.
    Invite1GreeterWaitPeer(Invite1GreeterWaitPeer),
    /// `invite_2a_greeter_get_hashed_nonce`.
    Invite2aGreeterGetHashedNonce(Invite2aGreeterGetHashedNonce),
    /// `invite_2b_greeter_send_nonce`.
    Invite2bGreeterSendNonce(Invite2bGreeterSendNonce),
    /// `invite_3a_greeter_wait_peer_trust`.
    Invite3aGreeterWaitPeerTrust(Invite3aGreeterWaitPeerTrust),
    /// `invite_3b_greeter_signify_trust`.
    Invite3bGreeterSignifyTrust(Invite3bGreeterSignifyTrust),
    /// `invite_4_greeter_communicate`.
    Invite4GreeterCommunicate(Invite4GreeterCommunicate),
    /// `block_create`.
    BlockCreate(BlockCreate),
    /// `block_read`.
    BlockRead(BlockRead),
    /// `vlob_create`.
    VlobCreate(VlobCreate),
    /// `vlob_read`.
    VlobRead(VlobRead),
    /// `vlob_update`.
    VlobUpdate(VlobUpdate),
    /// `vlob_poll_changes`.
    VlobPollChanges(VlobPollChanges),
    /// `vlob_list_versions`.
    VlobListVersions(VlobListVersions),
    /// `vlob_maintenance_get_reencryption_batch`.
    VlobMaintenanceGetReencryptionBatch(VlobMaintenanceGetReencryptionBatch),
    /// `vlob_maintenance_save_reencryption_batch`.
    VlobMaintenanceSaveReencryptionBatch(VlobMaintenanceSaveReencryptionBatch),
    /// `realm_create`.
    RealmCreate(RealmCreate),
    /// `realm_status`.
    RealmStatus(RealmStatus),
    /// `realm_stats` (served although missing from the reference's command list).
    RealmStats(RealmStats),
    /// `realm_get_role_certificates`.
    RealmGetRoleCertificates(RealmGetRoleCertificates),
    /// `realm_update_roles`.
    RealmUpdateRoles(RealmUpdateRoles),
    /// `realm_start_reencryption_maintenance`.
    RealmStartReencryptionMaintenance(RealmStartReencryptionMaintenance),
    /// `realm_finish_reencryption_maintenance`.
    RealmFinishReencryptionMaintenance(RealmFinishReencryptionMaintenance),
    /// `organization_stats`: organization-wide counters, ADMIN only (no field).
    OrganizationStats,
    /// `organization_config`: outsider policy and active users limit (no field).
    OrganizationConfig,
    /// `pki_enrollment_list`: submitted enrollments, ADMIN only (no field).
    PkiEnrollmentList,
    /// `pki_enrollment_reject`.
    PkiEnrollmentReject(PkiEnrollmentReject),
    /// `pki_enrollment_accept`.
    PkiEnrollmentAccept(PkiEnrollmentAccept),
}

impl AnyReq {
    /// [`AnyReq::load`], with the bulk bytes of `block_create` (`block`),
    /// `vlob_create` and `vlob_update` (`blob`) moved out of `map` instead
    /// of copied (`map` keeps empty ones). The schema only checks that they
    /// are bytes, so the outcome is the same as `load`'s.
    pub fn load_moving_bytes(map: &mut [(Value, Value)]) -> Result<Self, LoadError> {
        let bulk = match cmd_name(map) {
            Some("block_create") => "block",
            Some("vlob_create" | "vlob_update") => "blob",
            _ => return Self::load(map),
        };
        let moved = match crate::value::get_mut(map, bulk) {
            Some(Value::Binary(bytes)) => std::mem::take(bytes),
            _ => return Self::load(map),
        };
        let mut req = Self::load(map)?;
        match &mut req {
            AnyReq::BlockCreate(r) => r.block = moved,
            AnyReq::VlobCreate(r) => r.blob = moved,
            AnyReq::VlobUpdate(r) => r.blob = moved,
            _ => {}
        }
        Ok(req)
    }

    /// Loads a decoded request map (see the module doc of `cmds` for the steps).
    pub fn load(map: &[(Value, Value)]) -> Result<Self, LoadError> {
        use AnyReq as R;
        let cmd = cmd_name(map).ok_or(LoadError::UnknownCommand)?;
        Ok(match cmd {
            "ping" => R::Ping(load_fields("ping", map, Ping::load)?),
            "events_subscribe" => R::EventsSubscribe,
            "events_listen" => R::EventsListen(load_fields("events_listen", map, EventsListen::load)?),
            "message_get" => R::MessageGet(load_fields("message_get", map, MessageGet::load)?),
            "user_get" => R::UserGet(load_fields("user_get", map, UserGet::load)?),
            "user_create" => R::UserCreate(load_fields("user_create", map, UserCreate::load)?),
            "user_revoke" => R::UserRevoke(load_fields("user_revoke", map, UserRevoke::load)?),
            "device_create" => R::DeviceCreate(load_fields("device_create", map, DeviceCreate::load)?),
            "human_find" => R::HumanFind(load_fields("human_find", map, HumanFind::load)?),
            "invite_new" => R::InviteNew(load_fields("invite_new", map, InviteNew::load)?),
            "invite_delete" => R::InviteDelete(load_fields("invite_delete", map, InviteDelete::load)?),
            "invite_list" => R::InviteList,
            "invite_1_greeter_wait_peer" => R::Invite1GreeterWaitPeer(load_fields(
                "invite_1_greeter_wait_peer",
                map,
                Invite1GreeterWaitPeer::load,
            )?),
            "invite_2a_greeter_get_hashed_nonce" => R::Invite2aGreeterGetHashedNonce(load_fields(
                "invite_2a_greeter_get_hashed_nonce",
                map,
                Invite2aGreeterGetHashedNonce::load,
            )?),
            "invite_2b_greeter_send_nonce" => R::Invite2bGreeterSendNonce(load_fields(
                "invite_2b_greeter_send_nonce",
                map,
                Invite2bGreeterSendNonce::load,
            )?),
            "invite_3a_greeter_wait_peer_trust" => R::Invite3aGreeterWaitPeerTrust(load_fields(
                "invite_3a_greeter_wait_peer_trust",
                map,
                Invite3aGreeterWaitPeerTrust::load,
            )?),
            "invite_3b_greeter_signify_trust" => R::Invite3bGreeterSignifyTrust(load_fields(
                "invite_3b_greeter_signify_trust",
                map,
                Invite3bGreeterSignifyTrust::load,
            )?),
            "invite_4_greeter_communicate" => R::Invite4GreeterCommunicate(load_fields(
                "invite_4_greeter_communicate",
                map,
                Invite4GreeterCommunicate::load,
            )?),
            "block_create" => R::BlockCreate(load_fields("block_create", map, BlockCreate::load)?),
            "block_read" => R::BlockRead(load_fields("block_read", map, BlockRead::load)?),
            "vlob_create" => R::VlobCreate(load_fields("vlob_create", map, VlobCreate::load)?),
            "vlob_read" => R::VlobRead(load_fields("vlob_read", map, VlobRead::load)?),
            "vlob_update" => R::VlobUpdate(load_fields("vlob_update", map, VlobUpdate::load)?),
            "vlob_poll_changes" => R::VlobPollChanges(load_fields("vlob_poll_changes", map, VlobPollChanges::load)?),
            "vlob_list_versions" => {
                R::VlobListVersions(load_fields("vlob_list_versions", map, VlobListVersions::load)?)
            }
            "vlob_maintenance_get_reencryption_batch" => R::VlobMaintenanceGetReencryptionBatch(load_fields(
                "vlob_maintenance_get_reencryption_batch",
                map,
                VlobMaintenanceGetReencryptionBatch::load,
            )?),
            "vlob_maintenance_save_reencryption_batch" => R::VlobMaintenanceSaveReencryptionBatch(load_fields(
                "vlob_maintenance_save_reencryption_batch",
                map,
                VlobMaintenanceSaveReencryptionBatch::load,
            )?),
            "realm_create" => R::RealmCreate(load_fields("realm_create", map, RealmCreate::load)?),
            "realm_status" => R::RealmStatus(load_fields("realm_status", map, RealmStatus::load)?),
            "realm_stats" => R::RealmStats(load_fields("realm_stats", map, RealmStats::load)?),
            "realm_get_role_certificates" => R::RealmGetRoleCertificates(load_fields(
                "realm_get_role_certificates",
                map,
                RealmGetRoleCertificates::load,
            )?),
            "realm_update_roles" => {
                R::RealmUpdateRoles(load_fields("realm_update_roles", map, RealmUpdateRoles::load)?)
            }
            "realm_start_reencryption_maintenance" => R::RealmStartReencryptionMaintenance(load_fields(
                "realm_start_reencryption_maintenance",
                map,
                RealmStartReencryptionMaintenance::load,
            )?),
            "realm_finish_reencryption_maintenance" => R::RealmFinishReencryptionMaintenance(load_fields(
                "realm_finish_reencryption_maintenance",
                map,
                RealmFinishReencryptionMaintenance::load,
            )?),
            "organization_stats" => R::OrganizationStats,
            "organization_config" => R::OrganizationConfig,
            "pki_enrollment_list" => R::PkiEnrollmentList,
            "pki_enrollment_reject" => {
                R::PkiEnrollmentReject(load_fields("pki_enrollment_reject", map, PkiEnrollmentReject::load)?)
            }
            "pki_enrollment_accept" => {
                R::PkiEnrollmentAccept(load_fields("pki_enrollment_accept", map, PkiEnrollmentAccept::load)?)
            }
            _ => return Err(LoadError::UnknownCommand),
        })
    }

    /// Wire name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            AnyReq::Ping(_) => "ping",
            AnyReq::EventsSubscribe => "events_subscribe",
            AnyReq::EventsListen(_) => "events_listen",
            AnyReq::MessageGet(_) => "message_get",
            AnyReq::UserGet(_) => "user_get",
            AnyReq::UserCreate(_) => "user_create",
            AnyReq::UserRevoke(_) => "user_revoke",
            AnyReq::DeviceCreate(_) => "device_create",
            AnyReq::HumanFind(_) => "human_find",
            AnyReq::InviteNew(_) => "invite_new",
            AnyReq::InviteDelete(_) => "invite_delete",
            AnyReq::InviteList => "invite_list",
            AnyReq::Invite1GreeterWaitPeer(_) => "invite_1_greeter_wait_peer",
            AnyReq::Invite2aGreeterGetHashedNonce(_) => "invite_2a_greeter_get_hashed_nonce",
            AnyReq::Invite2bGreeterSendNonce(_) => "invite_2b_greeter_send_nonce",
            AnyReq::Invite3aGreeterWaitPeerTrust(_) => "invite_3a_greeter_wait_peer_trust",
            AnyReq::Invite3bGreeterSignifyTrust(_) => "invite_3b_greeter_signify_trust",
            AnyReq::Invite4GreeterCommunicate(_) => "invite_4_greeter_communicate",
            AnyReq::BlockCreate(_) => "block_create",
            AnyReq::BlockRead(_) => "block_read",
            AnyReq::VlobCreate(_) => "vlob_create",
            AnyReq::VlobRead(_) => "vlob_read",
            AnyReq::VlobUpdate(_) => "vlob_update",
            AnyReq::VlobPollChanges(_) => "vlob_poll_changes",
            AnyReq::VlobListVersions(_) => "vlob_list_versions",
            AnyReq::VlobMaintenanceGetReencryptionBatch(_) => "vlob_maintenance_get_reencryption_batch",
            AnyReq::VlobMaintenanceSaveReencryptionBatch(_) => "vlob_maintenance_save_reencryption_batch",
            AnyReq::RealmCreate(_) => "realm_create",
            AnyReq::RealmStatus(_) => "realm_status",
            AnyReq::RealmStats(_) => "realm_stats",
            AnyReq::RealmGetRoleCertificates(_) => "realm_get_role_certificates",
            AnyReq::RealmUpdateRoles(_) => "realm_update_roles",
            AnyReq::RealmStartReencryptionMaintenance(_) => "realm_start_reencryption_maintenance",
            AnyReq::RealmFinishReencryptionMaintenance(_) => "realm_finish_reencryption_maintenance",
            AnyReq::OrganizationStats => "organization_stats",
            AnyReq::OrganizationConfig => "organization_config",
            AnyReq::PkiEnrollmentList => "pki_enrollment_list",
            AnyReq::PkiEnrollmentReject(_) => "pki_enrollment_reject",
            AnyReq::PkiEnrollmentAccept(_) => "pki_enrollment_accept",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::uuid_value;
    use crate::value::map;

    fn load(entries: Vec<(&str, Value)>) -> Result<AnyReq, LoadError> {
        let Value::Map(m) = map(entries) else { unreachable!() };
        AnyReq::load(&m)
    }

    fn bad_fields(entries: Vec<(&str, Value)>) -> Vec<String> {
        match load(entries) {
            Err(LoadError::BadMessage { errors, .. }) => errors.0.into_keys().collect(),
            other => panic!("expected bad_message, got {other:?}"),
        }
    }

    fn s(v: &str) -> Value {
        Value::from(v)
    }
    fn int(n: i64) -> Value {
        Value::from(n)
    }
    fn bin(b: &[u8]) -> Value {
        Value::Binary(b.to_vec())
    }
    fn id(n: u128) -> Value {
        uuid_value(Uuid::from_u128(n))
    }
    fn ts() -> Value {
        DateTime::from_micros(1_700_000_000_123_456).to_value()
    }

    /// One valid request per command, with every field it takes.
    fn valid_requests() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
        let certs = || {
            vec![
                ("user_certificate", bin(b"u")),
                ("device_certificate", bin(b"d")),
                ("redacted_user_certificate", bin(b"ru")),
                ("redacted_device_certificate", bin(b"rd")),
            ]
        };
        let mut accept = vec![
            ("enrollment_id", id(9)),
            ("accepter_der_x509_certificate", bin(b"x509")),
            ("accept_payload_signature", bin(b"sig")),
            ("accept_payload", bin(b"payload")),
        ];
        accept.extend(certs());
        vec![
            ("ping", vec![("ping", s("hello"))]),
            ("events_subscribe", vec![]),
            ("events_listen", vec![("wait", Value::Boolean(true))]),
            ("message_get", vec![("offset", int(0))]),
            ("user_get", vec![("user_id", s("alice"))]),
            ("user_create", certs()),
            ("user_revoke", vec![("revoked_user_certificate", bin(b"r"))]),
            (
                "device_create",
                vec![
                    ("device_certificate", bin(b"d")),
                    ("redacted_device_certificate", bin(b"rd")),
                ],
            ),
            (
                "human_find",
                vec![
                    ("query", Value::Nil),
                    ("omit_revoked", Value::Boolean(false)),
                    ("omit_non_human", Value::Boolean(true)),
                    ("page", int(1)),
                    ("per_page", int(100)),
                ],
            ),
            (
                "invite_new",
                vec![
                    ("type", s("USER")),
                    ("claimer_email", s("zack@example.com")),
                    ("send_email", Value::Boolean(true)),
                ],
            ),
            ("invite_delete", vec![("token", id(1)), ("reason", s("CANCELLED"))]),
            ("invite_list", vec![]),
            (
                "invite_1_greeter_wait_peer",
                vec![("token", id(1)), ("greeter_public_key", bin(&[7; 32]))],
            ),
            ("invite_2a_greeter_get_hashed_nonce", vec![("token", id(1))]),
            (
                "invite_2b_greeter_send_nonce",
                vec![("token", id(1)), ("greeter_nonce", bin(b"nonce"))],
            ),
            ("invite_3a_greeter_wait_peer_trust", vec![("token", id(1))]),
            ("invite_3b_greeter_signify_trust", vec![("token", id(1))]),
            (
                "invite_4_greeter_communicate",
                vec![("token", id(1)), ("payload", bin(b""))],
            ),
            (
                "block_create",
                vec![("block_id", id(2)), ("realm_id", id(3)), ("block", bin(b"data"))],
            ),
            ("block_read", vec![("block_id", id(2))]),
            (
                "vlob_create",
                vec![
                    ("realm_id", id(3)),
                    ("encryption_revision", int(1)),
                    ("vlob_id", id(4)),
                    ("timestamp", ts()),
                    ("blob", bin(b"blob")),
                ],
            ),
            (
                "vlob_read",
                vec![
                    ("encryption_revision", int(1)),
                    ("vlob_id", id(4)),
                    ("version", Value::Nil),
                    ("timestamp", ts()),
                ],
            ),
            (
                "vlob_update",
                vec![
                    ("encryption_revision", int(1)),
                    ("vlob_id", id(4)),
                    ("timestamp", ts()),
                    ("version", int(2)),
                    ("blob", bin(b"blob2")),
                ],
            ),
            (
                "vlob_poll_changes",
                vec![("realm_id", id(3)), ("last_checkpoint", int(0))],
            ),
            ("vlob_list_versions", vec![("vlob_id", id(4))]),
            (
                "vlob_maintenance_get_reencryption_batch",
                vec![
                    ("realm_id", id(3)),
                    ("encryption_revision", int(2)),
                    ("size", int(1000)),
                ],
            ),
            (
                "vlob_maintenance_save_reencryption_batch",
                vec![
                    ("realm_id", id(3)),
                    ("encryption_revision", int(2)),
                    (
                        "batch",
                        Value::Array(vec![map([
                            ("vlob_id", id(4)),
                            ("version", int(1)),
                            ("blob", bin(b"re")),
                        ])]),
                    ),
                ],
            ),
            ("realm_create", vec![("role_certificate", bin(b"role"))]),
            ("realm_status", vec![("realm_id", id(3))]),
            ("realm_stats", vec![("realm_id", id(3))]),
            ("realm_get_role_certificates", vec![("realm_id", id(3))]),
            (
                "realm_update_roles",
                vec![("role_certificate", bin(b"role")), ("recipient_message", bin(b"msg"))],
            ),
            (
                "realm_start_reencryption_maintenance",
                vec![
                    ("realm_id", id(3)),
                    ("encryption_revision", int(2)),
                    ("timestamp", ts()),
                    (
                        "per_participant_message",
                        map([("alice", bin(b"a")), ("bob", bin(b"b"))]),
                    ),
                ],
            ),
            (
                "realm_finish_reencryption_maintenance",
                vec![("realm_id", id(3)), ("encryption_revision", int(2))],
            ),
            ("organization_stats", vec![]),
            ("organization_config", vec![]),
            ("pki_enrollment_list", vec![]),
            ("pki_enrollment_reject", vec![("enrollment_id", id(9))]),
            ("pki_enrollment_accept", accept),
        ]
    }

    fn with_cmd(cmd: &'static str, fields: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
        let mut entries = vec![("cmd", s(cmd))];
        entries.extend(fields);
        entries
    }

    #[test]
    fn every_command_loads() {
        let requests = valid_requests();
        assert_eq!(requests.len(), 39);
        for (cmd, fields) in requests {
            let has_fields = !fields.is_empty();
            let req = load(with_cmd(cmd, fields)).unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
            assert_eq!(req.name(), cmd);
            // Every field of every command is required: the bare command is
            // refused, and the error names the command.
            if has_fields {
                match load(with_cmd(cmd, vec![])) {
                    Err(LoadError::BadMessage { cmd: name, errors }) => {
                        assert_eq!(name, cmd);
                        assert!(!errors.is_empty());
                    }
                    other => panic!("{cmd}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn loaded_values() {
        let get = |cmd| {
            let (_, fields) = valid_requests().into_iter().find(|(c, _)| *c == cmd).unwrap();
            load(with_cmd(cmd, fields)).unwrap()
        };
        assert_eq!(
            get("vlob_read"),
            AnyReq::VlobRead(VlobRead {
                encryption_revision: 1,
                vlob_id: Uuid::from_u128(4),
                version: None,
                timestamp: Some(DateTime::from_micros(1_700_000_000_123_456)),
            })
        );
        assert_eq!(
            get("invite_new"),
            AnyReq::InviteNew(InviteNew {
                kind: InviteNewKind::User {
                    claimer_email: "zack@example.com".into()
                },
                send_email: true,
            })
        );
        assert_eq!(
            get("human_find"),
            AnyReq::HumanFind(HumanFind {
                query: None,
                omit_revoked: false,
                omit_non_human: true,
                page: 1,
                per_page: 100
            })
        );
        let AnyReq::RealmStartReencryptionMaintenance(r) = get("realm_start_reencryption_maintenance") else {
            unreachable!()
        };
        assert_eq!(r.per_participant_message.len(), 2);
        assert_eq!(r.per_participant_message[&UserId::parse("bob").unwrap()], b"b".to_vec());
        let AnyReq::VlobMaintenanceSaveReencryptionBatch(r) = get("vlob_maintenance_save_reencryption_batch") else {
            unreachable!()
        };
        assert_eq!(
            r.batch,
            vec![ReencryptionBatchEntry {
                vlob_id: Uuid::from_u128(4),
                version: 1,
                blob: b"re".to_vec()
            }]
        );
        let AnyReq::Invite1GreeterWaitPeer(r) = get("invite_1_greeter_wait_peer") else {
            unreachable!()
        };
        assert_eq!(r.greeter_public_key, [7; 32]);
    }

    #[test]
    fn bad_messages() {
        let fields = bad_fields(vec![
            ("cmd", s("vlob_read")),
            ("encryption_revision", s("one")),
            ("vlob_id", s("not-an-uuid")),
        ]);
        assert_eq!(fields, ["encryption_revision", "timestamp", "version", "vlob_id"]);
        assert_eq!(
            bad_fields(vec![("cmd", s("user_get")), ("user_id", s("!!invalid user id!!"))]),
            ["user_id"]
        );
        assert_eq!(
            bad_fields(vec![("cmd", s("message_get")), ("offset", s("zero"))]),
            ["offset"]
        );
        assert_eq!(
            bad_fields(vec![("cmd", s("realm_status")), ("realm_id", int(12))]),
            ["realm_id"]
        );
        assert_eq!(
            bad_fields(vec![("cmd", s("block_read")), ("block_id", Value::Nil)]),
            ["block_id"]
        );
        assert_eq!(
            bad_fields(vec![
                ("cmd", s("human_find")),
                ("query", int(1)),
                ("page", s("x")),
                ("per_page", int(0)),
                ("omit_revoked", s("no")),
                ("omit_non_human", Value::Nil),
            ]),
            ["omit_non_human", "omit_revoked", "page", "per_page", "query"]
        );
        assert_eq!(bad_fields(vec![("cmd", s("ping")), ("ping", int(42))]), ["ping"]);
        assert_eq!(bad_fields(vec![("cmd", s("ping"))]), ["ping"]);
    }

    /// Replaces (or adds) one field of a command's valid request.
    fn variant(cmd: &'static str, key: &'static str, value: Value) -> Vec<(&'static str, Value)> {
        let (_, mut fields) = valid_requests().into_iter().find(|(c, _)| *c == cmd).unwrap();
        fields.retain(|(k, _)| *k != key);
        fields.push((key, value));
        with_cmd(cmd, fields)
    }

    fn without(cmd: &'static str, key: &'static str) -> Vec<(&'static str, Value)> {
        let (_, mut fields) = valid_requests().into_iter().find(|(c, _)| *c == cmd).unwrap();
        fields.retain(|(k, _)| *k != key);
        with_cmd(cmd, fields)
    }

    #[test]
    fn ranges() {
        assert!(load(variant("message_get", "offset", int(-1))).is_err());
        assert!(load(variant("human_find", "page", int(0))).is_err());
        assert!(load(variant("human_find", "per_page", int(101))).is_err());
        assert!(load(variant("human_find", "per_page", int(1))).is_ok());
        assert!(load(variant("human_find", "query", s("bob"))).is_ok());
        assert!(load(variant("vlob_read", "version", int(0))).is_err());
        assert!(load(variant("vlob_read", "version", int(1))).is_ok());
        assert!(load(variant("vlob_update", "version", int(0))).is_err());
        assert!(load(variant("vlob_maintenance_get_reencryption_batch", "size", int(1001))).is_err());
        assert!(load(variant("vlob_maintenance_get_reencryption_batch", "size", int(-1))).is_err());
        assert!(load(variant("vlob_maintenance_get_reencryption_batch", "size", int(0))).is_ok());
        let entry = |version: i64| {
            Value::Array(vec![map([
                ("vlob_id", id(4)),
                ("version", int(version)),
                ("blob", bin(b"")),
            ])])
        };
        assert!(load(variant("vlob_maintenance_save_reencryption_batch", "batch", entry(0))).is_ok());
        assert!(load(variant("vlob_maintenance_save_reencryption_batch", "batch", entry(-1))).is_err());
        let no_blob = Value::Array(vec![map([("vlob_id", id(4)), ("version", int(1))])]);
        assert!(load(variant("vlob_maintenance_save_reencryption_batch", "batch", no_blob)).is_err());
        assert!(
            load(variant(
                "vlob_maintenance_save_reencryption_batch",
                "batch",
                Value::Array(vec![])
            ))
            .is_ok()
        );
    }

    #[test]
    fn nullability() {
        // Required keys that accept nil.
        assert!(load(without("vlob_read", "version")).is_err());
        assert!(load(without("vlob_read", "timestamp")).is_err());
        assert!(load(variant("vlob_read", "timestamp", Value::Nil)).is_ok());
        assert!(load(without("human_find", "query")).is_err());
        assert!(load(without("realm_update_roles", "recipient_message")).is_err());
        assert_eq!(
            load(variant("realm_update_roles", "recipient_message", Value::Nil)),
            Ok(AnyReq::RealmUpdateRoles(RealmUpdateRoles {
                role_certificate: b"role".to_vec(),
                recipient_message: None
            }))
        );
        // Required keys that do not.
        assert!(load(variant("vlob_create", "timestamp", Value::Nil)).is_err());
        assert!(load(variant("realm_create", "role_certificate", Value::Nil)).is_err());
        // Unknown keys are ignored.
        assert!(load(variant("realm_create", "unexpected", int(1))).is_ok());
    }

    #[test]
    fn typed_values() {
        assert!(
            load(variant(
                "invite_1_greeter_wait_peer",
                "greeter_public_key",
                bin(&[7; 31])
            ))
            .is_err()
        );
        assert!(load(variant("invite_delete", "reason", s("NOPE"))).is_err());
        assert!(load(variant("invite_delete", "reason", s("finished"))).is_err());
        assert!(load(variant("vlob_create", "blob", s("not bytes"))).is_err());
        assert!(load(variant("vlob_create", "timestamp", Value::F64(1.0))).is_err());
        let bad_key = map([("not a user id", bin(b"a"))]);
        assert!(
            load(variant(
                "realm_start_reencryption_maintenance",
                "per_participant_message",
                bad_key
            ))
            .is_err()
        );
        let bad_value = map([("alice", s("a"))]);
        assert!(
            load(variant(
                "realm_start_reencryption_maintenance",
                "per_participant_message",
                bad_value
            ))
            .is_err()
        );
        assert!(
            load(variant(
                "realm_start_reencryption_maintenance",
                "per_participant_message",
                map(Vec::<(&str, Value)>::new())
            ))
            .is_ok()
        );
    }

    #[test]
    fn invite_new_shapes() {
        let new = |fields: Vec<(&'static str, Value)>| load(with_cmd("invite_new", fields));
        assert_eq!(
            new(vec![
                ("type", s("DEVICE")),
                ("send_email", Value::Boolean(false)),
                ("claimer_email", int(3))
            ]),
            Ok(AnyReq::InviteNew(InviteNew {
                kind: InviteNewKind::Device,
                send_email: false
            }))
        );
        assert_eq!(InviteNewKind::Device.invitation_type(), InvitationType::Device);
        assert!(new(vec![("type", s("DEVICE"))]).is_err());
        assert!(new(vec![("type", s("USER")), ("send_email", Value::Boolean(false))]).is_err());
        assert!(new(vec![("type", s("USER")), ("claimer_email", s("a@b.c"))]).is_err());
        // An unusable `type` is the only error reported, as in the reference.
        assert_eq!(bad_fields(with_cmd("invite_new", vec![("type", s("FOO"))])), ["type"]);
        assert_eq!(
            bad_fields(with_cmd("invite_new", vec![("type", int(1)), ("send_email", int(1))])),
            ["type"]
        );
        assert_eq!(
            bad_fields(with_cmd("invite_new", vec![("send_email", Value::Boolean(true))])),
            ["type"]
        );
    }

    #[test]
    fn unknown_commands() {
        for cmd in [
            "invite_info",
            "invite_1_claimer_wait_peer",
            "organization_bootstrap",
            "pki_enrollment_submit",
            "Ping",
            "",
        ] {
            assert_eq!(
                load(vec![("cmd", s(cmd)), ("ping", s("x"))]),
                Err(LoadError::UnknownCommand),
                "{cmd}"
            );
        }
        assert_eq!(load(vec![("cmd", int(42))]), Err(LoadError::UnknownCommand));
        assert_eq!(load(vec![("cmd", Value::Nil)]), Err(LoadError::UnknownCommand));
        assert_eq!(
            load(vec![("cmd", bin(b"ping")), ("ping", s("x"))]),
            Err(LoadError::UnknownCommand)
        );
        assert_eq!(load(vec![]), Err(LoadError::UnknownCommand));
    }

    /// Moving the bulk bytes out gives what `load` gives, for every command
    /// and for the refusals of the three that move bytes.
    #[test]
    fn loading_with_moved_bytes_is_loading() {
        let mut cases: Vec<Vec<(&str, Value)>> = valid_requests()
            .into_iter()
            .map(|(cmd, fields)| with_cmd(cmd, fields))
            .collect();
        for (cmd, bulk) in [
            ("block_create", "block"),
            ("vlob_create", "blob"),
            ("vlob_update", "blob"),
        ] {
            cases.push(without(cmd, bulk));
            cases.push(variant(cmd, bulk, s("not bytes")));
            cases.push(variant(cmd, bulk, Value::Nil));
            cases.push(variant(cmd, "encryption_revision", s("x")));
            cases.push(variant(cmd, "block_id", s("x")));
        }
        for entries in cases {
            let Value::Map(mut m) = map(entries) else {
                unreachable!()
            };
            let expected = AnyReq::load(&m);
            assert_eq!(AnyReq::load_moving_bytes(&mut m), expected, "{m:?}");
        }
    }
}
