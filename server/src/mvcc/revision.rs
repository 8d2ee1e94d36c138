//! A revision: etcd's (main, sub) pair.
//!
//! `main` is the store-wide revision a write transaction gets (one per transaction that
//! changes something); `sub` orders the changes inside that transaction, from 0. Revisions
//! order lexicographically by (main, sub), and so do their 16-byte big-endian encodings,
//! which is what makes them usable as storage keys. Both parts are never negative.

use std::fmt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    /// Length of [`Revision::to_bytes`].
    pub const ENCODED_LEN: usize = 16;

    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// Big-endian (main, sub): sorts bytewise as the revisions sort.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out
    }

    /// Inverse of [`Revision::to_bytes`]; `None` unless `b` is exactly 16 bytes of
    /// non-negative parts.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let main: [u8; 8] = b.get(..8)?.try_into().ok()?;
        let sub: [u8; 8] = b.get(8..)?.try_into().ok()?;
        let main = i64::try_from(u64::from_be_bytes(main)).ok()?;
        let sub = i64::try_from(u64::from_be_bytes(sub)).ok()?;
        Some(Revision { main, sub })
    }

    /// Bitwise complement of [`Revision::to_bytes`] (`u64::MAX - part`): sorts bytewise in
    /// the opposite order, newest first.
    pub fn to_inverted_bytes(self) -> [u8; 16] {
        let mut out = self.to_bytes();
        for b in &mut out {
            *b = !*b;
        }
        out
    }

    /// Inverse of [`Revision::to_inverted_bytes`].
    pub fn from_inverted_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 16 {
            return None;
        }
        let mut plain = [0u8; 16];
        for (p, x) in plain.iter_mut().zip(b) {
            *p = !*x;
        }
        Self::from_bytes(&plain)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 300),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes()), Some(r));
            assert_eq!(
                Revision::from_inverted_bytes(&r.to_inverted_bytes()),
                Some(r)
            );
        }
        for w in revs.windows(2) {
            assert!(w[0].to_bytes() < w[1].to_bytes());
            assert!(w[0].to_inverted_bytes() > w[1].to_inverted_bytes());
        }
        assert_eq!(Revision::from_bytes(&[0; 15]), None);
        assert_eq!(Revision::from_bytes(&[0xFF; 16]), None);
    }
}
