//! The Raft log store's write path with group commit: `append` of one entry (an unsynced
//! RocksDB write) and the wait for its flush callback, which the syncer thread completes after
//! one WAL fsync shared by every append queued meanwhile.
//!
//! 1, 16 and 256 appenders run closed loops (append one entry, wait until it is flushed,
//! repeat) on a two-worker tokio runtime, against a RocksDB engine in a temporary directory
//! (on the machine's disk: the fsyncs are real). One iteration is one round in which every
//! appender gets one entry flushed, so criterion's time is per round and its throughput is in
//! entries; after each case the bench prints time per entry and entries per fsync (from
//! `LogStore::wal_syncs`). Entries carry a put of a 256-byte value, as a client's would. Not
//! measured: openraft itself (which calls `append` from one task, batching entries — the
//! appenders here stand for the proposals that pile up behind an fsync), replication,
//! apply. The flush callback is openraft's `IOFlushed::signal` over a oneshot channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use prost::Message;
use setpoint_proto::etcdserverpb::PutRequest;
use setpoint_server::raft::log_store::LogStore;
use setpoint_server::raft::types::Entry;
use setpoint_server::raft::{Command, TypeConfig};
use setpoint_server::storage::RocksEngine;

const APPENDERS: [usize; 3] = [1, 16, 256];
const VALUE_BYTES: usize = 256;

/// Appends one entry and waits for its flush callback.
async fn append_one(log: &mut LogStore<RocksEngine>, index: u64, payload: &[u8]) {
    let entry = Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(1, 1, index),
        Command::Put(payload.to_vec()),
    );
    let (tx, rx) = TypeConfig::oneshot();
    log.append([entry], IOFlushed::signal(tx))
        .await
        .expect("append");
    rx.await.expect("callback dropped").expect("flush failed");
}

fn log_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(RocksEngine::open(&dir.path().join("db")).expect("open rocksdb"));
    let log = LogStore::new(engine).expect("log store");
    let payload: Arc<[u8]> = PutRequest {
        key: b"key/0000/00".to_vec(),
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    }
    .encode_to_vec()
    .into();
    let next_index = Arc::new(AtomicU64::new(1));

    let mut group = c.benchmark_group("log_store/append_flush");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for appenders in APPENDERS {
        group.throughput(Throughput::Elements(appenders as u64));
        let mut entries = 0u64;
        let mut elapsed = Duration::ZERO;
        let syncs_before = log.wal_syncs();
        group.bench_function(format!("{appenders}_appenders"), |b| {
            b.iter_custom(|rounds| {
                let start = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..appenders)
                        .map(|_| {
                            let mut log = log.clone();
                            let payload = payload.clone();
                            let next_index = next_index.clone();
                            tokio::spawn(async move {
                                for _ in 0..rounds {
                                    let index = next_index.fetch_add(1, Ordering::Relaxed);
                                    append_one(&mut log, index, &payload).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("appender panicked");
                    }
                });
                let took = start.elapsed();
                entries += rounds * appenders as u64;
                elapsed += took;
                took
            })
        });
        let syncs = log.wal_syncs() - syncs_before;
        println!(
            "log_store/append_flush/{appenders}_appenders: {entries} entries, {syncs} fsyncs: \
             {:.1} entries per fsync, {:.1} µs per entry",
            entries as f64 / syncs.max(1) as f64,
            elapsed.as_secs_f64() * 1e6 / entries.max(1) as f64,
        );
    }
    group.finish();
}

criterion_group!(benches_log_store, log_store);
criterion_main!(benches_log_store);
