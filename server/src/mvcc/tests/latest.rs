//! The latest state of the keys kept in memory (`mvcc::latest`): what a put reads instead of
//! the engine, and when it is loaded and forgotten. Each test changes the engine behind the
//! store's back, so that reading it instead of the memory would give another answer.

use super::*;

/// Every kv row, deleted behind the store's back.
fn drop_kv_rows<E: Engine>(s: &KvStore<E>) {
    let mut batch = WriteBatch::new();
    batch.delete_range(Cf::Kv, Vec::new(), vec![0xff; 8]);
    s.engine().write(batch, false).unwrap();
}

fn latest_version<E: Engine>(s: &KvStore<E>, key: &[u8]) -> (i64, i64) {
    write(s, |t| t.put(key, b"probe", 0, false, false))
        .1
        .unwrap();
    let now = s.get(key, s.current_revision()).unwrap().unwrap();
    (now.create_revision, now.version)
}

#[test]
fn a_put_takes_a_recently_written_keys_previous_version_from_memory() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    put(&s, b"a", b"2"); // 3

    // Were the engine read, "a" would now be new (version 1, created at 4).
    drop_kv_rows(&s);
    assert_eq!(latest_version(&s, b"a"), (2, 3));
}

#[test]
fn a_write_never_published_leaves_nothing_in_memory() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    let mut txn = s.write_txn();
    txn.put(b"a", b"lost", 0, false, false).unwrap();
    let mut batch = WriteBatch::new();
    let (_, token) = txn.into_batch(&mut batch);
    drop(token); // the batch was never written
    assert_eq!(latest_version(&s, b"a"), (2, 2));
}

#[test]
fn replacing_the_engines_contents_forgets_what_was_in_memory() {
    let s = mem_store();
    put(&s, b"a", b"1"); // 2
    put(&s, b"a", b"2"); // 3
                         // A Raft snapshot in which "a" never existed, at revision 10.
    drop_kv_rows(&s);
    let mut batch = WriteBatch::new();
    batch.put(
        Cf::Meta,
        crate::mvcc::kvstore::META_CURRENT_REVISION.to_vec(),
        10i64.to_be_bytes().to_vec(),
    );
    s.engine().write(batch, false).unwrap();
    s.reload().unwrap();
    assert_eq!(latest_version(&s, b"a"), (11, 1));
}

#[test]
fn a_reopened_store_knows_its_keys_and_that_no_others_exist() {
    let engine = Arc::new(MemoryEngine::new());
    let s = KvStore::open(engine.clone()).unwrap();
    put(&s, b"a", b"1"); // 2
    put(&s, b"a", b"2"); // 3
    drop(s);
    let s = KvStore::open(engine.clone()).unwrap();
    // A version of "z" written behind the store's back: the store, knowing every key, does
    // not look for it.
    let z = key_codec::encode_user_key(b"z");
    let mut batch = WriteBatch::new();
    batch.put(
        Cf::Kv,
        key_codec::kv_key(&z, Revision::new(3, 1)),
        key_codec::encode_put_value(&kv(b"z", b"x", 3, 3, 1)),
    );
    engine.write(batch, false).unwrap();
    assert_eq!(latest_version(&s, b"z"), (4, 1));
    // "a" was loaded when the store opened.
    drop_kv_rows(&s);
    assert_eq!(latest_version(&s, b"a"), (2, 3));
}

#[test]
fn a_put_not_asking_for_the_previous_value_takes_a_large_values_key_from_memory() {
    let s = mem_store();
    let big = vec![b'x'; 1000];
    put(&s, b"a", &big); // 2
    put(&s, b"a", &big); // 3

    // The value is too large to keep, but the key's metadata is kept.
    drop_kv_rows(&s);
    let (_, prev) = write(&s, |t| t.put_with(b"a", b"1", 0, false, false, false));
    assert_eq!(prev.unwrap(), None, "not asked for");
    let now = s.get(b"a", s.current_revision()).unwrap().unwrap();
    assert_eq!((now.create_revision, now.version), (2, 3));
}

#[test]
fn a_large_previous_value_is_read_from_the_engine_when_a_put_needs_it() {
    let s = mem_store();
    let big = vec![b'x'; 1000];
    put(&s, b"a", &big); // 2
    let (_, prev) = write(&s, |t| t.put_with(b"a", b"1", 0, false, false, true));
    assert_eq!(prev.unwrap(), Some(kv(b"a", &big, 2, 2, 1)));

    put(&s, b"b", &big); // 4
    write(&s, |t| t.put(b"b", b"", 0, true, false)).1.unwrap(); // ignore_value
    let now = s.get(b"b", s.current_revision()).unwrap().unwrap();
    assert_eq!((now.value, now.version), (big, 2));
}
