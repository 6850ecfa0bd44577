//! Who is on the other end of a connection, once the handshake succeeded.

use parsec_protocol::types::*;

/// An authenticated device. Revocation and expiry are not re-checked per
/// command: they close the connection through the broker instead (README §6).
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub conn_id: u64,
    pub org: OrganizationId,
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub profile: UserProfile,
    pub human_handle: Option<HumanHandle>,
    pub device_label: Option<DeviceLabel>,
    pub verify_key: Key32,
}

impl std::fmt::Display for AuthenticatedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn={} org={} device={}", self.conn_id, self.org, self.device_id)
    }
}

/// An invitation claimer (INVITED connection).
#[derive(Debug, Clone)]
pub struct InvitedClient {
    pub conn_id: u64,
    pub org: OrganizationId,
    pub invitation_type: InvitationType,
    pub token: Uuid,
    /// The invitation as it was at handshake: `invite_info` answers from it
    /// and the READY / IDLE events name its greeter.
    pub invitation: crate::backend::Invitation,
}

/// A legacy API v1 anonymous connection (bootstrap only).
#[derive(Debug, Clone)]
pub struct AnonymousClient {
    pub conn_id: u64,
    pub org: OrganizationId,
}
