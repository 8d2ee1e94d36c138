//! The `range` load: repeated Ranges over one key, linearizable or
//! serializable, as etcd's `benchmark range`.

use std::sync::Arc;

use clap::Args;
use setpoint_client::proto::etcdserverpb::RangeRequest;
use setpoint_client::Client;

use crate::load::{self, BoxFut};

#[derive(Args)]
pub struct RangeArgs {
    key: String,
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    consistency: String,
}

pub async fn run(conns: &[Client], clients: usize, args: RangeArgs) -> anyhow::Result<()> {
    let serializable = args.consistency == "s";
    let key = args.key.into_bytes();
    let op = Arc::new(move |c: Client, _i: u64| {
        let req = RangeRequest {
            key: key.clone(),
            serializable,
            ..Default::default()
        };
        Box::pin(async move { c.range(req).await.map(|_| ()).map_err(|e| e.to_string()) }) as BoxFut
    });
    let result = load::run(conns, clients, args.total, 0, op).await?;
    result.print_summary();
    Ok(())
}
