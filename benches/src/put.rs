//! The `put` load, as etcd's `benchmark put`: puts over a key space, timed
//! per request. Optionally with watchers that must cost the puts nothing:
//! `--idle-watchers` (each on a key the puts never touch) and
//! `--stalled-watchers` (each watching every key but never reading), both
//! created and confirmed before the timed puts start. Also home of the key
//! naming the write loads share.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use clap::Args;
use serde::Serialize;
use setpoint_client::proto::etcdserverpb::PutRequest;
use setpoint_client::Client;

use crate::load::{self, BoxFut};
use crate::outcome::Outcome;
use crate::report;
use crate::setup::Setup;
use crate::watchers::{IdleWatchers, StalledWatchers};

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PutArgs {
    /// Total number of puts.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Distinct keys the puts go to.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Keys in order (i mod key space) rather than scattered.
    #[arg(long)]
    sequential_keys: bool,
    /// Puts per second overall; 0 means as fast as the clients go.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Watchers on keys `idle/<i>` that the puts never touch.
    #[arg(long, default_value_t = 0)]
    idle_watchers: usize,
    /// Watch streams the idle watchers are spread over.
    #[arg(long, default_value_t = 100)]
    watch_streams: usize,
    /// Streams (one connection each) watching the whole key space with
    /// prev_kv whose responses are never read.
    #[arg(long, default_value_t = 0)]
    stalled_watchers: usize,
    /// Seconds to wait for the watchers to be created.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
}

/// Key number `i` of the load: zero-padded to `size` digits, sequential or
/// scattered over the key space.
pub fn key_for(i: u64, size: usize, space: u64, sequential: bool) -> Vec<u8> {
    let n = if sequential {
        i % space.max(1)
    } else {
        // A cheap, deterministic scatter over the key space.
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % space.max(1)
    };
    let mut k = format!("{n:0width$}", width = size).into_bytes();
    k.truncate(size.max(1));
    k
}

pub async fn run(setup: &Setup, args: PutArgs) -> anyhow::Result<()> {
    ensure!(args.key_space_size > 0, "--key-space-size must be positive");
    let params = setup.params(&args);
    let timeout = Duration::from_secs(args.wait_timeout);
    let idle = if args.idle_watchers > 0 {
        let idle = IdleWatchers::start(
            &setup.conns,
            args.idle_watchers,
            args.watch_streams,
            timeout,
        )
        .await?;
        println!(
            "Idle watchers: {} on {} streams, created and confirmed in {:.3} secs.",
            idle.watchers,
            idle.streams,
            idle.setup.as_secs_f64()
        );
        Some(idle)
    } else {
        None
    };
    let stalled = if args.stalled_watchers > 0 {
        let stalled =
            StalledWatchers::start(&setup.endpoints, args.stalled_watchers, timeout).await?;
        println!(
            "Stalled watchers: {} (whole key space, prev_kv, never read), created and confirmed in {:.3} secs.",
            stalled.watchers,
            stalled.setup.as_secs_f64()
        );
        Some(stalled)
    } else {
        None
    };

    let value = vec![b'v'; args.val_size];
    let (ks, space, seq) = (args.key_size, args.key_space_size, args.sequential_keys);
    let op = Arc::new(move |c: Client, _w: usize, i: u64| {
        let req = PutRequest {
            key: key_for(i, ks, space, seq),
            value: value.clone(),
            ..Default::default()
        };
        Box::pin(async move { c.put(req).await.map(|_| ()).map_err(|e| e.to_string()) }) as BoxFut
    });
    let result = load::run(setup, "put", args.total, args.rate, op).await?;
    let out = Outcome {
        load: "put",
        params,
        result,
        events: None,
    };
    report::requests(&out);
    if let Some(idle) = &idle {
        println!();
        println!(
            "Idle watchers: {} responses during the puts (0 expected), {} streams lost.",
            idle.responses(),
            idle.lost()
        );
    }
    drop(stalled);
    out.publish(setup)?;
    if let Some(idle) = &idle {
        ensure!(
            idle.lost() == 0,
            "{} idle watch streams were lost",
            idle.lost()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sized_and_stay_in_the_key_space() {
        assert_eq!(key_for(3, 8, 10, true), b"00000003");
        assert_eq!(key_for(13, 8, 10, true), b"00000003");
        for i in 0..100 {
            let k = key_for(i, 8, 5, false);
            assert_eq!(k.len(), 8);
            let n: u64 = String::from_utf8(k)
                .expect("digits")
                .parse()
                .expect("number");
            assert!(n < 5);
        }
        assert_eq!(key_for(1234, 2, 10_000, true), b"12");
    }
}
