//! The `setpoint` binary: parse etcd-style flags, set up logging, run a member until
//! SIGINT/SIGTERM. Exit status 1 on bad flags or a failed start.

use std::process::ExitCode;

use setpoint_server::config::{Config, ConfigError};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: under many clients glibc's free lists (`_int_malloc`,
/// `unlink_chunk`, `malloc_consolidate`) took ~10% of the CPU of a 3-member write load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args()) {
        Ok(c) => c,
        Err(ConfigError::Info(msg)) => {
            print!("{msg}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Parse(msg)) => {
            eprint!("{msg}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("setpoint: {e}");
            return ExitCode::from(1);
        }
    };
    let filter = EnvFilter::try_from_env("SETPOINT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},openraft=warn", config.log_level)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("setpoint: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        setpoint_server::failpoint::start().await?;
        setpoint_server::server::run(config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("setpoint: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
