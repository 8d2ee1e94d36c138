//! The flags every load shares (endpoints, connections, clients, leader
//! targeting, output files, progress bar) and the connections made from
//! them, handed to each load as one [`Setup`]. `--target-leader` asks every
//! endpoint for its Status and keeps only the one that says it leads. What a
//! load does with the connections, and how results are printed or written,
//! is not decided here.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use setpoint_client::{parse_endpoints, Client, ConnectOptions, StatusTarget};

/// The global flags, in etcd's benchmark tool's names where it has them.
#[derive(Args, Serialize, Clone, Debug)]
#[serde(rename_all = "kebab-case")]
pub struct GlobalArgs {
    /// Comma-separated client endpoints.
    #[arg(long, global = true, default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// Number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent clients (spread over the connections).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Ask every endpoint's Status and connect only to the leader.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Write the result as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the latencies as an SVG chart to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// No progress bar (it is drawn on stderr, and only on a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// What every load gets: its connections and the global options.
pub struct Setup {
    /// The endpoints the connections use (only the leader's with
    /// `--target-leader`), normalized.
    pub endpoints: Vec<String>,
    /// `--conns` connections; each is a client with its own channels.
    pub conns: Vec<Client>,
    /// `--clients`, at least 1.
    pub clients: usize,
    /// Whether to show a progress bar.
    pub progress: bool,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    /// The global flags as given, for the JSON result's `params`.
    pub params: Map<String, Value>,
}

impl Setup {
    /// Prepares `--conns` connections (lazily: nothing is contacted unless
    /// `--target-leader` asks for the leader). Without `--target-leader`,
    /// connection `i` starts on endpoint `i mod n`, so the connections are
    /// spread over the members the way etcd's client balances them.
    pub async fn connect(args: &GlobalArgs) -> anyhow::Result<Setup> {
        let mut endpoints = parse_endpoints(&[args.endpoints.as_str()]).context("--endpoints")?;
        if args.target_leader {
            let leader = leader_endpoint(&endpoints).await?;
            eprintln!("Targeting the leader at {leader}.");
            endpoints = vec![leader];
        }
        let mut conns = Vec::new();
        for i in 0..args.conns.max(1) {
            let mut order = endpoints.clone();
            order.rotate_left(i % endpoints.len());
            conns.push(
                Client::connect(order, ConnectOptions::default())
                    .await
                    .context("connect")?,
            );
        }
        let params = match serde_json::to_value(args)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Ok(Setup {
            endpoints,
            conns,
            clients: args.clients.max(1),
            progress: !args.no_progress,
            json: args.json.clone(),
            svg: args.svg.clone(),
            params,
        })
    }

    /// The global flags plus a load's own (`args` must serialize to an
    /// object; anything else is ignored).
    pub fn params<T: Serialize>(&self, args: &T) -> Value {
        let mut all = self.params.clone();
        if let Ok(Value::Object(own)) = serde_json::to_value(args) {
            all.extend(own);
        }
        Value::Object(all)
    }
}

/// Asks every endpoint for its Status and returns the one whose member id
/// is the leader it reports.
async fn leader_endpoint(endpoints: &[String]) -> anyhow::Result<String> {
    let probe = Client::connect(endpoints.to_vec(), ConnectOptions::default())
        .await
        .context("connect to ask for the leader")?;
    let mut seen = Vec::new();
    for st in probe.status(StatusTarget::All).await? {
        match st.result {
            Ok(resp) => {
                let me = resp.header.as_ref().map(|h| h.member_id);
                if resp.leader != 0 && me == Some(resp.leader) {
                    return Ok(st.endpoint);
                }
                seen.push(format!(
                    "{}: follower (leader {:x})",
                    st.endpoint, resp.leader
                ));
            }
            Err(e) => seen.push(format!("{}: {e}", st.endpoint)),
        }
    }
    bail!(
        "--target-leader: no endpoint is the leader ({})",
        seen.join("; ")
    )
}
