//! The msgpack layer, with the reference's decoding limits.
//!
//! Parsec v2 messages are msgpack documents whose root is a map. The reference
//! decoder (msgpack-python, `raw=False`, `max_bin_len=1 MiB`) refuses:
//! invalid msgpack, trailing bytes, `bin` values over 1 MiB, invalid UTF-8 in
//! `str`, and malformed ext 1 (datetime) / ext 2 (uuid) payloads. Every such
//! refusal is a *decoding* error (`invalid_msg_format`), distinct from a schema
//! error (`bad_message`) which `fields.rs` reports.
//!
//! We decode with our own small reader rather than `rmpv::decode` so that
//! declared lengths never drive allocations beyond what the input holds (a
//! 10-byte frame announcing a 2^32-element array must not allocate 4 GiB) and
//! so that nesting depth is bounded (no stack overflow on `[[[[...]]]]`).

pub use rmpv::{Integer, Value};

/// Largest `bin` value accepted (msgpack-python `max_bin_len` in the reference).
pub const MAX_BIN_LEN: usize = 1024 * 1024;
/// Nesting bound; Parsec messages nest at most a handful of levels.
const MAX_DEPTH: usize = 128;

/// msgpack ext code for datetimes (big-endian f64 seconds since the epoch).
pub const EXT_DATETIME: i8 = 1;
/// msgpack ext code for UUIDs (16 raw bytes).
pub const EXT_UUID: i8 = 2;

/// Why bytes could not be decoded as a Parsec msgpack document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unexpected end of data")]
    Eof,
    #[error("extra data after the document")]
    Trailing,
    #[error("bin value longer than 1 MiB")]
    BinTooLong,
    #[error("reserved marker 0xc1")]
    Reserved,
    #[error("invalid UTF-8 in str value")]
    Utf8,
    #[error("uuid ext must hold 16 bytes")]
    BadUuid,
    #[error("datetime ext must hold 8 bytes")]
    BadDatetime,
    #[error("nesting too deep")]
    TooDeep,
    #[error("root must be a map")]
    RootNotMap,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let out = self.data.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(out)
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn len(&mut self, width: u8) -> Result<usize, DecodeError> {
        Ok(match width {
            1 => self.u8()? as usize,
            2 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::from(m),
            0x80..=0x8f => self.map((m & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array((m & 0x0f) as usize, depth)?,
            0xa0..=0xbf => self.str((m & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc1 => return Err(DecodeError::Reserved),
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                if n > MAX_BIN_LEN {
                    return Err(DecodeError::BinTooLong);
                }
                Value::Binary(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (m - 0xc7))?;
                self.ext(n)?
            }
            0xca => Value::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::from(self.u8()?),
            0xcd => Value::from(u16::from_be_bytes(self.be()?)),
            0xce => Value::from(u32::from_be_bytes(self.be()?)),
            0xcf => Value::from(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::from(i8::from_be_bytes(self.be()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.be()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.be()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => self.ext(1 << (m - 0xd4))?,
            0xd9..=0xdb => {
                let n = self.len(1 << (m - 0xd9))?;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.len(if m == 0xdc { 2 } else { 4 })?;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(if m == 0xde { 2 } else { 4 })?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::from(m as i8),
        })
    }

    fn str(&mut self, n: usize) -> Result<Value, DecodeError> {
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8)?;
        Ok(Value::from(s))
    }

    fn ext(&mut self, n: usize) -> Result<Value, DecodeError> {
        let code = self.u8()? as i8;
        let payload = self.take(n)?;
        match code {
            EXT_UUID if n != 16 => return Err(DecodeError::BadUuid),
            EXT_DATETIME if n != 8 => return Err(DecodeError::BadDatetime),
            _ => {}
        }
        Ok(Value::Ext(code, payload.to_vec()))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        // Every element takes at least one byte: never reserve more than the input can hold.
        let mut items = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut items = Vec::with_capacity(n.min(self.remaining() / 2));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            items.push((k, v));
        }
        Ok(Value::Map(items))
    }
}

/// Decodes one complete msgpack document (any root type).
pub fn unpack(data: &[u8]) -> Result<Value, DecodeError> {
    let mut cur = Cursor { data, pos: 0 };
    let value = cur.value(0)?;
    if cur.pos != data.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(value)
}

/// Decodes a document whose root must be a map, as every Parsec message is.
pub fn unpack_map(data: &[u8]) -> Result<Vec<(Value, Value)>, DecodeError> {
    match unpack(data)? {
        Value::Map(m) => Ok(m),
        _ => Err(DecodeError::RootNotMap),
    }
}

/// Encodes a value (smallest encodings, as msgpack-python emits them).
pub fn pack(value: &Value) -> Vec<u8> {
    // Sized up front: a reply carrying a block would otherwise be copied
    // again at each doubling of the buffer.
    let mut out = Vec::with_capacity(packed_len(value));
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// The length of `value` packed, or slightly more (every header counted at
/// its largest).
fn packed_len(value: &Value) -> usize {
    const HEADER: usize = 9;
    HEADER
        + match value {
            Value::String(s) => s.as_bytes().len(),
            Value::Binary(b) => b.len(),
            Value::Ext(_, b) => 1 + b.len(),
            Value::Array(items) => items.iter().map(packed_len).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| packed_len(k) + packed_len(v)).sum(),
            _ => 0,
        }
}

/// Builds a msgpack map with string keys, in the given order.
pub fn map<I, K>(entries: I) -> Value
where
    I: IntoIterator<Item = (K, Value)>,
    K: Into<String>,
{
    Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k.into()), v)).collect())
}

