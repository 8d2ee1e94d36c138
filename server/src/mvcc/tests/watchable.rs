//! Watch support in the store: reading history in batches, and the hub routing published
//! revisions to watch streams.

use super::*;

#[test]
fn read_events_stops_on_bytes_between_revisions_and_says_how_far_it_read() {
    let s = mem_store();
    let big = vec![b'x'; 1000];
    put(&s, b"a", &big); // 2
    write(&s, |t| {
        t.put(b"b", &big, 0, false, false).unwrap();
        t.put(b"c", &big, 0, false, false).unwrap();
    }); // 3
    put(&s, b"d", &big); // 4
                         // 1 byte is reached by the first event; the batch still ends on a revision boundary.
    let b = s.read_events(2, usize::MAX, 1).unwrap();
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.through, 2);
    let b = s.read_events(3, usize::MAX, 1500).unwrap();
    assert_eq!(b.events.len(), 2, "revision 3 is never split");
    assert_eq!(b.through, 3);
    let b = s.read_events(2, usize::MAX, usize::MAX).unwrap();
    assert_eq!((b.events.len(), b.through), (4, 4));
    // Past the end: nothing, and nothing more read than exists.
    let b = s.read_events(9, 10, 10).unwrap();
    assert!(b.events.is_empty());
    assert_eq!(b.through, 8);
    let b = s.read_events(5, 10, 10).unwrap();
    assert_eq!((b.events.len(), b.through), (0, 4));
}

#[test]
fn the_hub_queues_only_wanted_revisions_and_never_waits() {
    let s = mem_store();
    let hub = s.watch_hub().clone();
    let mut a = hub.open_stream();
    let mut b = hub.open_stream();
    // Stream a watches key "a" from now; stream b watches prefix "k".
    assert_eq!(
        hub.watch(a.id, 0, &KeyRange::One(b"a".to_vec()), None, 0),
        Ok((2, 1))
    );
    let k = KeyRange::Range(b"k".to_vec(), b"l".to_vec());
    assert_eq!(hub.watch(b.id, 7, &k, None, 0), Ok((2, 1)));
    put(&s, b"a", b"1"); // 2
    write(&s, |t| {
        t.put(b"k1", b"1", 0, false, false).unwrap();
        t.delete_range(b"a", b"").unwrap();
    }); // 3
    put(&s, b"zzz", b"1"); // 4: nobody's
    write(&s, |t| t.delete_range(b"nothing", b"").unwrap()); // no revision at all
    let first = a.queue.try_recv().unwrap();
    assert_eq!((first.revision, first.events.len()), (2, 1));
    let second = a.queue.try_recv().unwrap();
    assert_eq!(
        (second.revision, second.events.len()),
        (3, 2),
        "a revision goes whole"
    );
    assert!(a.queue.try_recv().is_err());
    assert_eq!(b.queue.try_recv().unwrap().revision, 3);
    assert!(b.queue.try_recv().is_err());
    assert_eq!(hub.published(), 4);

    // Registration from the past: refused beyond the allowed gap, else the caller fills it.
    let zzz = KeyRange::One(b"zzz".to_vec());
    assert_eq!(hub.watch(a.id, 1, &zzz, Some(3), 1), Err(4));
    assert_eq!(hub.watch(a.id, 1, &zzz, Some(4), 1), Ok((4, 4)));
    assert_eq!(hub.watch(a.id, 1, &zzz, Some(5), 0), Ok((5, 4)));
    hub.unwatch(a.id, 1);

    // A revision too large to queue marks the wanting stream lost from it.
    put(
        &s,
        b"a",
        &vec![b'x'; crate::mvcc::watchable::INLINE_EVENT_BYTES + 1],
    ); // 5
    assert_eq!(a.lost.from(), Some(5));
    assert!(b.lost.from().is_none());
    // A lost stream cannot register until it recovers; then it starts over.
    assert!(hub
        .watch(a.id, 0, &KeyRange::One(b"a".to_vec()), Some(6), 0)
        .is_err());
    hub.recover(a.id);
    assert!(a.lost.from().is_none());
    put(&s, b"a", b"small"); // 6: a's watcher was forgotten
    assert!(a.queue.try_recv().is_err());

    // A stream whose client never reads is marked lost instead of blocking writes.
    for i in 0..crate::mvcc::watchable::QUEUE_REVISIONS + 10 {
        put(&s, b"k2", format!("{i}").as_bytes());
    }
    let lost_at = b.lost.from().unwrap();
    assert_eq!(lost_at, 7 + crate::mvcc::watchable::QUEUE_REVISIONS as i64);
    let mut queued = 0;
    while b.queue.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, crate::mvcc::watchable::QUEUE_REVISIONS);

    // A Raft snapshot (reload) loses every stream with synced watchers from the next revision.
    hub.recover(b.id);
    let now = s.current_revision();
    assert_eq!(hub.watch(b.id, 7, &k, None, 0), Ok((now + 1, now)));
    let before = hub.published();
    {
        let mut batch = WriteBatch::new();
        batch.put(
            Cf::Meta,
            b"mvcc/current_revision".to_vec(),
            (before + 10).to_be_bytes().to_vec(),
        );
        s.engine().write(batch, false).unwrap();
    }
    s.reload().unwrap();
    assert_eq!(b.lost.from(), Some(before + 1));
    assert_eq!(hub.published(), before + 10);
    drop(a);
    drop(b);
}

#[test]
fn events_since_carries_puts_and_tombstones_and_keeps_revisions_whole() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    write(&s, |t| {
        t.put(b"b", b"1", 0, false, false).unwrap();
        t.put(b"c", b"1", 0, false, false).unwrap();
    }); // 3
    delete(&s, b"a", b""); // 4
    let ev = events_since(&s, 2, 2).unwrap();
    // Limit 2 stops inside revision 3, so all of revision 3 is returned.
    assert_eq!(ev.len(), 3);
    let ev = events_since(&s, 4, 0).unwrap();
    assert_eq!(ev.len(), 1);
    let (rev, e) = &ev[0];
    assert_eq!(*rev, Revision::new(4, 0));
    assert_eq!(e.r#type, EventType::Delete as i32);
    assert_eq!(
        e.kv,
        Some(KeyValue {
            key: b"a".to_vec(),
            mod_revision: 4,
            ..Default::default()
        })
    );
    assert!(events_since(&s, 5, 0).unwrap().is_empty());
    assert_eq!(events_since(&s, 0, 0).unwrap().len(), 4);
}
