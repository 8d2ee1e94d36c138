//! How MVCC data is laid out in the storage engine's bytes.
//!
//! `Cf::Kv` — one entry per version of a key:
//!   key   = escape(user key) ++ inverted revision (16 bytes, see [`Revision::to_inverted_bytes`])
//!   value = [`TAG_TOMBSTONE`], or [`TAG_PUT`] ++ prost-encoded `mvccpb::KeyValue` with its
//!           `key` field left empty (the key is already in the entry's key).
//! The escaping ([`encode_user_key`]) keeps the order of raw user keys and is prefix-free, so
//! all versions of one key are contiguous, keys sort as raw bytes, and within a key the newest
//! version comes first: "the newest version at or below revision R" is a single seek to
//! [`kv_seek_key`].
//!
//! `Cf::Rev` — one entry per change, in revision order (watch catch-up, compaction):
//!   key   = revision (16 bytes big-endian), value = kind byte ([`REV_PUT`] / [`REV_DELETE`]) ++ user key.
//!
//! This module only encodes and decodes; it does not touch the engine.

use prost::Message;
use setpoint_proto::mvccpb::KeyValue;

use super::error::{MvccError, Result};
use super::revision::Revision;

/// Escape byte: a 0x00 in a user key becomes `0x00 0xFF`.
const ESC: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
/// Terminator: every escaped key ends with `0x00 0x01`.
const TERM: u8 = 0x01;

pub const TAG_TOMBSTONE: u8 = 0;
pub const TAG_PUT: u8 = 1;
pub const REV_PUT: u8 = 0;
pub const REV_DELETE: u8 = 1;

