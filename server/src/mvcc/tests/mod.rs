//! MVCC behaviour tests, mostly on the in-memory engine; the expected values are etcd's.
//! Reading history for watchers and the watch hub are in `watchable`.

use std::collections::BTreeMap;
use std::sync::Arc;

use setpoint_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use setpoint_proto::etcdserverpb::RangeRequest;
use setpoint_proto::mvccpb::{event::EventType, KeyValue};

use super::*;

mod latest;
mod watchable;
use crate::storage::{Cf, Engine, MemoryEngine, RocksEngine, WriteBatch};

fn mem_store() -> KvStore<MemoryEngine> {
    KvStore::open(Arc::new(MemoryEngine::new())).unwrap()
}

/// Runs `f` in a write transaction and commits it the way `apply` does.
fn write<E: Engine, T>(s: &KvStore<E>, f: impl FnOnce(&mut WriteTxn<'_, E>) -> T) -> (i64, T) {
    let mut txn = s.write_txn();
    let out = f(&mut txn);
    let mut batch = WriteBatch::new();
    let (rev, token) = txn.into_batch(&mut batch);
    s.engine().write(batch, false).unwrap();
    s.publish(token);
    (rev, out)
}

fn put<E: Engine>(s: &KvStore<E>, key: &[u8], value: &[u8]) -> i64 {
    let (rev, r) = write(s, |t| t.put(key, value, 0, false, false));
    r.unwrap();
    rev
}

fn delete<E: Engine>(s: &KvStore<E>, key: &[u8], end: &[u8]) -> (i64, Vec<KeyValue>) {
    let (rev, r) = write(s, |t| t.delete_range(key, end));
    (rev, r.unwrap())
}

/// Every event from `from_rev` on (at most `limit` events, 0: all, never splitting a revision).
fn events_since<E: Engine>(
    s: &KvStore<E>,
    from_rev: i64,
    limit: usize,
) -> Result<Vec<(Revision, setpoint_proto::mvccpb::Event)>, MvccError> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    Ok(s.read_events(from_rev, limit, usize::MAX)?.events)
}

fn req(key: &[u8], end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        range_end: end.to_vec(),
        ..Default::default()
    }
}

fn keys(out: &RangeOutput) -> Vec<Vec<u8>> {
    out.kvs.iter().map(|kv| kv.key.clone()).collect()
}

fn kv(key: &[u8], value: &[u8], create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: value.to_vec(),
        lease: 0,
    }
}

#[test]
fn empty_store_is_at_revision_one() {
    let s = mem_store();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    let out = s.range(&req(b"", b"\0")).unwrap();
    assert_eq!(
        (out.count, out.revision, out.kvs.len(), out.more),
        (0, 1, 0, false)
    );
    assert!(matches!(
        s.range(&RangeRequest {
            revision: 2,
            ..req(b"a", b"")
        }),
        Err(MvccError::FutureRevision)
    ));
}

#[test]
fn put_put_delete_put_counts_revisions_and_versions_like_etcd() {
    let s = mem_store();
    assert_eq!(put(&s, b"a", b"1"), 2);
    let (rev, prev) = write(&s, |t| t.put(b"a", b"2", 0, false, false));
    assert_eq!(rev, 3);
    assert_eq!(prev.unwrap(), Some(kv(b"a", b"1", 2, 2, 1)));
    let (rev, deleted) = delete(&s, b"a", b"");
    assert_eq!(rev, 4);
    assert_eq!(deleted, vec![kv(b"a", b"2", 2, 3, 2)]);
    assert_eq!(put(&s, b"a", b"3"), 5);
    assert_eq!(s.current_revision(), 5);

    assert_eq!(s.get(b"a", 1).unwrap(), None);
    assert_eq!(s.get(b"a", 2).unwrap(), Some(kv(b"a", b"1", 2, 2, 1)));
    assert_eq!(s.get(b"a", 3).unwrap(), Some(kv(b"a", b"2", 2, 3, 2)));
    assert_eq!(s.get(b"a", 4).unwrap(), None);
    assert_eq!(s.get(b"a", 5).unwrap(), Some(kv(b"a", b"3", 5, 5, 1)));
    assert_eq!(s.get(b"a", 0).unwrap(), Some(kv(b"a", b"3", 5, 5, 1)));
    // Header revision is the current one, even for a historical read.
    assert_eq!(
        s.range(&RangeRequest {
            revision: 2,
            ..req(b"a", b"")
        })
        .unwrap()
        .revision,
        5
    );
    assert!(matches!(s.get(b"a", 6), Err(MvccError::FutureRevision)));
}

