//! Profile checks the reference makes *before* parsing a request.
//!
//! For a few commands the 2.10 reference looks at the requester's profile
//! first, so a malformed request from the wrong profile gets `not_allowed`,
//! not `bad_message` (commands.md §0.1, README §8.2). Well-formed requests
//! are checked again by each command function, which is where the rule
//! lives; this module only answers for requests that failed to parse, and
//! is called by the session when loading gives `bad_message`.
//!
//! It must never grant anything: it only turns a `bad_message` into the
//! `not_allowed` the reference would have sent.

use parsec_protocol::cmds::LoadError;
use parsec_protocol::types::UserProfile;
use parsec_protocol::value::Value;

use crate::client::AuthenticatedClient;

/// The reply replacing `bad_message` for a request the requester's profile
/// may not send at all, if any.
pub fn refused_before_parsing(client: &AuthenticatedClient, e: &LoadError) -> Option<Value> {
    let LoadError::BadMessage { cmd, .. } = e else {
        return None;
    };
    let rep = match *cmd {
        "user_create" | "user_revoke" | "pki_enrollment_list" | "pki_enrollment_reject" | "pki_enrollment_accept"
            if client.profile != UserProfile::Admin =>
        {
            Some(crate::user::not_admin(client))
        }
        "human_find" if client.profile == UserProfile::Outsider => Some(crate::user::outsider_cannot_find_humans()),
        "realm_update_roles" if client.profile == UserProfile::Outsider => Some(parsec_protocol::cmds::status_reason(
            "not_allowed",
            "Outsider user cannot share realm",
        )),
        _ => None,
    };
    if rep.is_some() {
        log::info!(
            "{client} cmd={cmd}: malformed, and not allowed for a {} (checked first)",
            client.profile
        );
    }
    rep
}

#[cfg(test)]
mod tests {
    use parsec_protocol::fields::SchemaErrors;
    use parsec_protocol::types::*;
    use parsec_protocol::value;

    use super::*;

    fn client(profile: UserProfile) -> AuthenticatedClient {
        AuthenticatedClient {
            conn_id: 1,
            org: OrganizationId::parse("CoolOrg").unwrap(),
            device_id: DeviceId::parse("bob@dev1").unwrap(),
            user_id: UserId::parse("bob").unwrap(),
            profile,
            human_handle: None,
            device_label: None,
            verify_key: [0; 32],
        }
    }

    fn reason(v: &Value) -> Option<&str> {
        match v {
            Value::Map(m) => value::get(m, "reason").and_then(Value::as_str),
            _ => None,
        }
    }

    #[test]
    fn only_bad_messages_of_listed_commands_from_the_wrong_profile() {
        let bad = |cmd| LoadError::BadMessage {
            cmd,
            errors: SchemaErrors::default(),
        };
        let standard = client(UserProfile::Standard);
        let outsider = client(UserProfile::Outsider);
        let admin = client(UserProfile::Admin);
        for cmd in [
            "user_create",
            "user_revoke",
            "pki_enrollment_list",
            "pki_enrollment_reject",
            "pki_enrollment_accept",
        ] {
            let rep = refused_before_parsing(&standard, &bad(cmd)).unwrap();
            assert_eq!(reason(&rep), Some("User `bob` is not admin"));
            assert!(refused_before_parsing(&admin, &bad(cmd)).is_none());
        }
        let rep = refused_before_parsing(&outsider, &bad("human_find")).unwrap();
        assert_eq!(reason(&rep), Some("Not allowed for user with OUTSIDER profile."));
        let rep = refused_before_parsing(&outsider, &bad("realm_update_roles")).unwrap();
        assert_eq!(reason(&rep), Some("Outsider user cannot share realm"));
        assert!(refused_before_parsing(&standard, &bad("human_find")).is_none());
        assert!(refused_before_parsing(&outsider, &bad("device_create")).is_none());
        assert!(refused_before_parsing(&outsider, &LoadError::UnknownCommand).is_none());
    }
}
