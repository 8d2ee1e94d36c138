//! The `setpoint` command line: bad or contradictory flags exit with status 1 and say why;
//! `--version` answers and exits 0; environment variables stand for flags.

mod common;

use std::process::Command;

use common::setpoint_bin;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(setpoint_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run setpoint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn version_prints_and_succeeds() {
    let (code, text) = run(&["--version"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn unknown_and_contradictory_flags_exit_1_with_a_reason() {
    let (code, text) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--no-such-flag"), "{text}");

    let (code, text) = run(
        &["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"],
        &[],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("couldn't find local name"), "{text}");

    let (code, text) = run(
        &["--heartbeat-interval", "300", "--election-timeout", "1000"],
        &[],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("5 times"), "{text}");
}

#[test]
fn environment_variables_stand_for_flags() {
    // ETCD_INITIAL_CLUSTER_STATE with a bad value must be read (and rejected) like the flag.
    let (code, text) = run(&[], &[("ETCD_INITIAL_CLUSTER_STATE", "sideways")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("sideways"), "{text}");
}
