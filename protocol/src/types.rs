//! Identifiers and values of the Parsec v2 protocol, validated as the
//! reference validates them (README §3): NFC normalisation, then the
//! `^[\w\-]{1,32}$` family of rules with Python's Unicode-aware `\w`.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::value::{EXT_DATETIME, EXT_UUID, Value};

/// A point in time with microsecond precision (what the reference and
/// PostgreSQL keep). Several checks compare timestamps for equality, so the
/// wire float is converted exactly (README §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(i64);

impl DateTime {
    /// Microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }
    pub const fn as_micros(self) -> i64 {
        self.0
    }
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_micros())
    }
    /// Decodes the reference's float seconds, rounding the fraction to the
    /// nearest microsecond, ties to even.
    pub fn from_f64(f: f64) -> Option<Self> {
        if !f.is_finite() || f.abs() > 1e13 {
            return None;
        }
        let secs = f.trunc();
        let mut micros = ((f - secs) * 1e6).round_ties_even() as i64;
        let mut secs = secs as i64;
        if micros >= 1_000_000 {
            secs += 1;
            micros -= 1_000_000;
        } else if micros <= -1_000_000 {
            secs -= 1;
            micros += 1_000_000;
        }
        Some(Self(secs * 1_000_000 + micros))
    }
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
    /// Seconds from `self` to `other` (positive when `other` is later).
    pub fn secs_until(self, other: DateTime) -> f64 {
        (other.0 - self.0) as f64 / 1_000_000.0
    }
    pub fn add_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }
    /// Wire form: ext 1, big-endian f64.
    pub fn to_value(self) -> Value {
        Value::Ext(EXT_DATETIME, self.to_f64().to_be_bytes().to_vec())
    }
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_micros(self.0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Reference ballpark (README §5.4): a client timestamp may be at most 50 s
/// ahead and 70 s behind the server's clock, strictly.
pub const BALLPARK_CLIENT_EARLY_OFFSET: f64 = 50.0;
pub const BALLPARK_CLIENT_LATE_OFFSET: f64 = 70.0;

/// True when `client` is within the ballpark around `server_now`.
pub fn timestamps_in_the_ballpark(client: DateTime, server_now: DateTime) -> bool {
    let delta = client.secs_until(server_now);
    -BALLPARK_CLIENT_EARLY_OFFSET < delta && delta < BALLPARK_CLIENT_LATE_OFFSET
}

/// Python's Unicode `\w` plus `-`.
fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn valid_id_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(is_id_char)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates (after NFC normalisation) as the reference does.
            pub fn parse(raw: &str) -> Result<Self, String> {
                let s: String = raw.nfc().collect();
                let check: fn(&str) -> bool = $check;
                if check(&s) { Ok(Self(s)) } else { Err(concat!("Invalid ", $what).to_string()) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s)
            }
        }
    };
}

string_id!(
    /// `^[\w\-]{1,32}$`
    OrganizationId, valid_id_part, "OrganizationID"
);
string_id!(
    /// `^[\w\-]{1,32}$`
    UserId, valid_id_part, "UserID"
);
string_id!(
    /// `^[\w\-]{1,32}$`
    DeviceName, valid_id_part, "DeviceName"
);
string_id!(
    /// `<user_id>@<device_name>`
    DeviceId,
    |s| matches!(s.split_once('@'), Some((u, d)) if valid_id_part(u) && valid_id_part(d)),
    "DeviceID"
);
string_id!(
    /// At least one character, no newline, at most 255 bytes.
    DeviceLabel,
    |s| !s.is_empty() && s.len() <= 255 && !s.contains('\n'),
    "DeviceLabel"
);

impl DeviceId {
    pub fn user_id(&self) -> UserId {
        let user = self.0.split_once('@').map(|(u, _)| u).unwrap_or(&self.0);
        UserId(user.to_string())
    }
    pub fn device_name(&self) -> DeviceName {
        let name = self.0.split_once('@').map(|(_, d)| d).unwrap_or("");
        DeviceName(name.to_string())
    }
}

/// `[email, label]`; humans are equal when their emails are.
#[derive(Debug, Clone)]
pub struct HumanHandle {
    pub email: String,
    pub label: String,
}

impl PartialEq for HumanHandle {
    fn eq(&self, other: &Self) -> bool {
        self.email == other.email
    }
}
impl Eq for HumanHandle {}