/// Appends the order-preserving, prefix-free escaping of `key` to `out`.
///
/// Every 0x00 becomes `0x00 0xFF` and the result ends with `0x00 0x01`. Comparing two
/// escaped keys bytewise gives the raw keys' order (a key sorts before its extensions because
/// the terminator's 0x01 is below both 0xFF and any non-zero byte); and no escaped key is a
/// prefix of another, so appending a revision never mixes the versions of two keys.
pub fn encode_user_key_into(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(escaped_len(key));
    for &b in key {
        if b == ESC {
            out.extend_from_slice(&[ESC, ESCAPED_ZERO]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[ESC, TERM]);
}

/// Length of `key` escaped: zero-heavy keys (etcdctl's `check perf` writes 256-byte keys that
/// are mostly zeros) nearly double, so buffers are sized exactly rather than grown.
fn escaped_len(key: &[u8]) -> usize {
    key.len() + key.iter().filter(|&&b| b == ESC).count() + 2
}

pub fn encode_user_key(key: &[u8]) -> Vec<u8> {
    // Room for a revision too: the escaped key is usually extended into a `Cf::Kv` key.
    let mut out = Vec::with_capacity(escaped_len(key) + Revision::ENCODED_LEN);
    encode_user_key_into(key, &mut out);
    out
}

/// Inverse of [`encode_user_key`]: `enc` must be exactly one escaped key.
pub fn decode_user_key(enc: &[u8]) -> Result<Vec<u8>> {
    let corrupt = || MvccError::Corrupt(format!("bad escaped key {enc:02x?}"));
    let mut out = Vec::with_capacity(enc.len().saturating_sub(2));
    let mut i = 0;
    while i < enc.len() {
        let b = enc[i];
        if b != ESC {
            out.push(b);
            i += 1;
            continue;
        }
        match enc.get(i + 1) {
            Some(&ESCAPED_ZERO) => {
                out.push(0);
                i += 2;
            }
            Some(&TERM) if i + 2 == enc.len() => return Ok(out),
            _ => return Err(corrupt()),
        }
    }
    Err(corrupt())
}

/// The smallest byte string greater than every `Cf::Kv` key of the escaped key `enc` (all its
/// versions) and no greater than any key of a user key that sorts after it.
pub fn escaped_key_end(enc: &[u8]) -> Vec<u8> {
    let mut end = enc.to_vec();
    // `enc` ends with the terminator 0x01; 0x02 is above it and below an escaped 0x00 (0xFF).
    if let Some(last) = end.last_mut() {
        *last = TERM + 1;
    }
    end
}

/// `Cf::Kv` key of version `rev` of the escaped key `enc`.
pub fn kv_key(enc: &[u8], rev: Revision) -> Vec<u8> {
    let mut k = Vec::with_capacity(enc.len() + Revision::ENCODED_LEN);
    k.extend_from_slice(enc);
    k.extend_from_slice(&rev.to_inverted_bytes());
    k
}

/// Seeking here (forward) lands on the newest version of `enc` whose main revision is
/// `<= main`, or past all of `enc`'s versions if there is none.
pub fn kv_seek_key(enc: &[u8], main: i64) -> Vec<u8> {
    kv_key(enc, Revision::new(main, i64::MAX))
}

/// Splits a `Cf::Kv` key into the escaped user key and the revision.
pub fn split_kv_key(k: &[u8]) -> Result<(&[u8], Revision)> {
    let split = k
        .len()
        .checked_sub(Revision::ENCODED_LEN)
        .ok_or_else(|| MvccError::Corrupt(format!("kv key too short: {k:02x?}")))?;
    let (enc, rev) = k.split_at(split);
    let rev = Revision::from_inverted_bytes(rev)
        .ok_or_else(|| MvccError::Corrupt(format!("bad kv key {k:02x?}")))?;
    Ok((enc, rev))
}

pub fn is_tombstone(value: &[u8]) -> bool {
    value.first() == Some(&TAG_TOMBSTONE)
}

/// `Cf::Kv` value of a put; `kv.key` is not stored.
pub fn encode_put_value(kv: &KeyValue) -> Vec<u8> {
    let stored = KeyValue {
        key: Vec::new(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.clone(),
        lease: kv.lease,
    };
    let mut out = Vec::with_capacity(1 + stored.encoded_len());
    out.push(TAG_PUT);
    // Encoding into a Vec cannot fail: it grows as needed.
    let _ = stored.encode(&mut out);
    out
}

pub const fn tombstone_value() -> [u8; 1] {
    [TAG_TOMBSTONE]
}

/// Decodes a `Cf::Kv` value: `None` for a tombstone, else the key-value with `user_key`
/// filled in.
pub fn decode_value(user_key: &[u8], value: &[u8]) -> Result<Option<KeyValue>> {
    Ok(decode_put::<KeyValue>(user_key, value)?.map(|mut kv| {
        kv.key = user_key.to_vec();
        kv
    }))
}

/// A `Cf::Kv` value's put decoded as `M` (a message with `KeyValue`'s field numbers), or
/// `None` for a tombstone.
fn decode_put<M: Message + Default>(user_key: &[u8], value: &[u8]) -> Result<Option<M>> {
    match value.split_first() {
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        Some((&TAG_PUT, body)) => M::decode(body).map(Some).map_err(|e| {
            MvccError::Corrupt(format!("undecodable key-value for {user_key:02x?}: {e}"))
        }),
        _ => Err(MvccError::Corrupt(format!(
            "bad kv value tag for {user_key:02x?}"
        ))),
    }
}

/// The fields of a stored put other than its value (`mvccpb::KeyValue`'s numbers): decoding
/// into it skips the value's bytes instead of copying them.
#[derive(Clone, PartialEq, Message)]
struct StoredMeta {
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
    #[prost(int64, tag = "4")]
    version: i64,
    #[prost(int64, tag = "6")]
    lease: i64,
}

/// [`decode_value`] without the value: the key-value comes back with an empty `value`, and
/// a large stored value is never copied (for deletes and `keys_only` reads).
pub fn decode_value_meta(user_key: &[u8], value: &[u8]) -> Result<Option<KeyValue>> {
    Ok(
        decode_put::<StoredMeta>(user_key, value)?.map(|meta| KeyValue {
            key: user_key.to_vec(),
            create_revision: meta.create_revision,
            mod_revision: meta.mod_revision,
            version: meta.version,
            value: Vec::new(),
            lease: meta.lease,
        }),
    )
}

/// `Cf::Rev` value: the change's kind and its user key.
pub fn rev_value(kind: u8, user_key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + user_key.len());
    v.push(kind);
    v.extend_from_slice(user_key);
    v
}

/// Decodes a `Cf::Rev` value into (kind, user key).
pub fn decode_rev_value(v: &[u8]) -> Result<(u8, &[u8])> {
    match v.split_first() {
        Some((&kind, key)) if kind == REV_PUT || kind == REV_DELETE => Ok((kind, key)),
        _ => Err(MvccError::Corrupt(format!(
            "bad revision index value {v:02x?}"
        ))),
    }
}

/// Decodes a `Cf::Rev` key.
pub fn decode_rev_key(k: &[u8]) -> Result<Revision> {
    Revision::from_bytes(k)
        .ok_or_else(|| MvccError::Corrupt(format!("bad revision index key {k:02x?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys chosen to stress the escaping: empty, zeros, 0xFF, prefixes of each other, and
    /// bytes equal to the escape and terminator.
    fn tricky_keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x00],
            vec![0x00, 0x00],
            vec![0x00, 0x01],
            vec![0x00, 0xFF],
            vec![0x01],
            vec![0x01, 0x00],
            vec![0x02],
            vec![0xFE],
            vec![0xFF],
            vec![0xFF, 0x00],
            vec![0xFF, 0xFF],
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00b".to_vec(),
            b"a\x01".to_vec(),
            b"a\xff".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"b".to_vec(),
        ];
        // Every 3-byte string over {0x00, 0x01, 0x02, 0xFE, 0xFF}.
        let alphabet = [0x00u8, 0x01, 0x02, 0xFE, 0xFF];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    keys.push(vec![a, b, c]);
                }
            }
        }
        keys
    }

    #[test]
    fn escaping_round_trips() {
        for k in tricky_keys() {
            assert_eq!(
                decode_user_key(&encode_user_key(&k)).unwrap(),
                k,
                "{k:02x?}"
            );
        }
        assert!(decode_user_key(b"a").is_err());
        assert!(decode_user_key(&[0x00, 0x05]).is_err());
        assert!(decode_user_key(&[0x61, 0x00, 0x01, 0x62]).is_err());
    }

    #[test]
    fn escaped_keys_sort_as_raw_bytes_and_are_prefix_free() {
        let keys = tricky_keys();
        for a in &keys {
            let ea = encode_user_key(a);
            for b in &keys {
                let eb = encode_user_key(b);
                assert_eq!(ea.cmp(&eb), a.cmp(b), "{a:02x?} vs {b:02x?}");
                if a != b {
                    assert!(!eb.starts_with(&ea), "{a:02x?} is a prefix of {b:02x?}");
                }
            }
        }
    }

    #[test]
    fn versions_stay_grouped_newest_first_and_inside_key_end() {
        let keys = tricky_keys();
        let revs = [
            Revision::new(1, 0),
            Revision::new(7, 0),
            Revision::new(7, 3),
            Revision::new(1 << 40, 0),
        ];
        let mut all = Vec::new();
        for k in &keys {
            for r in revs {
                all.push((k.clone(), r, kv_key(&encode_user_key(k), r)));
            }
        }
        let mut sorted = all.clone();
        sorted.sort_by(|x, y| x.2.cmp(&y.2));
        let mut expected = all;
        expected.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
        assert_eq!(sorted, expected);

        for a in &keys {
            let ea = encode_user_key(a);
            let end = escaped_key_end(&ea);
            for b in &keys {
                let inside = kv_key(&encode_user_key(b), Revision::new(5, 5)) < end
                    && kv_key(&encode_user_key(b), Revision::new(5, 5)) >= ea;
                assert_eq!(inside, a == b, "{a:02x?} vs {b:02x?}");
            }
        }
    }

    #[test]
    fn seek_key_finds_newest_at_or_below() {
        let enc = encode_user_key(b"k");
        let seek = kv_seek_key(&enc, 7);
        assert!(kv_key(&enc, Revision::new(8, 0)) < seek);
        assert!(kv_key(&enc, Revision::new(7, 9)) >= seek);
        assert!(kv_key(&enc, Revision::new(7, 0)) > seek);
        assert!(kv_key(&enc, Revision::new(6, 99)) > seek);
        let key = kv_key(&enc, Revision::new(7, 2));
        let (e, r) = split_kv_key(&key).unwrap();
        assert_eq!((e, r), (enc.as_slice(), Revision::new(7, 2)));
    }

    #[test]
    fn values_round_trip() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"v".to_vec(),
            lease: 9,
        };
        let v = encode_put_value(&kv);
        assert!(!is_tombstone(&v));
        assert_eq!(decode_value(b"k", &v).unwrap(), Some(kv));
        assert!(is_tombstone(&tombstone_value()));
        assert_eq!(decode_value(b"k", &tombstone_value()).unwrap(), None);
        assert!(decode_value(b"k", &[]).is_err());
        assert_eq!(
            decode_rev_value(&rev_value(REV_DELETE, b"x")).unwrap(),
            (REV_DELETE, &b"x"[..])
        );
        assert!(decode_rev_value(&[7]).is_err());
    }
}
