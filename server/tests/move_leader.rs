//! `etcdctl move-leader` (Maintenance.MoveLeader) on three members of the real etcd and of
//! Setpoint: the same outcomes and messages, and leadership really moves.

mod common;

use std::path::Path;

use common::{etcd_bin, etcdctl, setpoint_bin, Cluster};
use setpoint_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use setpoint_proto::etcdserverpb::MoveLeaderRequest;

/// Member `i`'s id, from its own status.
fn member_id(cluster: &Cluster, i: usize) -> u64 {
    let out = etcdctl(
        &cluster.members[i].endpoint(),
        &["endpoint", "status", "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    v[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member id")
}

/// What `etcdctl move-leader` printed, with the members' ids and endpoints named by their role.
fn run(cluster: &Cluster, endpoints: &str, target: &str, names: &[(u64, &str, usize)]) -> String {
    let out = etcdctl(endpoints, &["move-leader", target]);
    let mut text = format!(
        "$ move-leader {target}\n{}{}[exit {}]\n",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("\"level\":\"warn\""))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        out.status.code().unwrap_or(-1)
    );
    for (id, name, member) in names {
        text = text.replace(&format!("{id:x}"), name);
        text = text.replace(
            &cluster.members[*member].endpoint(),
            &format!("{name}'s endpoint"),
        );
    }
    text
}

/// The session on three fresh members of `binary`.
async fn transcript(binary: &Path) -> String {
    let cluster = Cluster::start(binary, 3, &[]);
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    let (leader_id, follower_id) = (member_id(&cluster, leader), member_id(&cluster, follower));
    let names = [(leader_id, "OLD", leader), (follower_id, "NEW", follower)];
    let all = cluster.endpoints();
    let mut out = String::new();
    // To a member that is not one, and to the leader itself (nothing to move).
    out += &run(&cluster, &all, "1234", &names);
    out += &run(&cluster, &all, &format!("{leader_id:x}"), &names);
    // Asked only of a follower, etcdctl finds no leader to ask.
    let just_follower = cluster.members[follower].endpoint();
    out += &run(
        &cluster,
        &just_follower,
        &format!("{follower_id:x}"),
        &names,
    );
    // Sent to a follower directly.
    let mut client = MaintenanceClient::connect(cluster.members[follower].client_url())
        .await
        .expect("connect");
    let refused = client
        .move_leader(MoveLeaderRequest {
            target_id: follower_id,
        })
        .await
        .expect_err("a follower refuses");
    out += &format!(
        "direct to a follower: {:?} {}\n",
        refused.code(),
        refused.message()
    );
    // The move itself: the follower leads afterwards.
    out += &run(&cluster, &all, &format!("{follower_id:x}"), &names);
    let now = cluster.wait_leader();
    out += &format!(
        "leader afterwards: {}\n",
        if now == follower { "NEW" } else { "other" }
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_answers_and_moves_as_on_etcd() {
    let etcd = etcd_bin()
        .expect("the real etcd is needed for this comparison: install Debian's etcd-server");
    let ours = transcript(&setpoint_bin()).await;
    let theirs = transcript(&etcd).await;
    assert_eq!(
        ours, theirs,
        "\n--- Setpoint ---\n{ours}\n--- etcd ---\n{theirs}"
    );
    assert!(
        ours.contains("Leadership transferred from OLD to NEW"),
        "{ours}"
    );
    assert!(ours.contains("leader afterwards: NEW"), "{ours}");
}
