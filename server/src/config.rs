//! The `setpoint` command line: etcd's flags with etcd's meaning, and the `ETCD_*` environment
//! variables that stand for them.
//!
//! This module parses and checks the configuration (unknown or contradictory settings are
//! errors); it does not start anything. Defaults follow etcd's, except that the data directory
//! is `<name>.setpoint` and the default URLs name 127.0.0.1 rather than localhost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Flags as etcd spells them. Each can also come from the matching `ETCD_*` variable.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "setpoint",
    version,
    about = "A Raft-replicated state store that speaks etcd's v3 API",
    long_version = concat!(env!("CARGO_PKG_VERSION"), " (etcd API ", "3.5.0", ")")
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: <name>.setpoint).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,

    /// List of additional URLs to listen on that respond to the /metrics endpoint.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,

    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Disables fsync, unsafe, will cause data loss.
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC")]
    pub unsafe_no_fsync: bool,

    /// Duration of periodic watch progress notifications (etcd's Go duration syntax: 10m, 500ms).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m"
    )]
    pub experimental_watch_progress_notify_interval: String,

    /// Currently only supports 'debug', 'info', 'warn', 'error', 'panic', or 'fatal'.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A member as named in `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The checked configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub listen_metrics: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    /// Sorted by name: every member computes the same ids from it.
    pub initial_cluster: Vec<InitialMember>,
    pub existing_cluster: bool,
    pub cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    /// Acknowledge writes without fsyncing them (etcd's `--unsafe-no-fsync`).
    pub unsafe_no_fsync: bool,
    pub log_level: String,
    pub watch_progress_notify_interval: Duration,
}

/// Why the flags cannot be used; printed as is, and `setpoint` exits with 1.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(String),
    /// `--help` or `--version`: print it and exit successfully.
    #[error("{0}")]
    Info(String),
    #[error("invalid URL {url:?} in {flag}: {why}")]
    BadUrl {
        flag: &'static str,
        url: String,
        why: String,
    },
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    #[error("--initial-cluster has {name}={urls:?} but missing from --initial-advertise-peer-urls={advertised:?}")]
    AdvertiseMismatch {
        name: String,
        urls: Vec<String>,
        advertised: Vec<String>,
    },
    #[error("invalid --initial-cluster entry {0:?}: expected name=url")]
    BadClusterEntry(String),
    #[error("--initial-cluster has duplicate member name {0:?}")]
    DuplicateMember(String),
    #[error("invalid value {0:?} for --initial-cluster-state: expected 'new' or 'existing'")]
    BadClusterState(String),
    #[error(
        "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
    )]
    ElectionTooShort { election: u64, heartbeat: u64 },
    #[error("--heartbeat-interval must be greater than 0")]
    ZeroHeartbeat,
    #[error("invalid value {0:?} for --log-level")]
    BadLogLevel(String),
    #[error("--{0} must be greater than 0")]
    Zero(&'static str),
    #[error("invalid value {value:?} for --{flag}: {why}")]
    BadDuration {
        flag: &'static str,
        value: String,
        why: String,
    },
}

impl Config {
    /// Parses the process arguments (etcd's single-dash spelling `-name` is accepted too).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
        let args = args.into_iter().enumerate().map(|(i, a)| {
            if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 {
                format!("-{a}")
            } else {
                a
            }
        });
        let flags = Flags::try_parse_from(args).map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ConfigError::Info(e.to_string())
            }
            _ => ConfigError::Parse(e.to_string()),
        })?;
        Config::from_flags(flags)
    }

    pub fn from_flags(f: Flags) -> Result<Config, ConfigError> {
        if f.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election: f.election_timeout,
                heartbeat: f.heartbeat_interval,
            });
        }
        if f.max_request_bytes == 0 {
            return Err(ConfigError::Zero("max-request-bytes"));
        }
        if f.max_txn_ops == 0 {
            return Err(ConfigError::Zero("max-txn-ops"));
        }
        let existing_cluster = match f.initial_cluster_state.as_str() {
            "new" => false,
            "existing" => true,
            other => return Err(ConfigError::BadClusterState(other.to_string())),
        };
        let log_level = match f.log_level.as_str() {
            "debug" | "info" | "warn" | "error" => f.log_level.clone(),
            "panic" | "fatal" => "error".to_string(),
            other => return Err(ConfigError::BadLogLevel(other.to_string())),
        };
        let watch_progress_notify_interval = duration(
            "experimental-watch-progress-notify-interval",
            &f.experimental_watch_progress_notify_interval,
        )?;
        let listen_client = socket_addrs("--listen-client-urls", &f.listen_client_urls)?;
        let listen_metrics = if f.listen_metrics_urls.trim().is_empty() {
            Vec::new()
        } else {
            socket_addrs("--listen-metrics-urls", &f.listen_metrics_urls)?
        };
        let listen_peer = socket_addrs("--listen-peer-urls", &f.listen_peer_urls)?;
        let advertise_client_urls = urls("--advertise-client-urls", &f.advertise_client_urls)?;
        let advertise_peer_urls = urls(
            "--initial-advertise-peer-urls",
            &f.initial_advertise_peer_urls,
        )?;
        let cluster_text = f.initial_cluster.clone().unwrap_or_else(|| {
            format!(
                "{}={}",
                f.name,
                advertise_peer_urls.join(&format!(",{}=", f.name))
            )
        });
        let initial_cluster = parse_initial_cluster(&cluster_text)?;
        let me = initial_cluster
            .iter()
            .find(|m| m.name == f.name)
            .ok_or_else(|| ConfigError::NameNotInCluster(f.name.clone()))?;
        let mut mine = me.peer_urls.clone();
        mine.sort();
        let mut advertised = advertise_peer_urls.clone();
        advertised.sort();
        if mine != advertised {
            return Err(ConfigError::AdvertiseMismatch {
                name: f.name.clone(),
                urls: me.peer_urls.clone(),
                advertised: advertise_peer_urls,
            });
        }
        let data_dir = f
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.setpoint", f.name)));
        Ok(Config {
            name: f.name,
            data_dir,
            listen_client,
            listen_metrics,
            advertise_client_urls,
            listen_peer,
            advertise_peer_urls,
            initial_cluster,
            existing_cluster,
            cluster_token: f.initial_cluster_token,
            heartbeat_interval: Duration::from_millis(f.heartbeat_interval),
            election_timeout: Duration::from_millis(f.election_timeout),
            max_request_bytes: f.max_request_bytes as usize,
            max_txn_ops: f.max_txn_ops as usize,
            snapshot_count: f.snapshot_count,
            unsafe_no_fsync: f.unsafe_no_fsync,
            log_level,
            watch_progress_notify_interval,
        })
    }
}

