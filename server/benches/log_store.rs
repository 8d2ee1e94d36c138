//! The Raft log store's write path: `append` of a batch of entries (a write to the log's
//! preallocated segment file, then its fsync, on the caller's thread) and its flush callback.
//!
//! Batches of 1, 16 and 256 entries — openraft hands over, as one batch, every proposal that
//! queued up while the previous append was syncing, so the batch size is the group-commit factor
//! under load — against log files (and a RocksDB engine for the vote) in a temporary
//! directory (on the machine's disk: the fsyncs are real). One iteration is one append and its callback; criterion's throughput is in
//! entries, and after each case the bench prints time per entry and entries per fsync (from
//! `LogStore::wal_syncs`). Entries carry a put of a 256-byte value, as a client's would. Not
//! measured: openraft itself, replication, apply. The flush callback is openraft's
//! `IOFlushed::signal` over a oneshot channel.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use prost::Message;
use setpoint_proto::etcdserverpb::PutRequest;
use setpoint_server::raft::log_store::LogStore;
use setpoint_server::raft::types::Entry;
use setpoint_server::raft::wal::WalOptions;
use setpoint_server::raft::{Command, TypeConfig};
use setpoint_server::storage::RocksEngine;

const BATCHES: [u64; 3] = [1, 16, 256];
const VALUE_BYTES: usize = 256;

/// Appends entries `first..first + n` and waits for their flush callback.
async fn append_batch(log: &mut LogStore<RocksEngine>, first: u64, n: u64, payload: &[u8]) {
    let entries: Vec<Entry> = (first..first + n)
        .map(|index| {
            Entry::new_normal(
                openraft::testing::log_id::<TypeConfig>(1, 1, index),
                Command::Put(payload.to_vec()),
            )
        })
        .collect();
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx))
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
    let engine =
        std::sync::Arc::new(RocksEngine::open(&dir.path().join("db")).expect("open rocksdb"));
    let mut log = LogStore::open(engine, &dir.path().join("raft-log"), WalOptions::default())
        .expect("log store");
    let payload = PutRequest {
        key: b"key/0000/00".to_vec(),
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    }
    .encode_to_vec();
    let mut next_index = 1u64;

    let mut group = c.benchmark_group("log_store/append_flush");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch));
        let mut entries = 0u64;
        let mut elapsed = Duration::ZERO;
        let syncs_before = log.wal_syncs();
        group.bench_function(format!("{batch}_entries_per_append"), |b| {
            b.iter_custom(|rounds| {
                let start = Instant::now();
                runtime.block_on(async {
                    for _ in 0..rounds {
                        append_batch(&mut log, next_index, batch, &payload).await;
                        next_index += batch;
                    }
                });
                let took = start.elapsed();
                entries += rounds * batch;
                elapsed += took;
                took
            })
        });
        let syncs = log.wal_syncs() - syncs_before;
        println!(
            "log_store/append_flush/{batch}_entries_per_append: {entries} entries, {syncs} fsyncs: \
             {:.1} entries per fsync, {:.1} µs per entry",
            entries as f64 / syncs.max(1) as f64,
            elapsed.as_secs_f64() * 1e6 / entries.max(1) as f64,
        );
    }
    group.finish();
}

criterion_group!(benches_log_store, log_store);
criterion_main!(benches_log_store);
