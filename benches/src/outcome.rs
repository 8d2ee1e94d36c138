//! What a load measured, in the one shape every output reads (the text
//! report, `--json` and `--svg`), and the end of every load: writing the
//! files that were asked for and turning "every operation failed" into a
//! failing exit status. Formatting itself lives in `report` (text), `json`
//! and `chart`.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::load::LoadResult;
use crate::setup::Setup;
use crate::{chart, json};

/// A finished load.
pub struct Outcome {
    /// The subcommand: `put`, `range`, `txn-put`, ...
    pub load: &'static str,
    /// Every flag value, global ones included.
    pub params: Value,
    /// The operations and their latencies. For the watch loads: the puts as
    /// operations, but the events' delivery latencies.
    pub result: LoadResult,
    /// Watch loads only: events received.
    pub events: Option<u64>,
}

impl Outcome {
    /// Successful operations per second of the run, the throughput the
    /// report and the JSON give (as etcd's tool: failures do not count).
    pub fn requests_per_sec(&self) -> f64 {
        per_sec(
            self.result.total.saturating_sub(self.result.errors),
            self.result.took,
        )
    }

    /// Events per second (watch loads).
    pub fn events_per_sec(&self) -> Option<f64> {
        self.events.map(|n| per_sec(n, self.result.took))
    }

    /// Whether the load ran operations and every one failed.
    pub fn all_failed(&self) -> bool {
        self.result.total > 0 && self.result.errors >= self.result.total
    }

    /// Writes `--json` and `--svg` if asked, then fails if every operation
    /// failed. Call after printing the text report.
    pub fn publish(&self, setup: &Setup) -> anyhow::Result<()> {
        if let Some(path) = &setup.json {
            let text = serde_json::to_string_pretty(&json::document(self))?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("write --json {}", path.display()))?;
        }
        if let Some(path) = &setup.svg {
            let svg = chart::svg(self)?;
            std::fs::write(path, svg).with_context(|| format!("write --svg {}", path.display()))?;
        }
        if self.all_failed() {
            bail!(
                "every one of the {} {} requests failed (first error: {})",
                self.result.total,
                self.load,
                self.result.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
}

fn per_sec(n: u64, took: Duration) -> f64 {
    let secs = took.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}
