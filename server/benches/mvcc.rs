//! MVCC hot paths: a put, a range read and a compare-and-put txn on the revisioned key space,
//! on the RocksDB engine (in a temporary directory) and on the in-memory engine for
//! comparison — the difference is what the engine costs.
//!
//! Writes take the path a committed entry takes in `apply`: a `WriteTxn`, the etcd operation
//! from `apply::txn` (`put` / `txn`), `into_batch`, one unsynced engine write (apply never
//! fsyncs: the Raft log is what is durable) and `publish` (no watchers registered). The key
//! space is 100,000 keys (1,000 prefixes of 100) with 256-byte values, filled before
//! measuring; puts go to random keys of it. Ranges read the current revision: one key, or
//! one 100-key prefix. Not measured: Raft, the log fsync, prost decoding of the request and
//! encoding of the response (see `codec`), gRPC, compaction. In test mode
//! (`cargo test --benches`) the key space is 1,000 keys so that the fill stays quick.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use setpoint_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use setpoint_server::apply::txn;
use setpoint_server::mvcc::{KvStore, WriteTxn};
use setpoint_server::storage::{Engine, MemoryEngine, RocksEngine, WriteBatch};

const PREFIXES: usize = 1_000;
const KEYS_PER_PREFIX: usize = 100;
const VALUE_BYTES: usize = 256;
/// Puts per write transaction while filling (one revision each).
const FILL_BATCH: usize = 1_000;

/// `cargo test --benches` runs criterion without `--bench` (or with `--test`).
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

fn key(prefix: usize, n: usize) -> Vec<u8> {
    format!("key/{prefix:04}/{n:02}").into_bytes()
}

fn prefix_range(prefix: usize) -> (Vec<u8>, Vec<u8>) {
    (
        format!("key/{prefix:04}/").into_bytes(),
        format!("key/{prefix:04}0").into_bytes(), // '/' + 1 == '0'
    )
}

/// A small xorshift generator: deterministic, and no dependency for it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One committed write as `apply` does it, minus the Raft bookkeeping.
fn commit<E: Engine>(kv: &KvStore<E>, op: impl FnOnce(&mut WriteTxn<'_, E>, i64)) {
    let begin = kv.current_revision();
    let mut w = kv.write_txn();
    op(&mut w, begin);
    let mut batch = WriteBatch::default();
    let (_, token) = w.into_batch(&mut batch);
    kv.engine().write(batch, false).expect("engine write");
    kv.publish(token);
}

fn fill<E: Engine>(kv: &KvStore<E>, prefixes: usize) {
    let value = vec![b'v'; VALUE_BYTES];
    let keys: Vec<Vec<u8>> = (0..prefixes)
        .flat_map(|p| (0..KEYS_PER_PREFIX).map(move |n| key(p, n)))
        .collect();
    for chunk in keys.chunks(FILL_BATCH) {
        commit(kv, |w, _| {
            for k in chunk {
                w.put(k, &value, 0, false, false).expect("fill put");
            }
        });
    }
}

fn bench_engine<E: Engine>(c: &mut Criterion, name: &str, kv: &KvStore<E>, prefixes: usize) {
    let mut group = c.benchmark_group(format!("mvcc/{name}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let value = vec![b'x'; VALUE_BYTES];

    group.bench_function("put", |b| {
        b.iter(|| {
            let req = PutRequest {
                key: key(rng.below(prefixes), rng.below(KEYS_PER_PREFIX)),
                value: value.clone(),
                ..Default::default()
            };
            commit(kv, |w, begin| {
                black_box(txn::put(w, &req, begin).expect("put"));
            });
        })
    });

    group.bench_function("range_one_key", |b| {
        b.iter(|| {
            let req = RangeRequest {
                key: key(rng.below(prefixes), rng.below(KEYS_PER_PREFIX)),
                ..Default::default()
            };
            let out = kv.range(&req).expect("range");
            assert_eq!(out.kvs.len(), 1);
            black_box(out)
        })
    });

    group.bench_function("range_prefix_100", |b| {
        b.iter(|| {
            let (key, range_end) = prefix_range(rng.below(prefixes));
            let req = RangeRequest {
                key,
                range_end,
                ..Default::default()
            };
            let out = kv.range(&req).expect("range");
            assert_eq!(out.kvs.len(), KEYS_PER_PREFIX);
            black_box(out)
        })
    });

    // etcd's optimistic update: put if the key's mod revision is what was read (here: > 0,
    // always true, so every txn writes).
    group.bench_function("txn_compare_put", |b| {
        b.iter(|| {
            let k = key(rng.below(prefixes), rng.below(KEYS_PER_PREFIX));
            let req = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Greater as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(0)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: k,
                        value: value.clone(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            commit(kv, |w, begin| {
                let resp = txn::txn(w, &req, begin).expect("txn");
                assert!(resp.succeeded);
                black_box(resp);
            });
        })
    });
    group.finish();
}

fn mvcc(c: &mut Criterion) {
    let prefixes = if test_mode() {
        PREFIXES / 100
    } else {
        PREFIXES
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let rocks = Arc::new(RocksEngine::open(&dir.path().join("db")).expect("open rocksdb"));
    let kv = KvStore::open(rocks).expect("open store");
    fill(&kv, prefixes);
    bench_engine(c, "rocksdb", &kv, prefixes);
    drop(kv);

    let kv = KvStore::open(Arc::new(MemoryEngine::new())).expect("open store");
    fill(&kv, prefixes);
    bench_engine(c, "memory", &kv, prefixes);
}

criterion_group!(benches_mvcc, mvcc);
criterion_main!(benches_mvcc);