/// Parses a positive Go-style duration ("10m", "1m30s", "500ms").
fn duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let bad = |why: String| ConfigError::BadDuration {
        flag,
        value: value.to_string(),
        why,
    };
    let d = humantime::parse_duration(value).map_err(|e| bad(e.to_string()))?;
    if d.is_zero() {
        return Err(bad("must be greater than 0".into()));
    }
    Ok(d)
}

/// Parses `name=url,name=url,...`; a name may appear several times for several URLs.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::BadClusterEntry(entry.to_string()))?;
        if name.is_empty() {
            return Err(ConfigError::BadClusterEntry(entry.to_string()));
        }
        check_url("--initial-cluster", url)?;
        members
            .entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    if members.is_empty() {
        return Err(ConfigError::BadClusterEntry(text.to_string()));
    }
    let mut seen = BTreeMap::new();
    for (name, urls) in &members {
        for u in urls {
            if let Some(other) = seen.insert(u.clone(), name.clone()) {
                return Err(ConfigError::DuplicateMember(other));
            }
        }
    }
    Ok(members
        .into_iter()
        .map(|(name, peer_urls)| InitialMember { name, peer_urls })
        .collect())
}

fn urls(flag: &'static str, text: &str) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(ConfigError::BadUrl {
            flag,
            url: text.to_string(),
            why: "no URL given".into(),
        });
    }
    for u in &list {
        check_url(flag, u)?;
    }
    Ok(list)
}

fn check_url(flag: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: &str| ConfigError::BadUrl {
        flag,
        url: url.to_string(),
        why: why.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported (TLS is not built yet)"))?;
    let host_port = rest.trim_end_matches('/');
    let host_port = host_port.replacen("localhost:", "127.0.0.1:", 1);
    host_port
        .parse::<SocketAddr>()
        .map_err(|_| bad("expected http://IP:PORT"))
}

fn socket_addrs(flag: &'static str, text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    urls(flag, text)?
        .iter()
        .map(|u| check_url(flag, u))
        .collect()
}

/// The socket address a peer URL names (for dialing peers).
pub fn url_to_addr(url: &str) -> Option<SocketAddr> {
    check_url("url", url).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(
            std::iter::once("setpoint")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn defaults_make_a_single_member_named_default() {
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.setpoint"));
        assert_eq!(c.listen_client, vec!["127.0.0.1:2379".parse().unwrap()]);
        assert_eq!(c.listen_peer, vec!["127.0.0.1:2380".parse().unwrap()]);
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
    }

    #[test]
    fn three_member_cluster_and_single_dash_flags() {
        let c = parse(&[
            "-name",
            "b",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:3380",
            "--initial-cluster",
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,c=http://127.0.0.1:4380",
        ])
        .expect("parses");
        assert_eq!(c.name, "b");
        let names: Vec<_> = c.initial_cluster.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn unsafe_no_fsync_is_off_unless_asked() {
        assert!(!parse(&[]).expect("defaults").unsafe_no_fsync);
        assert!(parse(&["--unsafe-no-fsync"]).expect("flag").unsafe_no_fsync);
    }

    #[test]
    fn contradictions_are_errors() {
        assert!(matches!(
            parse(&["--initial-cluster", "x=http://127.0.0.1:2380"]),
            Err(ConfigError::NameNotInCluster(_))
        ));
        assert!(matches!(
            parse(&["--initial-cluster", "default=http://127.0.0.1:9999"]),
            Err(ConfigError::AdvertiseMismatch { .. })
        ));
        assert!(matches!(
            parse(&["--heartbeat-interval", "500", "--election-timeout", "1000"]),
            Err(ConfigError::ElectionTooShort { .. })
        ));
        assert!(matches!(
            parse(&["--initial-cluster-state", "old"]),
            Err(ConfigError::BadClusterState(_))
        ));
        assert!(matches!(
            parse(&["--no-such-flag"]),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            parse(&["--listen-client-urls", "127.0.0.1:2379"]),
            Err(ConfigError::BadUrl { .. })
        ));
    }
}
