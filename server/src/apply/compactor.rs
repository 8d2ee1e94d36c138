//! Physical compaction in the background, never on the write path.
//!
//! Apply records a compaction logically (reads below it fail at once); this worker then
//! removes the superseded versions in small steps on its own thread, so writes never wait for
//! it. `wait_done` serves etcd's `physical: true`, which answers only once the old versions
//! are gone. It does not decide what to compact: that comes through Raft.

use std::sync::Arc;

use tokio::sync::watch;

use crate::mvcc::KvStore;
use crate::storage::Engine;

/// Keys handled per step: small enough that a step is short, large enough to make progress.
const STEP_KEYS: usize = 1000;

/// Handle to the background compactor.
#[derive(Clone)]
pub struct Compactor {
    requested: watch::Sender<i64>,
    done: watch::Receiver<i64>,
}

impl Compactor {
    /// Starts the worker thread for `kv`.
    pub fn start<E: Engine>(kv: Arc<KvStore<E>>) -> std::io::Result<Compactor> {
        let start = kv.compact_revision();
        let (req_tx, mut req_rx) = watch::channel(start);
        let (done_tx, done_rx) = watch::channel(0i64);
        // Held weakly: the worker must never keep the store (and its database) open.
        let kv = Arc::downgrade(&kv);
        std::thread::Builder::new().name("mvcc-compactor".into()).spawn(move || loop {
            let target = *req_rx.borrow_and_update();
            loop {
                let Some(kv) = kv.upgrade() else { return };
                match kv.physical_compaction_step(STEP_KEYS) {
                    Ok(true) => break,
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "physical compaction step failed; will retry");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            }
            done_tx.send_replace(target);
            if futures::executor::block_on(req_rx.changed()).is_err() {
                return;
            }
        })?;
        Ok(Compactor {
            requested: req_tx,
            done: done_rx,
        })
    }

    /// Asks for physical compaction up to `rev` (already recorded logically).
    pub fn schedule(&self, rev: i64) {
        self.requested.send_if_modified(|cur| {
            if rev > *cur {
                *cur = rev;
                true
            } else {
                false
            }
        });
    }

    /// Waits until versions below `rev` are physically removed.
    pub async fn wait_done(&self, rev: i64) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d >= rev).await;
    }
}
