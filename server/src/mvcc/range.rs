//! The read path: which keys are live at a revision, and etcd's Range options on top.
//!
//! [`LiveKeys`] walks `Cf::Kv` over a key range and stops on each key whose newest version at
//! or below the read revision is not a tombstone — one seek per key when the key has newer
//! versions, and a bounded number of `next`s before seeking past a key's older versions.
//! [`execute`] then applies a `RangeRequest` exactly as etcd's apply layer does: `count` is
//! every live key in the range (before filters and limit); with sorting or revision filters
//! everything is fetched, filtered, sorted and then truncated, otherwise `limit + 1` keys are
//! fetched to answer `more`. A write transaction's own uncommitted changes can be overlaid
//! so that reads inside it see them. Revision checks (compacted, future) are the caller's.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use setpoint_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use setpoint_proto::etcdserverpb::RangeRequest;
use setpoint_proto::mvccpb::KeyValue;

use super::error::Result;
use super::key_codec::{
    decode_user_key, decode_value, decode_value_meta, encode_user_key, escaped_key_end,
    is_tombstone, kv_seek_key, split_kv_key,
};
use crate::storage::{Cf, Cursor, ReadView};

/// `next` calls tried before seeking past a key's older versions.
const NEXTS_BEFORE_SEEK: usize = 4;

/// What a range read returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeOutput {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// Keys in the range at the read revision (ignoring limit and the min/max filters).
    pub count: i64,
    /// The store revision the read was served at (etcd's header revision: the current
    /// revision, not the requested historical one).
    pub revision: i64,
}

/// A write transaction's changes, by escaped user key: `Some` = put, `None` = deleted.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<KeyValue>>;

/// A user-key range as escaped bounds: `[lo, hi)`, unbounded above when `hi` is `None`.
pub(crate) struct KeyRange {
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
}

impl KeyRange {
    /// etcd's range semantics: an empty `range_end` means the single `key`; `"\0"` means every
    /// key `>= key`; otherwise `[key, range_end)`. `None` when the range is empty.
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> Option<KeyRange> {
        let lo = encode_user_key(key);
        let hi = match range_end {
            [] => Some(escaped_key_end(&lo)),
            [0] => None,
            end if end <= key => return None,
            end => Some(encode_user_key(end)),
        };
        Some(KeyRange { lo, hi })
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            Bound::Included(self.lo.as_slice()),
            self.hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
        )
    }
}

/// Cursor over the live keys of a range at a revision, ascending.
pub(crate) struct LiveKeys<'a> {
    cursor: Box<dyn Cursor + 'a>,
    rev: i64,
    started: bool,
    /// Escaped user key of the current position.
    enc: Vec<u8>,
}

impl<'a> LiveKeys<'a> {
    pub(crate) fn new<V: ReadView + ?Sized>(
        view: &'a V,
        range: &KeyRange,
        rev: i64,
    ) -> Result<Self> {
        Ok(LiveKeys {
            cursor: view.cursor(Cf::Kv, Some(&range.lo), range.hi.as_deref())?,
            rev,
            started: false,
            enc: Vec::new(),
        })
    }

    /// Moves to the next live key; `false` at the end of the range.
    pub(crate) fn advance(&mut self) -> Result<bool> {
        let mut ok = if self.started {
            self.skip_key()?
        } else {
            self.started = true;
            self.cursor.seek_to_first()?
        };
        loop {
            if !ok {
                return Ok(false);
            }
            let (enc, rev) = split_kv_key(self.cursor.key())?;
            self.enc.clear();
            self.enc.extend_from_slice(enc);
            if rev.main > self.rev {
                // Newer than the read revision: jump to the newest version at or below it.
                ok = self.cursor.seek(&kv_seek_key(&self.enc, self.rev))?;
                if !ok {
                    return Ok(false);
                }
                let (enc, _) = split_kv_key(self.cursor.key())?;
                if enc != self.enc.as_slice() {
                    // The key has no version at or below the read revision.
                    continue;
                }
            }
            if is_tombstone(self.cursor.value()) {
                ok = self.skip_key()?;
                continue;
            }
            return Ok(true);
        }
    }

    /// Moves past every remaining version of the current key.
    fn skip_key(&mut self) -> Result<bool> {
        for _ in 0..NEXTS_BEFORE_SEEK {
            if !self.cursor.next()? {
                return Ok(false);
            }
            let (enc, _) = split_kv_key(self.cursor.key())?;
            if enc != self.enc.as_slice() {
                return Ok(true);
            }
        }
        Ok(self.cursor.seek(&escaped_key_end(&self.enc))?)
    }

    pub(crate) fn escaped_key(&self) -> &[u8] {
        &self.enc
    }

