//! Watch fan-out: one revision (one put of a 64-byte value) published to 1, 100 and 1,000
//! synced watchers, each on its own watch stream (the worst case: one queue send per
//! watcher; watchers sharing a stream are sent a revision once).
//!
//! `publish/*` times `KvStore::publish` alone — the watcher-group lookup and one
//! `try_send` per wanting stream; the queues are bounded channels, so when it returns every
//! stream's queue holds the revision. Single-key watchers all watch the put key (one hash
//! lookup finds them); prefix watchers are tested one by one. `delivered/*` times from the
//! publish until a task parked on each stream's queue (as a watch stream's task is) has woken
//! and received it, on a two-worker tokio runtime. The write transaction before each publish
//! (on the in-memory engine) is not timed; nor are filtering, `prev_kv` reads, protobuf
//! encoding or gRPC sends, which `api::watch` does per stream after this.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use setpoint_server::mvcc::{HubStream, KeyRange, KvStore, PublishToken};
use setpoint_server::storage::{Engine, MemoryEngine, WriteBatch};

const KEY: &[u8] = b"watched/key";
const PREFIX: &[u8] = b"watched/";
const PREFIX_END: &[u8] = b"watched0";
const VALUE_BYTES: usize = 64;

type Store = KvStore<MemoryEngine>;

/// A written but unpublished put of `KEY`.
fn written(kv: &Store) -> PublishToken<MemoryEngine> {
    let mut w = kv.write_txn();
    w.put(KEY, &[b'v'; VALUE_BYTES], 0, false, false)
        .expect("put");
    let mut batch = WriteBatch::default();
    let (_, token) = w.into_batch(&mut batch);
    kv.engine().write(batch, false).expect("engine write");
    token
}

/// Opens `n` streams with one synced watcher on `range` each.
fn watchers(kv: &Store, n: usize, range: &KeyRange) -> Vec<HubStream> {
    let hub = kv.watch_hub();
    (0..n)
        .map(|_| {
            let stream = hub.open_stream();
            hub.watch(stream.id, 0, range, None, 0).expect("watch");
            stream
        })
        .collect()
}

fn bench_publish(c: &mut Criterion) {
    let cases = [
        ("1_key_watchers", 1, KeyRange::One(KEY.to_vec())),
        ("100_key_watchers", 100, KeyRange::One(KEY.to_vec())),
        ("1000_key_watchers", 1_000, KeyRange::One(KEY.to_vec())),
        (
            "1000_prefix_watchers",
            1_000,
            KeyRange::Range(PREFIX.to_vec(), PREFIX_END.to_vec()),
        ),
    ];
    let mut group = c.benchmark_group("watch_fanout/publish");
    for (name, n, range) in cases {
        let kv = KvStore::open(Arc::new(MemoryEngine::new())).expect("store");
        let mut streams = watchers(&kv, n, &range);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let token = written(&kv);
                    let start = Instant::now();
                    kv.publish(token);
                    took += start.elapsed();
                    // Empty the queues (untimed) so that none fills and is marked lost.
                    for s in &mut streams {
                        black_box(s.queue.try_recv().expect("revision queued"));
                    }
                }
                took
            })
        });
        assert_eq!(kv.watch_hub().losses(), 0);
    }
    group.finish();
}

fn bench_delivered(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("watch_fanout/delivered");
    for n in [1, 100, 1_000] {
        let kv = KvStore::open(Arc::new(MemoryEngine::new())).expect("store");
        let received = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut tasks = Vec::new();
        for mut stream in watchers(&kv, n, &KeyRange::One(KEY.to_vec())) {
            let received = received.clone();
            let done_tx = done_tx.clone();
            tasks.push(runtime.spawn(async move {
                while let Some(published) = stream.queue.recv().await {
                    black_box(published);
                    if received.fetch_add(1, Ordering::AcqRel) + 1 == n {
                        let _ = done_tx.send(());
                    }
                }
            }));
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_key_watchers"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let token = written(&kv);
                    // Every task has counted the previous revision before `done` was sent.
                    received.store(0, Ordering::Release);
                    let start = Instant::now();
                    kv.publish(token);
                    done_rx.recv().expect("delivery tasks stopped");
                    took += start.elapsed();
                }
                took
            })
        });
        assert_eq!(kv.watch_hub().losses(), 0);
        // The tasks own their streams (which keep the hub alive): stop them.
        tasks.iter().for_each(|t| t.abort());
    }
    group.finish();
}

criterion_group!(benches_watch, bench_publish, bench_delivered);
criterion_main!(benches_watch);
