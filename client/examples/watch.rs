//! A tiny `etcdctl watch` look-alike on top of [`setpoint_client::Watcher`],
//! for checking the resumable watch by hand against etcd or Setpoint (kill
//! the member it watches through and see it carry on elsewhere). Prints one
//! line per event: revision, type, key, value (and the previous value with
//! `--prev-kv`), and `progress <rev>` for progress notifications. Not a
//! general CLI: no output formats, no TLS, no auth.
//!
//! ```text
//! cargo run --release -p setpoint-client --example watch -- \
//!     --endpoints 127.0.0.1:2379,127.0.0.1:22379 [--prefix] [--prev-kv] \
//!     [--rev N] [--fragment] [--progress-notify] [--batches] [--count N] KEY
//! ```
//!
//! `--batches` also prints `batch <header revision> <events>` before each
//! batch (to see fragments reassembled).

use std::process::ExitCode;

use setpoint_client::proto::mvccpb::event::EventType;
use setpoint_client::{Client, ConnectOptions, WatchOptions};

const USAGE: &str = "usage: watch --endpoints E1,E2 [--prefix] [--prev-kv] [--rev N] \
                     [--fragment] [--progress-notify] [--batches] [--count N] KEY";

struct Args {
    endpoints: String,
    key: String,
    prefix: bool,
    options: WatchOptions,
    /// Print a line per batch.
    batches: bool,
    /// Stop after this many events.
    count: Option<usize>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut endpoints = "127.0.0.1:2379".to_string();
    let mut key = None;
    let mut prefix = false;
    let mut options = WatchOptions::default();
    let mut count = None;
    let mut batches = false;
    let number = |v: Option<String>, flag: &str| -> Result<i64, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoints" => endpoints = args.next().ok_or("--endpoints needs a value")?,
            "--prefix" => prefix = true,
            "--batches" => batches = true,
            "--prev-kv" => options.prev_kv = true,
            "--fragment" => options.fragment = true,
            "--progress-notify" => options.progress_notify = true,
            "--rev" => options.start_revision = number(args.next(), "--rev")?,
            "--count" => count = Some(number(args.next(), "--count")?.max(0) as usize),
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}\n{USAGE}")),
            _ if key.is_none() => key = Some(arg),
            _ => return Err(USAGE.to_string()),
        }
    }
    let key = key.ok_or(USAGE)?;
    if prefix {
        options = options.with_prefix(&key);
    }
    Ok(Args {
        endpoints,
        key,
        prefix,
        options,
        batches,
        count,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), setpoint_client::ClientError> {
    let client = Client::connect(vec![args.endpoints], ConnectOptions::default()).await?;
    let mut watcher = client.watch(args.key.clone(), args.options).await?;
    eprintln!(
        "watching {:?}{} from revision {} on {}",
        args.key,
        if args.prefix { " (prefix)" } else { "" },
        watcher.resume_revision(),
        watcher
            .endpoint()
            .map_or("?", |i| client.endpoints()[i].as_str())
    );
    let mut seen = 0usize;
    let mut endpoint = watcher.endpoint();
    while let Some(batch) = watcher.next().await? {
        if watcher.endpoint() != endpoint {
            endpoint = watcher.endpoint();
            eprintln!(
                "resumed on {}",
                endpoint.map_or("?", |i| client.endpoints()[i].as_str())
            );
        }
        if batch.progress_notify {
            println!("progress {}", batch.header_revision);
            continue;
        }
        if args.batches {
            println!("batch {} {}", batch.header_revision, batch.events.len());
        }
        for ev in &batch.events {
            let Some(kv) = &ev.kv else { continue };
            let kind = match EventType::try_from(ev.r#type) {
                Ok(EventType::Put) => "PUT",
                Ok(EventType::Delete) => "DELETE",
                Err(_) => "?",
            };
            let mut line = format!(
                "{} {kind} {} {}",
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value)
            );
            if let Some(prev) = &ev.prev_kv {
                line.push_str(&format!(" (prev {})", String::from_utf8_lossy(&prev.value)));
            }
            println!("{line}");
            seen += 1;
        }
        if args.count.is_some_and(|n| seen >= n) {
            watcher.cancel().await?;
        }
    }
    Ok(())
}
