//! One watcher: a key range watched from a revision on, with etcd's filters and options.
//!
//! A [`Watcher`] knows which events it wants ([`Watcher::wants`]) and the next revision it
//! has not been sent yet (`next_rev`): everything below it was delivered, nothing at or above
//! it was. It holds no events and does no I/O; the stream it belongs to (`stream`) moves it
//! forward. Key-range conventions are etcd's watch ones: an empty key means `"\0"`, an empty
//! range end a single key, a range end of `"\0"` every key from `key` on.

use setpoint_proto::etcdserverpb::watch_create_request::FilterType;
use setpoint_proto::etcdserverpb::WatchCreateRequest;
use setpoint_proto::mvccpb::{event::EventType, Event};

use crate::mvcc::KeyRange;

/// Why a create request is refused; the text is etcd's `cancel_reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
}

#[derive(Debug)]
pub struct Watcher {
    pub id: i64,
    pub range: KeyRange,
    /// The first revision not yet delivered (a lower bound while synced: revisions of other
    /// keys are not counted).
    pub next_rev: i64,
    /// Registered with the store's watch hub: new revisions come from the stream's queue.
    /// Otherwise it is catching up from storage.
    pub synced: bool,
    no_put: bool,
    no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    /// Whether events were sent since the last progress tick (etcd elides the notification).
    pub sent_since_tick: bool,
}

impl Watcher {
    /// A watcher for `req`, numbered `id`, whose first wanted revision is `start_rev`.
    pub fn new(id: i64, req: &WatchCreateRequest, start_rev: i64) -> Result<Self, CreateError> {
        let key = if req.key.is_empty() {
            vec![0]
        } else {
            req.key.clone()
        };
        let range = match req.range_end.as_slice() {
            [] => KeyRange::One(key),
            [0] => KeyRange::From(key),
            end if key.as_slice() >= end => return Err(CreateError::EmptyRange),
            end => KeyRange::Range(key, end.to_vec()),
        };
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Ok(Watcher {
            id,
            range,
            next_rev: start_rev,
            synced: false,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            sent_since_tick: false,
        })
    }

    /// Whether `event` is for this watcher: its key is covered and no filter drops it.
    pub fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        let dropped = if event.r#type == EventType::Delete as i32 {
            self.no_delete
        } else {
            self.no_put
        };
        !dropped && self.range.covers(&kv.key)
    }
}

/// Whether `event` created its key (etcd sends no `prev_kv` for those).
pub fn is_create(event: &Event) -> bool {
    event.r#type == EventType::Put as i32
        && event
            .kv
            .as_ref()
            .is_some_and(|kv| kv.create_revision == kv.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use setpoint_proto::mvccpb::KeyValue;

    fn put(key: &[u8]) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.to_vec(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn del(key: &[u8]) -> Event {
        Event {
            r#type: EventType::Delete as i32,
            ..put(key)
        }
    }

    fn req(key: &[u8], end: &[u8]) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn key_ranges_follow_etcd() {
        let one = Watcher::new(1, &req(b"a", b""), 1).unwrap();
        assert!(one.wants(&put(b"a")) && !one.wants(&put(b"ab")));
        let prefix = Watcher::new(1, &req(b"a", b"b"), 1).unwrap();
        assert!(
            prefix.wants(&put(b"a")) && prefix.wants(&put(b"azz")) && !prefix.wants(&put(b"b"))
        );
        let from = Watcher::new(1, &req(b"m", b"\0"), 1).unwrap();
        assert!(from.wants(&put(b"zzz")) && !from.wants(&put(b"l")));
        let all = Watcher::new(1, &req(b"", b"\0"), 1).unwrap();
        assert!(all.wants(&put(b"\0")) && all.wants(&put(b"anything")));
        let empty_key = Watcher::new(1, &req(b"", b""), 1).unwrap();
        assert!(empty_key.wants(&put(b"\0")) && !empty_key.wants(&put(b"a")));
    }

    #[test]
    fn empty_or_inverted_range_is_refused() {
        assert_eq!(
            Watcher::new(1, &req(b"b", b"a"), 1).unwrap_err(),
            CreateError::EmptyRange
        );
        assert_eq!(
            Watcher::new(1, &req(b"a", b"a"), 1).unwrap_err(),
            CreateError::EmptyRange
        );
    }

    #[test]
    fn filters_drop_their_event_type() {
        let mut r = req(b"a", b"");
        r.filters = vec![FilterType::Noput as i32];
        let w = Watcher::new(1, &r, 1).unwrap();
        assert!(!w.wants(&put(b"a")) && w.wants(&del(b"a")));
        r.filters = vec![FilterType::Nodelete as i32];
        let w = Watcher::new(1, &r, 1).unwrap();
        assert!(w.wants(&put(b"a")) && !w.wants(&del(b"a")));
    }
}
