//! The `range` load, as etcd's `benchmark range KEY [END]`: repeated Ranges
//! over one key or a key range, linearizable or serializable, optionally
//! limited or count-only, optionally at a fixed rate.

use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use setpoint_client::proto::etcdserverpb::RangeRequest;
use setpoint_client::Client;

use crate::load::{self, BoxFut};
use crate::outcome::Outcome;
use crate::report;
use crate::setup::Setup;

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RangeArgs {
    /// The key, or the start of the range.
    key: String,
    /// The end of the range (exclusive); without it, the one key.
    end: Option<String>,
    /// Total number of range requests.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Range requests per second overall; 0 means as fast as the clients go.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Maximum keys per response; 0 means no limit.
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Only count the keys.
    #[arg(long)]
    count_only: bool,
}

pub async fn run(setup: &Setup, args: RangeArgs) -> anyhow::Result<()> {
    let serializable = match args.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => bail!("--consistency must be l or s, not {other:?}"),
    };
    println!(
        "bench with {} range",
        if serializable {
            "serializable"
        } else {
            "linearizable"
        }
    );
    let params = setup.params(&args);
    let req = RangeRequest {
        key: args.key.into_bytes(),
        range_end: args.end.map(String::into_bytes).unwrap_or_default(),
        limit: args.limit,
        count_only: args.count_only,
        serializable,
        ..Default::default()
    };
    let op = Arc::new(move |c: Client, _w: usize, _i: u64| {
        let req = req.clone();
        Box::pin(async move { c.range(req).await.map(|_| ()).map_err(|e| e.to_string()) }) as BoxFut
    });
    let result = load::run(setup, "range", args.total, args.rate, op).await?;
    let out = Outcome {
        load: "range",
        params,
        result,
        events: None,
    };
    report::requests(&out);
    out.publish(setup)
}
