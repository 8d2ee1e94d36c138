//! Prometheus metrics: the registry, the collectors other modules update, and their text
//! exposition (served as `GET /metrics` by `api::http`). The process's own (resident memory,
//! CPU time, open files — what `etcdctl check datascale` reads) are collected on each render.
//!
//! Names follow etcd's where etcd has the same measurement (so existing dashboards work);
//! Setpoint-only ones start with `setpoint_`. This module only defines and serves metrics;
//! the code that knows the numbers updates them.

#[cfg(target_os = "linux")]
use prometheus::process_collector::ProcessCollector;
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

/// Watch service collectors (see `api::watch`).
#[derive(Clone)]
pub struct WatchMetrics {
    /// Open Watch streams.
    pub streams: IntGauge,
    /// Watchers on those streams.
    pub watchers: IntGauge,
    /// Events sent to clients.
    pub events_sent: IntCounter,
    /// Bytes of responses queued for clients and not yet taken by the transport; bounded
    /// per stream by the outbound queue length.
    pub queued_bytes: IntGauge,
    /// Watchers catching up from storage (etcd's unsynced watchers).
    pub slow_watchers: IntGauge,
    /// Times a stream fell out of the store's queue (its client read slowly, or a revision
    /// was too large to queue) and read from storage instead.
    pub lost: IntCounter,
    /// Catch-up reads from storage.
    pub catchup_reads: IntCounter,
}

/// Collectors of the writes a follower forwards to the leader (see `raft::forward`).
#[derive(Clone)]
pub struct ForwardMetrics {
    /// Writes sent to the leader.
    pub writes: IntCounter,
    /// Messages they were sent in.
    pub messages: IntCounter,
}

/// Health checks answered (see `api::http`).
#[derive(Clone)]
pub struct HealthMetrics {
    pub success: IntCounter,
    pub failures: IntCounter,
}

/// Every collector, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub watch: WatchMetrics,
    pub forward: ForwardMetrics,
    pub health: HealthMetrics,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> anyhow::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> anyhow::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let r = Registry::new();
        let watch = WatchMetrics {
            streams: gauge(
                &r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            )?,
            watchers: gauge(
                &r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            )?,
            events_sent: counter(
                &r,
                "etcd_debugging_mvcc_events_total",
                "Total number of events sent by this member.",
            )?,
            queued_bytes: gauge(
                &r,
                "setpoint_watch_queued_response_bytes",
                "Bytes of watch responses waiting for clients to read them.",
            )?,
            slow_watchers: gauge(
                &r,
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            )?,
            lost: counter(
                &r,
                "setpoint_watch_stream_losses_total",
                "Times a watch stream fell behind its queue and read from storage instead.",
            )?,
            catchup_reads: counter(
                &r,
                "setpoint_watch_catchup_reads_total",
                "Storage reads made to catch up watchers that were behind.",
            )?,
        };
        let forward = ForwardMetrics {
            writes: counter(
                &r,
                "setpoint_forwarded_writes_total",
                "Writes this member forwarded to the leader.",
            )?,
            messages: counter(
                &r,
                "setpoint_forward_messages_total",
                "Messages the forwarded writes were sent to the leader in.",
            )?,
        };
        let health = HealthMetrics {
            success: counter(
                &r,
                "etcd_server_health_success",
                "The total number of successful health checks",
            )?,
            failures: counter(
                &r,
                "etcd_server_health_failures",
                "The total number of failed health checks",
            )?,
        };
        // The process's own collectors read /proc: Linux only.
        #[cfg(target_os = "linux")]
        r.register(Box::new(ProcessCollector::for_self()))?;
        Ok(Metrics {
            registry: r,
            watch,
            forward,
            health,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
