//! Schema validation of decoded maps: the layer that produces `bad_message`.
//!
//! A request is a decoded msgpack map; each command's `Req::load` pulls its
//! fields through a [`Fields`] reader, which records every problem by field
//! name the way the reference's marshmallow schemas do (`errors` map of field →
//! list of messages; the texts are informative, the client never reads them).
//! Unknown keys are ignored, as in the reference.

use std::collections::BTreeMap;

use crate::types::*;
use crate::value::{EXT_DATETIME, EXT_UUID, Value};

/// Field-by-field validation errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaErrors(pub BTreeMap<String, Vec<String>>);

impl SchemaErrors {
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_string()).or_default().push(msg.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The `errors` value of a `bad_message` reply.
    pub fn to_value(&self) -> Value {
        Value::Map(
            self.0
                .iter()
                .map(|(k, msgs)| {
                    (
                        Value::from(k.as_str()),
                        Value::Array(msgs.iter().map(|m| Value::from(m.as_str())).collect()),
                    )
                })
                .collect(),
        )
    }
}

impl std::fmt::Display for SchemaErrors {
    /// Python-dict-like rendering, as the reference prints schema errors in
    /// handshake `help` and certificate reasons.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, msgs)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "'{k}': [")?;
            for (j, m) in msgs.iter().enumerate() {
                if j > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "'{m}'")?;
            }
            f.write_str("]")?;
        }
        f.write_str("}")
    }
}

pub const MISSING: &str = "Missing data for required field.";
pub const NULL: &str = "Field may not be null.";

/// Conversion of one msgpack value into a protocol type.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| "Not a valid string.".into())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| "Not a valid boolean.".into())
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        v.as_i64().ok_or_else(|| "Not a valid integer.".into())
    }
}

impl FromValue for u64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        v.as_u64().ok_or_else(|| "Not a valid integer.".into())
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Binary(b) => Ok(b.clone()),
            _ => Err("Not bytes".into()),
        }
    }
}

impl FromValue for Key32 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Binary(b) => b
                .as_slice()
                .try_into()
                .map_err(|_| "Invalid key length (expected 32 bytes)".to_string()),
            _ => Err("Not bytes".into()),
        }
    }
}

impl FromValue for DateTime {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Ext(EXT_DATETIME, raw) if raw.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                DateTime::from_f64(f64::from_be_bytes(b)).ok_or_else(|| "Not a datetime".into())
            }
            _ => Err("Not a datetime".into()),
        }
    }
}

impl FromValue for Uuid {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Ext(EXT_UUID, raw) => Uuid::from_slice(raw).map_err(|_| "Not an UUID".into()),
            _ => Err("Not an UUID".into()),
        }
    }
}

impl FromValue for HumanHandle {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v.as_array().map(Vec::as_slice) {
            Some([Value::String(email), Value::String(label)]) => {
                HumanHandle::new(email.as_str().unwrap_or_default(), label.as_str().unwrap_or_default())
            }
            _ => Err("Invalid human handle".into()),
        }
    }
}

macro_rules! from_str_value {
    ($($t:ty),+) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                match v.as_str() {
                    Some(s) => <$t>::parse(s),
                    None => Err("Not string".into()),
                }
            }
        }
    )+};
}
from_str_value!(OrganizationId, UserId, DeviceName, DeviceId, DeviceLabel);

macro_rules! enum_value {
    ($($t:ty),+) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                match v.as_str() {
                    Some(s) => <$t>::parse(s).ok_or_else(|| format!("Unsupported value: {s}")),
                    None => Err("Not string".into()),
                }
            }
        }
    )+};
}
enum_value!(
    UserProfile,
    RealmRole,
    InvitationType,
    InvitationStatus,
    InvitationDeletedReason,
    MaintenanceType,
    PkiEnrollmentStatus
);

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Array(items) => items.iter().map(T::from_value).collect(),
            _ => Err("Not a valid list.".into()),
        }
    }
}

/// `map[K, V]` (e.g. `per_participant_message`: user id → bytes). As with the
/// reference's `Map` field, a repeated key keeps its last value.
impl<K: FromValue + Ord, V: FromValue> FromValue for BTreeMap<K, V> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?)))
                .collect(),
            _ => Err("Not a valid mapping type.".into()),
        }
    }
}

/// Loads a nested map (a `Nested` schema in the reference, e.g. a re-encryption
/// batch entry) with its own [`Fields`] reader; its errors become one message.
pub fn nested<T>(v: &Value, build: impl FnOnce(&mut Fields) -> Option<T>) -> Result<T, String> {
    let Value::Map(map) = v else {
        return Err("Invalid input type.".into());
    };
    let mut f = Fields::new(map);
    let built = build(&mut f);
    f.finish(built).map_err(|errors| errors.to_string())
}