#[test]
fn a_txn_bumps_once_and_orders_changes_by_sub_revision() {
    let s = mem_store();
    put(&s, b"c", b"old");
    let (rev, changes) = write(&s, |t| {
        t.put(b"b", b"1", 0, false, false).unwrap();
        t.put(b"a", b"2", 0, false, false).unwrap();
        assert_eq!(t.delete_range(b"c", b"").unwrap().len(), 1);
        assert_eq!(t.revision(), 3);
        t.changes().to_vec()
    });
    assert_eq!(rev, 3);
    assert_eq!(s.current_revision(), 3);
    let kinds: Vec<_> = changes
        .iter()
        .map(|e| (e.r#type, e.kv.as_ref().unwrap().key.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventType::Put as i32, b"b".to_vec()),
            (EventType::Put as i32, b"a".to_vec()),
            (EventType::Delete as i32, b"c".to_vec()),
        ]
    );
    assert_eq!(changes[2].kv.as_ref().unwrap().mod_revision, 3);

    let events = events_since(&s, 3, 0).unwrap();
    let revs: Vec<_> = events.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        revs,
        vec![
            Revision::new(3, 0),
            Revision::new(3, 1),
            Revision::new(3, 2)
        ]
    );
    assert_eq!(
        events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        changes
    );
    assert_eq!(events_since(&s, 1, 0).unwrap().len(), 4);
}

#[test]
fn a_txn_without_changes_does_not_bump() {
    let s = mem_store();
    put(&s, b"a", b"1");
    let (rev, deleted) = delete(&s, b"x", b"z");
    assert_eq!((rev, deleted.len()), (2, 0));
    let (rev, _) = write(&s, |t| t.range(&req(b"a", b"")).unwrap());
    assert_eq!(rev, 2);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(put(&s, b"b", b"1"), 3);
}

