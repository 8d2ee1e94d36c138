//! openraft's storage conformance suite run against our log store and state machine, on the
//! real RocksDB engine in a temporary directory. Test-only.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use super::wal::WalOptions;
use crate::apply::{Applier, Compactor};
use crate::mvcc::KvStore;
use crate::storage::RocksEngine;

/// Builds stores whose appends sync inline, or on the syncer thread (`defer`).
struct RocksBuilder {
    defer: bool,
}

impl StoreBuilder<TypeConfig, LogStore<RocksEngine>, StateMachine<RocksEngine>, tempfile::TempDir>
    for RocksBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<RocksEngine>,
            StateMachine<RocksEngine>,
        ),
        StorageError<TypeConfig>,
    > {
        let err = |e: &dyn std::fmt::Display| {
            StorageError::write(TypeConfig::err_from_string(e.to_string()))
        };
        let dir = tempfile::tempdir().map_err(|e| err(&e))?;
        let engine = Arc::new(RocksEngine::open(&dir.path().join("db")).map_err(|e| err(&e))?);
        let kv = Arc::new(KvStore::open(engine.clone()).map_err(|e| err(&e))?);
        let compactor = Compactor::start(kv.clone()).map_err(|e| err(&e))?;
        let applier = Arc::new(Applier::new(engine.clone(), kv, compactor));
        let log = LogStore::open(
            engine.clone(),
            &dir.path().join("raft-log"),
            small_segments(),
        )
        .map_err(|e| err(&e))?;
        log.defer_syncs(self.defer);
        let sm = StateMachine::open(engine, applier, &dir.path().join("snap"), &log)
            .map_err(|e| err(&e))?;
        Ok((dir, log, sm))
    }
}

/// Segments small enough that the suite's appends roll over to new ones.
fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        ..WalOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite_passes() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksBuilder { defer: false }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite_passes_with_deferred_syncs(
) -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksBuilder { defer: true }).await
}