    /// Decodes the current key's live version (its value left empty unless `Fetch::Full`).
    pub(crate) fn key_value(&self, fetch: Fetch) -> Result<KeyValue> {
        let key = decode_user_key(&self.enc)?;
        let kv = match fetch {
            Fetch::Full => decode_value(&key, self.cursor.value())?,
            Fetch::Count | Fetch::NoValues => decode_value_meta(&key, self.cursor.value())?,
        };
        kv.ok_or_else(|| super::error::MvccError::Corrupt("live version is a tombstone".into()))
    }
}

/// How much of each live key-value [`collect`] decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// None: only the count.
    Count,
    /// Everything but the value (left empty, never read out of the engine's bytes).
    NoValues,
    Full,
}

/// Live key-values of `range` at `rev` (with `overlay` laid over them), ascending by key:
/// at most `fetch_limit` decoded ones as `fetch` says, and the number of all.
pub(crate) fn collect<V: ReadView + ?Sized>(
    view: &V,
    range: &KeyRange,
    rev: i64,
    overlay: Option<&Overlay>,
    fetch_limit: usize,
    fetch: Fetch,
) -> Result<(Vec<KeyValue>, i64)> {
    let mut live = LiveKeys::new(view, range, rev)?;
    let mut over = overlay
        .map(|o| o.range::<[u8], _>(range.bounds()))
        .into_iter()
        .flatten()
        .peekable();
    let mut kvs = Vec::new();
    let mut count: i64 = 0;
    let mut on_engine = live.advance()?;
    loop {
        let from_overlay = match (on_engine, over.peek()) {
            (false, None) => break,
            (false, Some(_)) => true,
            (true, None) => false,
            (true, Some((k, _))) => k.as_slice() <= live.escaped_key(),
        };
        let want = fetch != Fetch::Count && kvs.len() < fetch_limit;
        if from_overlay {
            let Some((k, v)) = over.next() else { break };
            if on_engine && k.as_slice() == live.escaped_key() {
                // The transaction changed this key: its version replaces the stored one.
                on_engine = live.advance()?;
            }
            if let Some(kv) = v {
                count += 1;
                if want {
                    kvs.push(match fetch {
                        Fetch::NoValues => KeyValue {
                            key: kv.key.clone(),
                            value: Vec::new(),
                            ..*kv
                        },
                        Fetch::Count | Fetch::Full => kv.clone(),
                    });
                }
            }
        } else {
            count += 1;
            if want {
                kvs.push(live.key_value(fetch)?);
            }
            on_engine = live.advance()?;
        }
    }
    Ok((kvs, count))
}

fn compare(target: SortTarget, a: &KeyValue, b: &KeyValue) -> Ordering {
    match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}

/// Serves `req` from `view` at `read_rev` (already checked against the compacted and current
/// revisions); `header_rev` is reported as the response's revision.
pub(crate) fn execute<V: ReadView + ?Sized>(
    view: &V,
    req: &RangeRequest,
    read_rev: i64,
    header_rev: i64,
    overlay: Option<&Overlay>,
) -> Result<RangeOutput> {
    let mut out = RangeOutput {
        revision: header_rev,
        ..Default::default()
    };
    let Some(range) = KeyRange::new(&req.key, &req.range_end) else {
        return Ok(out);
    };
    let limit = usize::try_from(req.limit).unwrap_or(0);
    let fetch_all = req.sort_order() != SortOrder::None
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fetch_limit = if fetch_all || limit == 0 {
        usize::MAX
    } else {
        limit.saturating_add(1)
    };
    let fetch = if req.count_only {
        Fetch::Count
    } else if req.keys_only && req.sort_target() != SortTarget::Value {
        // Values are dropped from the answer, and no sort needs them.
        Fetch::NoValues
    } else {
        Fetch::Full
    };
    let (mut kvs, count) = collect(view, &range, read_rev, overlay, fetch_limit, fetch)?;
    out.count = count;

    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    let target = req.sort_target();
    let order = match (target, req.sort_order()) {
        // Keys come out ascending already.
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        // A non-key target without an order sorts ascending, as etcd does.
        (t, SortOrder::None) if t != SortTarget::Key => SortOrder::Ascend,
        (_, o) => o,
    };
    match order {
        SortOrder::None => {}
        // Stable sorts: ties stay in key order.
        SortOrder::Ascend => kvs.sort_by(|a, b| compare(target, a, b)),
        SortOrder::Descend => kvs.sort_by(|a, b| compare(target, b, a)),
    }

    if limit > 0 && kvs.len() > limit {
        kvs.truncate(limit);
        out.more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    out.kvs = kvs;
    Ok(out)
}
