//! `setpoint-jepsen`: the Jepsen-style verifier (issue 4). Until it is built this binary only
//! states that, and exits with status 2 ("the run itself failed"), so no script mistakes it
//! for a passing verdict.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "setpoint-jepsen",
    version,
    about = "Jepsen-style verifier for Setpoint and etcd (not built yet)"
)]
struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let _ = Args::parse();
    eprintln!("setpoint-jepsen: not built yet (see issue 4)");
    std::process::ExitCode::from(2)
}
