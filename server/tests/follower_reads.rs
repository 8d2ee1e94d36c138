//! A follower's linearizable read asks the leader for a read index, and the leader confirms it
//! still leads with a round of messages to the members; that round must be sent for the read,
//! not ride on the next heartbeat. Three real members run with a heartbeat of 2 s: were reads
//! to wait for heartbeats they would take up to 2 s each, and reads through a follower with a
//! 1 s command timeout would fail. (How fast follower reads are under load is a benchmark's
//! business: `setpoint-bench compare`'s `range-l-100c`.)

mod common;

use common::{etcdctl, setpoint_bin, Cluster};

#[test]
fn follower_linearizable_reads_do_not_wait_for_heartbeats() {
    let cluster = Cluster::start(
        &setpoint_bin(),
        3,
        &["--heartbeat-interval=2000", "--election-timeout=10000"],
    );
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    let ep = cluster.members[follower].endpoint();
    let put = etcdctl(&cluster.members[leader].endpoint(), &["put", "k", "v1"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let mut failed = Vec::new();
    for i in 0..10 {
        let out = etcdctl(
            &ep,
            &[
                "get",
                "k",
                "--print-value-only",
                "--consistency=l",
                "--command-timeout=1s",
            ],
        );
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || value != "v1" {
            failed.push(format!(
                "read {i}: {value:?} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "follower reads slower than the 1 s timeout (waiting for 2 s heartbeats?): {failed:?}"
    );
}