/// Reader over one decoded map, collecting errors as it goes.
pub struct Fields<'a> {
    map: &'a [(Value, Value)],
    errors: SchemaErrors,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a [(Value, Value)]) -> Self {
        Self {
            map,
            errors: SchemaErrors::default(),
        }
    }

    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        crate::value::get(self.map, key)
    }

    /// A required, non-nil field.
    pub fn req<T: FromValue>(&mut self, key: &str) -> Option<T> {
        match self.raw(key) {
            None => {
                self.errors.add(key, MISSING);
                None
            }
            Some(Value::Nil) => {
                self.errors.add(key, NULL);
                None
            }
            Some(v) => self.convert(key, v),
        }
    }

    /// A key that must be present but may be nil.
    pub fn req_nullable<T: FromValue>(&mut self, key: &str) -> Option<Option<T>> {
        match self.raw(key) {
            None => {
                self.errors.add(key, MISSING);
                None
            }
            Some(Value::Nil) => Some(None),
            Some(v) => self.convert(key, v).map(Some),
        }
    }

    /// An optional key; absent and nil both give `None`.
    pub fn opt<T: FromValue>(&mut self, key: &str) -> Option<Option<T>> {
        match self.raw(key) {
            None | Some(Value::Nil) => Some(None),
            Some(v) => self.convert(key, v).map(Some),
        }
    }

    /// An optional key that may not be nil when present (the reference's
    /// `required=False, allow_none=False`).
    pub fn opt_non_nil<T: FromValue>(&mut self, key: &str) -> Option<Option<T>> {
        match self.raw(key) {
            None => Some(None),
            Some(Value::Nil) => {
                self.errors.add(key, NULL);
                None
            }
            Some(v) => self.convert(key, v).map(Some),
        }
    }

    /// Applies a value rule (the reference's `validate=`) to a field already
    /// read: a value breaking it is recorded as `Invalid value.` and dropped.
    pub fn check<T>(&mut self, key: &str, value: Option<T>, valid: impl FnOnce(&T) -> bool) -> Option<T> {
        match value {
            Some(v) if !valid(&v) => {
                self.errors.add(key, "Invalid value.");
                None
            }
            other => other,
        }
    }

    /// Records an error that is not about one value's type.
    pub fn error(&mut self, key: &str, msg: impl Into<String>) {
        self.errors.add(key, msg);
    }

    fn convert<T: FromValue>(&mut self, key: &str, v: &Value) -> Option<T> {
        match T::from_value(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.errors.add(key, e);
                None
            }
        }
    }

    /// Ends validation: the built value if every field was fine.
    pub fn finish<T>(self, built: Option<T>) -> Result<T, SchemaErrors> {
        match built {
            Some(t) if self.errors.is_empty() => Ok(t),
            _ => {
                let mut errors = self.errors;
                if errors.is_empty() {
                    errors.add("_schema", "Invalid input type.");
                }
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::map;

    #[test]
    fn collects_errors() {
        let m = map([("a", Value::from(1)), ("b", Value::Nil)]);
        let Value::Map(m) = m else { unreachable!() };
        let mut f = Fields::new(&m);
        let a: Option<String> = f.req("a");
        let b: Option<String> = f.req("b");
        let c: Option<String> = f.req("c");
        let d: Option<Option<String>> = f.opt("d");
        assert!(a.is_none() && b.is_none() && c.is_none());
        assert_eq!(d, Some(None));
        let errs = f.finish(Some(())).unwrap_err();
        assert_eq!(errs.0.len(), 3);
        assert_eq!(errs.0["c"], vec![MISSING.to_string()]);
    }

    #[test]
    fn opt_non_nil_and_check() {
        let Value::Map(m) = map([("n", Value::Nil), ("x", Value::from(0)), ("y", Value::from(5))]) else {
            unreachable!()
        };
        let mut f = Fields::new(&m);
        assert_eq!(f.opt_non_nil::<i64>("absent"), Some(None));
        assert_eq!(f.opt_non_nil::<i64>("y"), Some(Some(5)));
        assert_eq!(f.opt_non_nil::<i64>("n"), None);
        let x = f.req::<i64>("x");
        assert_eq!(f.check("x", x, |n| *n >= 1), None);
        let y = f.req::<i64>("y");
        assert_eq!(f.check("y", y, |n| *n >= 1), Some(5));
        let errs = f.finish(Some(())).unwrap_err();
        assert_eq!(errs.0["n"], vec![NULL.to_string()]);
        assert_eq!(errs.0["x"], vec!["Invalid value.".to_string()]);
        assert_eq!(errs.0.len(), 2);
    }

    #[test]
    fn maps_and_nested() {
        let m = Value::Map(vec![
            (Value::from("alice"), Value::Binary(vec![1])),
            (Value::from("bob"), Value::Binary(vec![2])),
            (Value::from("alice"), Value::Binary(vec![3])),
        ]);
        let got = BTreeMap::<UserId, Vec<u8>>::from_value(&m).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&UserId::parse("alice").unwrap()], vec![3]);
        assert!(BTreeMap::<UserId, Vec<u8>>::from_value(&Value::Array(vec![])).is_err());
        let bad_key = Value::Map(vec![(Value::from("a b"), Value::Binary(vec![]))]);
        assert!(BTreeMap::<UserId, Vec<u8>>::from_value(&bad_key).is_err());
        let bad_value = Value::Map(vec![(Value::from("alice"), Value::Nil)]);
        assert!(BTreeMap::<UserId, Vec<u8>>::from_value(&bad_value).is_err());

        let load = |v: &Value| nested(v, |f| f.req::<i64>("n"));
        assert_eq!(load(&map([("n", Value::from(3)), ("extra", Value::Nil)])), Ok(3));
        assert!(load(&map([("n", Value::from("3"))])).unwrap_err().contains("'n'"));
        assert!(load(&Value::from(3)).is_err());
    }
}