#[test]
fn reads_inside_a_txn_see_its_own_writes() {
    let s = mem_store();
    put(&s, b"a", b"1"); // rev 2
    put(&s, b"b", b"1"); // rev 3
    write(&s, |t| {
        assert_eq!(t.range(&req(b"", b"\0")).unwrap().revision, 3);
        t.put(b"a", b"2", 0, false, false).unwrap();
        let out = t.range(&req(b"", b"\0")).unwrap();
        assert_eq!(out.revision, 4);
        assert_eq!(out.kvs[0], kv(b"a", b"2", 2, 4, 2));
        assert_eq!(out.count, 2);
        // Explicitly at the txn's revision: same view; at the one before: history.
        assert_eq!(
            t.range(&RangeRequest {
                revision: 4,
                ..req(b"a", b"")
            })
            .unwrap()
            .kvs[0]
                .value,
            b"2"
        );
        assert_eq!(
            t.range(&RangeRequest {
                revision: 3,
                ..req(b"a", b"")
            })
            .unwrap()
            .kvs[0]
                .value,
            b"1"
        );
        assert!(matches!(
            t.range(&RangeRequest {
                revision: 5,
                ..req(b"a", b"")
            }),
            Err(MvccError::FutureRevision)
        ));

        // Delete, then put again inside the same txn: a new generation.
        assert_eq!(
            t.delete_range(b"a", b"").unwrap(),
            vec![kv(b"a", b"2", 2, 4, 2)]
        );
        assert_eq!(t.range(&req(b"", b"\0")).unwrap().count, 1);
        assert!(t.delete_range(b"a", b"").unwrap().is_empty());
        assert_eq!(t.put(b"a", b"3", 0, false, false).unwrap(), None);
        t.put(b"c", b"1", 0, false, false).unwrap();
        let out = t.range(&req(b"", b"\0")).unwrap();
        assert_eq!(
            keys(&out),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(out.kvs[0], kv(b"a", b"3", 4, 4, 1));
        // Deleting a range in the txn sees both stored and new keys.
        let gone: Vec<_> = t
            .delete_range(b"b", b"\0")
            .unwrap()
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(gone, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(t.changes().len(), 6);
    });
    assert_eq!(s.current_revision(), 4);
    let out = s.range(&req(b"", b"\0")).unwrap();
    assert_eq!(out.kvs, vec![kv(b"a", b"3", 4, 4, 1)]);
    // History of the txn's revision is only its final state.
    assert_eq!(
        s.range(&RangeRequest {
            revision: 3,
            ..req(b"", b"\0")
        })
        .unwrap()
        .count,
        2
    );
}

#[test]
fn ignore_value_and_ignore_lease() {
    let s = mem_store();
    let (rev, r) = write(&s, |t| t.put(b"a", b"", 0, true, false));
    assert!(matches!(r, Err(MvccError::KeyNotFound)));
    assert_eq!(rev, 1);
    let (_, r) = write(&s, |t| t.put(b"a", b"", 0, false, true));
    assert!(matches!(r, Err(MvccError::KeyNotFound)));
    assert_eq!(r.unwrap_err().to_string(), "etcdserver: key not found");

    write(&s, |t| t.put(b"a", b"v", 7, false, false).unwrap());
    write(&s, |t| t.put(b"a", b"ignored", 9, true, false).unwrap());
    assert_eq!(s.get(b"a", 0).unwrap().unwrap().value, b"v");
    assert_eq!(s.get(b"a", 0).unwrap().unwrap().lease, 9);
    write(&s, |t| t.put(b"a", b"w", 0, false, true).unwrap());
    let got = s.get(b"a", 0).unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.lease, got.version),
        (&b"w"[..], 9, 3)
    );
}

/// a(v=z) b(v=y) c(v=x) c again, d, "d\0", e; revisions 2..=8.
fn range_fixture() -> KvStore<MemoryEngine> {
    let s = mem_store();
    put(&s, b"a", b"z"); // 2
    put(&s, b"b", b"y"); // 3
    put(&s, b"c", b"x"); // 4
    put(&s, b"c", b"w"); // 5: c version 2
    put(&s, b"d", b"v"); // 6
    put(&s, b"d\0", b"u"); // 7
    put(&s, b"e", b"t"); // 8
    s
}

#[test]
fn range_ends_prefixes_and_from_key() {
    let s = range_fixture();
    let all = |out: RangeOutput| keys(&out);
    assert_eq!(all(s.range(&req(b"c", b"")).unwrap()), vec![b"c".to_vec()]);
    assert_eq!(
        all(s.range(&req(b"b", b"d")).unwrap()),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    // Prefix "d": range_end "e".
    assert_eq!(
        all(s.range(&req(b"d", b"e")).unwrap()),
        vec![b"d".to_vec(), b"d\0".to_vec()]
    );
    // "\0" end: every key >= key.
    assert_eq!(
        all(s.range(&req(b"d", b"\0")).unwrap()),
        vec![b"d".to_vec(), b"d\0".to_vec(), b"e".to_vec()]
    );
    assert_eq!(s.range(&req(b"", b"\0")).unwrap().count, 6);
    assert_eq!(s.range(&req(b"\0", b"\0")).unwrap().count, 6);
    // An end at or below the key is empty.
    assert_eq!(s.range(&req(b"c", b"c")).unwrap().count, 0);
    assert_eq!(s.range(&req(b"c", b"b")).unwrap().count, 0);
    assert_eq!(s.range(&req(b"zz", b"")).unwrap().count, 0);
}

#[test]
fn range_limit_more_count_keys_only_count_only() {
    let s = range_fixture();
    let out = s
        .range(&RangeRequest {
            limit: 2,
            ..req(b"", b"\0")
        })
        .unwrap();
    assert_eq!(
        (keys(&out), out.more, out.count),
        (vec![b"a".to_vec(), b"b".to_vec()], true, 6)
    );
    let out = s
        .range(&RangeRequest {
            limit: 6,
            ..req(b"", b"\0")
        })
        .unwrap();
    assert_eq!((out.kvs.len(), out.more, out.count), (6, false, 6));
    let out = s
        .range(&RangeRequest {
            limit: 5,
            ..req(b"", b"\0")
        })
        .unwrap();
    assert_eq!((out.kvs.len(), out.more), (5, true));

    let out = s
        .range(&RangeRequest {
            keys_only: true,
            ..req(b"c", b"")
        })
        .unwrap();
    assert_eq!(out.kvs, vec![kv(b"c", b"", 4, 5, 2)]);

    let out = s
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..req(b"", b"\0")
        })
        .unwrap();
    assert_eq!((out.kvs.len(), out.more, out.count), (0, false, 6));
}

