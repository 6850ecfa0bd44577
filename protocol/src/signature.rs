//! Ed25519 signed data as Parsec makes it: the 64-byte signature, then the
//! message.

use std::cell::RefCell;
use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::types::Key32;

/// Keys kept decompressed per thread. A handshake checks a signature by
/// the device's key: decompressing it is a tenth of the check, and the
/// same devices come back. Past this many, the cache starts over.
const CACHED_KEYS: usize = 4096;

thread_local! {
    static KEYS: RefCell<HashMap<Key32, VerifyingKey>> = RefCell::new(HashMap::new());
}

/// The message of `signed` if its signature is `key`'s (strict check: no
/// small-order key or signature point, canonical scalar).
pub fn open<'a>(signed: &'a [u8], key: &Key32) -> Option<&'a [u8]> {
    let (sig, msg) = signed.split_at_checked(64)?;
    let sig = Signature::from_slice(sig).ok()?;
    verifying_key(key)?.verify_strict(msg, &sig).ok()?;
    Some(msg)
}

fn verifying_key(bytes: &Key32) -> Option<VerifyingKey> {
    if let Some(key) = KEYS.with_borrow(|keys| keys.get(bytes).copied()) {
        return Some(key);
    }
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    KEYS.with_borrow_mut(|keys| remember(keys, *bytes, key));
    Some(key)
}

fn remember(keys: &mut HashMap<Key32, VerifyingKey>, bytes: Key32, key: VerifyingKey) {
    if keys.len() >= CACHED_KEYS {
        keys.clear();
    }
    keys.insert(bytes, key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
        let mut out = key.sign(msg).to_bytes().to_vec();
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn opens_what_the_key_signed_and_nothing_else() {
        let alice = SigningKey::from_bytes(&[7; 32]);
        let bob = SigningKey::from_bytes(&[8; 32]);
        let data = signed(&alice, b"hello");
        let a = alice.verifying_key().to_bytes();
        // Twice: the second check uses the cached key.
        for _ in 0..2 {
            assert_eq!(open(&data, &a), Some(&b"hello"[..]));
            assert_eq!(open(&data, &bob.verifying_key().to_bytes()), None);
        }
        let mut forged = data.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(open(&forged, &a), None);
        assert_eq!(open(&data[..63], &a), None, "shorter than a signature");
        assert_eq!(open(&data, &[0; 32]), None, "a small-order key");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let mut keys = HashMap::new();
        for i in 0..(CACHED_KEYS + 10) {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            remember(&mut keys, bytes, key);
            assert!(keys.len() <= CACHED_KEYS);
        }
    }
}