impl HumanHandle {
    /// Email and label each 1..=254 bytes, and `label <email>` must survive
    /// RFC 5322 address parsing unchanged, which rules out the specials.
    pub fn new(email: &str, label: &str) -> Result<Self, String> {
        let email: String = email.nfc().collect();
        let label: String = label.nfc().collect();
        let ok_len = |s: &str| !s.is_empty() && s.len() <= 254;
        const SPECIALS: &[char] = &['<', '>', '"', ',', '(', ')', ';', ':', '\\', '[', ']', '\n', '\r'];
        if !ok_len(&email) || !ok_len(&label) {
            return Err("Invalid human handle".into());
        }
        if label.contains(SPECIALS) || email.contains(['<', '>', ' ', '"', ',', '\n', '\r', '(', ')', '\\']) {
            return Err("Invalid human handle".into());
        }
        if label.trim() != label {
            return Err("Invalid human handle".into());
        }
        Ok(Self { email, label })
    }
    pub fn to_value(&self) -> Value {
        Value::Array(vec![Value::from(self.email.as_str()), Value::from(self.label.as_str())])
    }
    /// `Label <email>` as used in e-mail headers.
    pub fn to_address(&self) -> String {
        format!("{} <{}>", self.label, self.email)
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some(Self::$variant),)+ _ => None }
            }
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
            pub fn to_value(self) -> Value {
                Value::from(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What a user may do in the organization.
    UserProfile { Admin = "ADMIN", Standard = "STANDARD", Outsider = "OUTSIDER" }
);
string_enum!(
    /// Role of a user in a realm.
    RealmRole { Owner = "OWNER", Manager = "MANAGER", Contributor = "CONTRIBUTOR", Reader = "READER" }
);
string_enum!(
    /// Kind of invitation.
    InvitationType { User = "USER", Device = "DEVICE" }
);
string_enum!(
    /// Claimer presence as seen by the greeter.
    InvitationStatus { Idle = "IDLE", Ready = "READY", Deleted = "DELETED" }
);
string_enum!(
    /// Why an invitation was deleted.
    InvitationDeletedReason { Finished = "FINISHED", Cancelled = "CANCELLED", Rotten = "ROTTEN" }
);
string_enum!(
    /// Result of sending an invitation e-mail.
    InvitationEmailSentStatus { Success = "SUCCESS", NotAvailable = "NOT_AVAILABLE", BadRecipient = "BAD_RECIPIENT" }
);
string_enum!(
    /// Realm maintenance kind.
    MaintenanceType { Reencryption = "REENCRYPTION", GarbageCollection = "GARBAGE_COLLECTION" }
);
string_enum!(
    /// PKI enrollment state.
    PkiEnrollmentStatus { Submitted = "SUBMITTED", Accepted = "ACCEPTED", Rejected = "REJECTED", Cancelled = "CANCELLED" }
);

impl UserProfile {
    pub const ALL: [UserProfile; 3] = [UserProfile::Admin, UserProfile::Standard, UserProfile::Outsider];
}

impl RealmRole {
    /// OWNER, MANAGER and CONTRIBUTOR may write data.
    pub fn can_write(self) -> bool {
        !matches!(self, RealmRole::Reader)
    }
}

/// A UUID as carried on the wire (ext 2).
pub type Uuid = uuid::Uuid;

/// Wire form of a UUID: ext 2 with the 16 raw bytes.
pub fn uuid_value(id: Uuid) -> Value {
    Value::Ext(EXT_UUID, id.as_bytes().to_vec())
}

/// Ed25519 verify key or Curve25519 public key: exactly 32 bytes.
pub type Key32 = [u8; 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(OrganizationId::parse("CoolOrg_1-é").is_ok());
        assert!(OrganizationId::parse("").is_err());
        assert!(OrganizationId::parse(&"a".repeat(33)).is_err());
        assert!(OrganizationId::parse("a b").is_err());
        let d = DeviceId::parse("alice@dev1").unwrap();
        assert_eq!(d.user_id().as_str(), "alice");
        assert_eq!(d.device_name().as_str(), "dev1");
        assert!(DeviceId::parse("alice").is_err());
        assert!(DeviceId::parse("a@b@c").is_err());
        assert!(HumanHandle::new("a@x.com", "Alice").is_ok());
        assert!(HumanHandle::new("a@x.com", "Al<ice").is_err());
    }

    #[test]
    fn datetime_precision() {
        // README §10.1: 1795300355.022196
        let raw = [0x41, 0xda, 0xc0, 0x87, 0x00, 0xc1, 0x6b, 0xa9];
        let d = DateTime::from_f64(f64::from_be_bytes(raw)).unwrap();
        assert_eq!(d.as_micros(), 1_795_300_355_022_196);
        assert_eq!(d.to_f64().to_be_bytes(), raw);
        let now = DateTime::now();
        assert!(timestamps_in_the_ballpark(now, now));
        assert!(!timestamps_in_the_ballpark(now.add_micros(51_000_000), now));
        assert!(!timestamps_in_the_ballpark(now.add_micros(-71_000_000), now));
    }
}