#[test]
fn keys_only_still_sorts_by_value() {
    let s = range_fixture();
    let out = s
        .range(&RangeRequest {
            keys_only: true,
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Ascend as i32,
            ..req(b"", b"\0")
        })
        .unwrap();
    // The values descend as the keys ascend, so sorting by them reverses the keys; none of
    // them is returned.
    assert_eq!(
        keys(&out),
        vec![
            b"e".to_vec(),
            b"d\0".to_vec(),
            b"d".to_vec(),
            b"c".to_vec(),
            b"b".to_vec(),
            b"a".to_vec()
        ]
    );
    assert!(out.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn delete_without_prev_kv_reports_every_key_but_no_value() {
    let s = range_fixture();
    let (rev, gone) = write(&s, |t| {
        // "f" exists only in the transaction's own changes.
        t.put(b"f", b"s", 0, false, false).unwrap();
        t.delete_range_with(b"c", b"\0", false).unwrap()
    });
    assert_eq!(rev, 9);
    assert_eq!(
        gone,
        vec![
            kv(b"c", b"", 4, 5, 2),
            kv(b"d", b"", 6, 6, 1),
            kv(b"d\0", b"", 7, 7, 1),
            kv(b"e", b"", 8, 8, 1),
            kv(b"f", b"", 9, 9, 1),
        ]
    );
    assert_eq!(
        keys(&s.range(&req(b"", b"\0")).unwrap()),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    let (_, gone) = write(&s, |t| t.delete_range_with(b"a", b"", true).unwrap());
    assert_eq!(gone, vec![kv(b"a", b"z", 2, 2, 1)]);
}

#[test]
fn range_sorts_by_every_target_in_both_orders() {
    let s = range_fixture();
    let sorted = |target: SortTarget, order: SortOrder| {
        let out = s
            .range(&RangeRequest {
                sort_target: target as i32,
                sort_order: order as i32,
                ..req(b"a", b"d")
            })
            .unwrap();
        keys(&out)
    };
    let (a, b, c) = (b"a".to_vec(), b"b".to_vec(), b"c".to_vec());
    let asc = vec![a.clone(), b.clone(), c.clone()];
    let desc = vec![c.clone(), b.clone(), a.clone()];
    // KEY: none and ascend are key order; descend reverses.
    assert_eq!(sorted(SortTarget::Key, SortOrder::None), asc);
    assert_eq!(sorted(SortTarget::Key, SortOrder::Ascend), asc);
    assert_eq!(sorted(SortTarget::Key, SortOrder::Descend), desc);
    // VALUE: a=z b=y c=w.
    assert_eq!(sorted(SortTarget::Value, SortOrder::Ascend), desc);
    assert_eq!(
        sorted(SortTarget::Value, SortOrder::None),
        desc,
        "non-key target defaults to ascend"
    );
    assert_eq!(sorted(SortTarget::Value, SortOrder::Descend), asc);
    // CREATE: a=2 b=3 c=4; MOD: a=2 b=3 c=5.
    assert_eq!(sorted(SortTarget::Create, SortOrder::Ascend), asc);
    assert_eq!(sorted(SortTarget::Create, SortOrder::Descend), desc);
    assert_eq!(sorted(SortTarget::Mod, SortOrder::Ascend), asc);
    assert_eq!(sorted(SortTarget::Mod, SortOrder::Descend), desc);
    // VERSION: a=1 b=1 c=2; ties keep key order.
    assert_eq!(sorted(SortTarget::Version, SortOrder::Ascend), asc);
    assert_eq!(
        sorted(SortTarget::Version, SortOrder::Descend),
        vec![c.clone(), a.clone(), b.clone()]
    );

    // Sorting happens before the limit: the two newest by mod revision.
    let out = s
        .range(&RangeRequest {
            sort_target: SortTarget::Mod as i32,
            sort_order: SortOrder::Descend as i32,
            limit: 2,
            ..req(b"", b"\0")
        })
        .unwrap();
    assert_eq!(
        (keys(&out), out.more, out.count),
        (vec![b"e".to_vec(), b"d\0".to_vec()], true, 6)
    );
}

#[test]
fn range_revision_filters_apply_after_fetch() {
    let s = range_fixture();
    let filtered = |r: RangeRequest| {
        let out = s.range(&r).unwrap();
        (keys(&out), out.count, out.more)
    };
    let (got, count, _) = filtered(RangeRequest {
        min_mod_revision: 5,
        max_mod_revision: 6,
        ..req(b"", b"\0")
    });
    assert_eq!(got, vec![b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(count, 6, "count ignores the filters, as etcd's does");
    let (got, _, _) = filtered(RangeRequest {
        min_create_revision: 4,
        max_create_revision: 6,
        ..req(b"", b"\0")
    });
    assert_eq!(got, vec![b"c".to_vec(), b"d".to_vec()]);
    let (got, _, _) = filtered(RangeRequest {
        max_create_revision: 3,
        ..req(b"", b"\0")
    });
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
    let (got, _, more) = filtered(RangeRequest {
        min_mod_revision: 3,
        limit: 2,
        ..req(b"", b"\0")
    });
    assert_eq!((got, more), (vec![b"b".to_vec(), b"c".to_vec()], true));
    let (got, _, more) = filtered(RangeRequest {
        min_mod_revision: 7,
        limit: 2,
        ..req(b"", b"\0")
    });
    assert_eq!((got, more), (vec![b"d\0".to_vec(), b"e".to_vec()], false));
}

#[test]
fn ranges_read_history_at_any_revision() {
    let s = range_fixture();
    delete(&s, b"b", b"d"); // 9: deletes b and c
    put(&s, b"b", b"again"); // 10
    let at = |rev: i64| {
        keys(
            &s.range(&RangeRequest {
                revision: rev,
                ..req(b"", b"\0")
            })
            .unwrap(),
        )
    };
    assert_eq!(at(1), Vec::<Vec<u8>>::new());
    assert_eq!(at(3), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(at(8).len(), 6);
    assert_eq!(
        at(9),
        vec![b"a".to_vec(), b"d".to_vec(), b"d\0".to_vec(), b"e".to_vec()]
    );
    assert_eq!(at(10).len(), 5);
    let c4 = s
        .range(&RangeRequest {
            revision: 4,
            ..req(b"c", b"")
        })
        .unwrap();
    assert_eq!(c4.kvs, vec![kv(b"c", b"x", 4, 4, 1)]);
    assert_eq!(
        s.get(b"b", 10).unwrap().unwrap(),
        kv(b"b", b"again", 10, 10, 1)
    );
}

#[test]
fn keys_with_zero_and_ff_bytes_sort_as_raw_bytes() {
    let s = mem_store();
    let mut raw: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a\0\0".to_vec(),
        b"a\0b".to_vec(),
        b"a\x01".to_vec(),
        b"a\xff".to_vec(),
        b"a\xff\xff".to_vec(),
        b"b".to_vec(),
        vec![0],
        vec![0xff],
    ];
    for k in raw.iter().rev() {
        put(&s, k, k);
    }
    raw.sort();
    assert_eq!(keys(&s.range(&req(b"\0", b"\0")).unwrap()), raw);
    assert_eq!(
        keys(&s.range(&req(b"a\0", b"a\x01")).unwrap()),
        vec![b"a\0".to_vec(), b"a\0\0".to_vec(), b"a\0b".to_vec()]
    );
    assert_eq!(
        keys(&s.range(&req(b"a\xff", b"b")).unwrap()),
        vec![b"a\xff".to_vec(), b"a\xff\xff".to_vec()]
    );
    assert_eq!(s.get(b"a\0", 0).unwrap().unwrap().value, b"a\0");
}

#[test]
fn nothing_is_visible_before_publish_and_a_dropped_token_frees_the_revision() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    let mut txn = s.write_txn();
    txn.put(b"a", b"2", 0, false, false).unwrap();
    let mut batch = WriteBatch::new();
    let (rev, token) = txn.into_batch(&mut batch);
    assert_eq!(rev, 3);
    s.engine().write(batch, false).unwrap();
    // Written but not published: readers stay at 2.
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.get(b"a", 0).unwrap().unwrap().value, b"1");
    s.publish(token);
    assert_eq!(s.get(b"a", 0).unwrap().unwrap().value, b"2");

    // A batch that never got written: the token is dropped and revision 4 is reused.
    let mut txn = s.write_txn();
    txn.put(b"a", b"lost", 0, false, false).unwrap();
    let mut batch = WriteBatch::new();
    let (rev, token) = txn.into_batch(&mut batch);
    assert_eq!(rev, 4);
    drop(token);
    assert_eq!(s.current_revision(), 3);
    assert_eq!(put(&s, b"a", b"3"), 4);
    assert_eq!(s.get(b"a", 0).unwrap().unwrap(), kv(b"a", b"3", 2, 4, 3));
}

fn compact<E: Engine>(s: &KvStore<E>, rev: i64) -> Result<(), MvccError> {
    let mut batch = WriteBatch::new();
    s.compact(rev, &mut batch)?;
    s.engine().write(batch, false).unwrap();
    Ok(())
}

fn finish_compaction<E: Engine>(s: &KvStore<E>, step: usize) -> usize {
    let mut steps = 1;
    while !s.physical_compaction_step(step).unwrap() {
        steps += 1;
        assert!(steps < 10_000, "compaction does not finish");
    }
    steps
}

#[test]
fn compaction_fails_old_reads_and_keeps_newer_history() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    put(&s, b"a", b"2"); // 3
    put(&s, b"b", b"1"); // 4
    delete(&s, b"b", b""); // 5
    put(&s, b"a", b"3"); // 6
    put(&s, b"c", b"1"); // 7

    assert!(matches!(compact(&s, 8), Err(MvccError::FutureRevision)));
    compact(&s, 5).unwrap();
    assert_eq!(s.compact_revision(), 5);
    assert!(matches!(compact(&s, 5), Err(MvccError::Compacted)));
    assert!(matches!(compact(&s, 4), Err(MvccError::Compacted)));
    let err = s
        .range(&RangeRequest {
            revision: 4,
            ..req(b"a", b"")
        })
        .unwrap_err();
    assert!(matches!(err, MvccError::Compacted));
    assert_eq!(
        err.to_string(),
        "mvcc: required revision has been compacted"
    );
    assert!(matches!(events_since(&s, 4, 0), Err(MvccError::Compacted)));

    let before: Vec<RangeOutput> = (5..=7)
        .map(|r| {
            s.range(&RangeRequest {
                revision: r,
                ..req(b"", b"\0")
            })
            .unwrap()
        })
        .collect();
    let events_before = events_since(&s, 5, 0).unwrap();
    let kv_before = s.engine().len(Cf::Kv);

    assert!(
        finish_compaction(&s, 1) > 1,
        "step size 1 must take several steps"
    );
    let after: Vec<RangeOutput> = (5..=7)
        .map(|r| {
            s.range(&RangeRequest {
                revision: r,
                ..req(b"", b"\0")
            })
            .unwrap()
        })
        .collect();
    assert_eq!(before, after);
    assert_eq!(events_since(&s, 5, 0).unwrap(), events_before);
    // a@2 is gone (a@3 is the newest <= 5) and so is b@4 (superseded by b's tombstone@5, which
    // stays while 5 is the boundary, as does everything written at exactly 5).
    assert_eq!(kv_before - s.engine().len(Cf::Kv), 2);
    // Rev entries below 5 are gone: 2, 3, 4.
    assert_eq!(s.engine().len(Cf::Rev), 3);

    // The next compaction removes what was kept at the previous boundary.
    put(&s, b"d", b"1"); // 8
    compact(&s, 8).unwrap();
    finish_compaction(&s, 1000);
    // Left: a@6, c@7, d@8.
    assert_eq!(s.engine().len(Cf::Kv), 3);
    assert_eq!(s.engine().len(Cf::Rev), 1);
    assert_eq!(
        keys(&s.range(&req(b"", b"\0")).unwrap()),
        vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    assert_eq!(s.get(b"a", 8).unwrap().unwrap(), kv(b"a", b"3", 2, 6, 3));
    assert!(s.physical_compaction_step(10).unwrap());
}

#[test]
fn compaction_keeps_the_newest_version_at_or_below_the_target() {
    let s = mem_store();
    for i in 0..10 {
        put(&s, b"k", format!("{i}").as_bytes()); // revisions 2..=11
    }
    put(&s, b"other", b"x"); // 12
    compact(&s, 12).unwrap();
    finish_compaction(&s, 3);
    assert_eq!(s.engine().len(Cf::Kv), 2);
    assert_eq!(s.get(b"k", 12).unwrap().unwrap(), kv(b"k", b"9", 2, 11, 10));
    assert_eq!(
        s.get(b"other", 12).unwrap().unwrap(),
        kv(b"other", b"x", 12, 12, 1)
    );
    assert_eq!(put(&s, b"k", b"10"), 13);
    assert_eq!(s.get(b"k", 0).unwrap().unwrap().version, 11);
}

/// A tiny deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random puts, deletes, txns and compactions against a model that keeps every revision's
/// full state; every read at every uncompacted revision must match it.
#[test]
fn random_histories_match_a_model() {
    const KEYS: [&[u8]; 8] = [b"", b"\0", b"a", b"a\0", b"a\xff", b"ab", b"b", b"\xff"];
    for seed in 1..=20u64 {
        let s = mem_store();
        let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
        // model[rev] = state at rev; revision 1 is empty.
        let mut model: Vec<BTreeMap<Vec<u8>, KeyValue>> = vec![BTreeMap::new(), BTreeMap::new()];
        for _ in 0..60 {
            let mut state = model.last().unwrap().clone();
            let rev = model.len() as i64;
            let ops = 1 + rng.below(3);
            let (got_rev, _) = write(&s, |t| {
                let mut changed = false;
                for _ in 0..ops {
                    let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                    if rng.below(3) > 0 {
                        let v = format!("v{}", rng.below(100)).into_bytes();
                        let prev = t.put(k, &v, 0, false, false).unwrap();
                        assert_eq!(prev.as_ref(), state.get(k));
                        let (create, version) = state
                            .get(k)
                            .map_or((rev, 1), |p| (p.create_revision, p.version + 1));
                        state.insert(k.to_vec(), kv(k, &v, create, rev, version));
                        changed = true;
                    } else {
                        let end: &[u8] = match rng.below(3) {
                            0 => b"",
                            1 => b"\0",
                            _ => KEYS[rng.below(KEYS.len() as u64) as usize],
                        };
                        let deleted = t.delete_range(k, end).unwrap();
                        let in_range = |key: &Vec<u8>| match end {
                            b"" => key.as_slice() == k,
                            b"\0" => key.as_slice() >= k,
                            e => key.as_slice() >= k && key.as_slice() < e,
                        };
                        let expected: Vec<KeyValue> = state
                            .iter()
                            .filter(|(key, _)| in_range(key))
                            .map(|(_, v)| v.clone())
                            .collect();
                        assert_eq!(deleted, expected);
                        changed |= !deleted.is_empty();
                        state.retain(|key, _| !in_range(key));
                    }
                }
                changed
            });
            if got_rev == rev {
                model.push(state);
            } else {
                assert_eq!(got_rev, rev - 1, "no-op txn must not bump");
            }
            let uncompacted = s.current_revision() - s.compact_revision();
            if uncompacted > 0 && rng.below(10) == 0 {
                let target = s.compact_revision() + 1 + rng.below(uncompacted as u64) as i64;
                compact(&s, target).unwrap();
            }
            if rng.below(3) == 0 {
                s.physical_compaction_step(1 + rng.below(4) as usize)
                    .unwrap();
            }
            for r in s.compact_revision().max(1)..=s.current_revision() {
                let out = s
                    .range(&RangeRequest {
                        revision: r,
                        ..req(b"", b"\0")
                    })
                    .unwrap();
                let expected: Vec<KeyValue> = model[r as usize].values().cloned().collect();
                assert_eq!(out.kvs, expected, "seed {seed} rev {r}");
                assert_eq!(out.count as usize, expected.len());
            }
        }
        finish_compaction(&s, 2);
        for r in s.compact_revision().max(1)..=s.current_revision() {
            let out = s
                .range(&RangeRequest {
                    revision: r,
                    ..req(b"", b"\0")
                })
                .unwrap();
            assert_eq!(
                out.kvs,
                model[r as usize].values().cloned().collect::<Vec<_>>(),
                "seed {seed} rev {r}"
            );
        }
    }
}

#[test]
fn rocks_store_persists_revisions_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = KvStore::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
        assert_eq!(s.current_revision(), 1);
        put(&s, b"a\0", b"1"); // 2
        put(&s, b"a", b"1"); // 3
        put(&s, b"a", b"2"); // 4
        compact(&s, 3).unwrap();
        finish_compaction(&s, 1);
    }
    let s = KvStore::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
    assert_eq!((s.current_revision(), s.compact_revision()), (4, 3));
    assert!(matches!(s.get(b"a", 2), Err(MvccError::Compacted)));
    assert_eq!(s.get(b"a", 3).unwrap().unwrap(), kv(b"a", b"1", 3, 3, 1));
    assert_eq!(
        keys(&s.range(&req(b"a", b"b")).unwrap()),
        vec![b"a".to_vec(), b"a\0".to_vec()]
    );
    assert_eq!(put(&s, b"a", b"3"), 5);
    assert_eq!(s.get(b"a", 0).unwrap().unwrap(), kv(b"a", b"3", 3, 5, 3));
}

#[test]
fn rocks_store_range_options_match_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = KvStore::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
    let mem = mem_store();
    for (k, v) in [
        (&b"b"[..], &b"3"[..]),
        (b"a", b"2"),
        (b"c", b"1"),
        (b"a", b"4"),
        (b"b\0", b"0"),
    ] {
        put(&rocks, k, v);
        put(&mem, k, v);
    }
    delete(&rocks, b"c", b"");
    delete(&mem, b"c", b"");
    for r in [
        req(b"", b"\0"),
        RangeRequest {
            limit: 1,
            ..req(b"a", b"c")
        },
        RangeRequest {
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            ..req(b"", b"\0")
        },
        RangeRequest {
            revision: 3,
            ..req(b"", b"\0")
        },
        RangeRequest {
            count_only: true,
            ..req(b"b", b"\0")
        },
    ] {
        assert_eq!(rocks.range(&r).unwrap(), mem.range(&r).unwrap());
    }
}