/// Looks a string key up in a decoded map.
pub fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// The value [`get`] finds, to change in place.
pub fn get_mut<'a>(map: &'a mut [(Value, Value)], key: &str) -> Option<&'a mut Value> {
    map.iter_mut().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_len_is_never_short() {
        let values = [
            Value::Nil,
            Value::from(u64::MAX),
            Value::from(-1i64),
            Value::F64(1.5),
            Value::from("é".repeat(300)),
            Value::Binary(vec![7; 70_000]),
            Value::Ext(1, vec![0; 3]),
            map([
                ("status", Value::from("ok")),
                ("block", Value::Binary(vec![1; 65_536])),
                ("list", Value::Array(vec![Value::from(1u8); 20])),
            ]),
        ];
        for v in values {
            let packed = pack(&v);
            assert!(packed_len(&v) >= packed.len(), "{v:?}");
            assert!(packed_len(&v) <= packed.len() + 9 * 30, "no wild overestimate");
        }
    }
    #[test]
    fn ping_capture_round_trips() {
        // README §10.4: {"cmd": "ping", "ping": "hello"}
        let raw = hex::decode("82a3636d64a470696e67a470696e67a568656c6c6f").unwrap();
        let m = unpack_map(&raw).unwrap();
        assert_eq!(get(&m, "cmd").and_then(Value::as_str), Some("ping"));
        assert_eq!(pack(&Value::Map(m)), raw);
    }

    #[test]
    fn refusals() {
        assert_eq!(unpack(&[0x2a]).map(|_| ()), Ok(()));
        assert_eq!(unpack_map(&[0x2a]), Err(DecodeError::RootNotMap));
        assert_eq!(unpack(&[0xc1]), Err(DecodeError::Reserved));
        assert_eq!(unpack(&[0x80, 0x00]), Err(DecodeError::Trailing));
        assert_eq!(unpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Eof));
        assert_eq!(unpack(&[0xd7, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::BadUuid));
        assert_eq!(unpack(&[0xa1, 0xff]), Err(DecodeError::Utf8));
        let mut big = vec![0xc6];
        big.extend_from_slice(&((MAX_BIN_LEN + 1) as u32).to_be_bytes());
        big.extend(std::iter::repeat_n(0u8, MAX_BIN_LEN + 1));
        assert_eq!(unpack(&big), Err(DecodeError::BinTooLong));
        let mut ok = vec![0xc6];
        ok.extend_from_slice(&(MAX_BIN_LEN as u32).to_be_bytes());
        ok.extend(std::iter::repeat_n(0u8, MAX_BIN_LEN));
        assert!(unpack(&ok).is_ok());
        let deep = vec![0x91; 10_000];
        assert_eq!(unpack(&deep), Err(DecodeError::TooDeep));
    }
}
