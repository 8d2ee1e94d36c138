//! Writes sent to a follower go to the leader over one stream, many per message
//! (`raft::forward`). Against three real members: concurrent writes through a follower, sent in
//! waves, each get their own answer — their own previous value, their own revision, their own error — in
//! fewer messages than writes; a steady load of many clients through followers is answered in
//! full; and once the leader is killed, the follower's writes end
//! instead of hanging and then go through again.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{free_port, metric, setpoint_bin, Cluster};
use setpoint_client::proto::etcdserverpb::PutRequest;
use setpoint_client::{Client, ConnectOptions};

const WRITES: usize = 400;

/// Three members, each serving metrics; their metrics ports.
fn cluster_with_metrics() -> (Cluster, Vec<u16>) {
    let mut cluster = Cluster::new(&setpoint_bin(), 3, &[]);
    let mut ports = Vec::new();
    for m in &mut cluster.members {
        let port = free_port();
        m.extra.push("--listen-metrics-urls".into());
        m.extra.push(format!("http://127.0.0.1:{port}"));
        ports.push(port);
        m.start();
    }
    for i in 0..3 {
        cluster.wait_ready(i);
    }
    (cluster, ports)
}

async fn client_of(cluster: &Cluster, member: usize) -> Client {
    Client::connect(
        vec![cluster.members[member].client_url()],
        ConnectOptions::default(),
    )
    .await
    .expect("connect")
}

#[test]
fn concurrent_writes_through_a_follower_each_get_their_own_answer() {
    let (cluster, metrics_ports) = cluster_with_metrics();
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let to_leader = client_of(&cluster, leader).await;
        for i in 0..WRITES {
            to_leader
                .put_kv(format!("k{i:03}"), format!("old{i}"))
                .await
                .expect("seed through the leader");
        }
        let follower_port = metrics_ports[follower];
        let writes_before = metric(follower_port, "setpoint_forwarded_writes_total");
        let messages_before = metric(follower_port, "setpoint_forward_messages_total");

        // Every tenth write names a lease that does not exist: the leader refuses it, and
        // only that write may see the refusal.
        let to_follower = client_of(&cluster, follower).await;
        let writes = (0..WRITES).map(|i| {
            let client = to_follower.clone();
            async move {
                // In waves, 10 writes a millisecond: some arrive while others are proposed.
                tokio::time::sleep(Duration::from_millis((i / 10) as u64)).await;
                let lease = if i % 10 == 0 { 7_777_777 } else { 0 };
                let reply = client
                    .put(PutRequest {
                        key: format!("k{i:03}").into_bytes(),
                        value: format!("new{i}").into_bytes(),
                        lease,
                        prev_kv: true,
                        ..Default::default()
                    })
                    .await;
                (i, reply)
            }
        });
        let replies = futures::future::join_all(writes).await;

        let mut revisions = HashSet::new();
        for (i, reply) in replies {
            if i % 10 == 0 {
                let e = reply.expect_err("a put with a missing lease must fail");
                assert_eq!(e.code(), Some(tonic::Code::NotFound), "write {i}: {e}");
                assert_eq!(
                    e.message(),
                    Some("etcdserver: requested lease not found"),
                    "write {i}"
                );
                continue;
            }
            let reply = reply.unwrap_or_else(|e| panic!("write {i} through the follower: {e}"));
            let prev = reply
                .prev_kv
                .unwrap_or_else(|| panic!("write {i}: no prev_kv"));
            assert_eq!(
                (prev.key, prev.value),
                (
                    format!("k{i:03}").into_bytes(),
                    format!("old{i}").into_bytes()
                ),
                "write {i} got another write's previous value"
            );
            let revision = reply.header.expect("header").revision;
            assert!(
                revisions.insert(revision),
                "write {i} answered with revision {revision}, already another write's"
            );
        }
        assert_eq!(revisions.len(), WRITES - WRITES / 10);

        for i in (0..WRITES).step_by(7) {
            let kv = to_leader
                .get(format!("k{i:03}"))
                .await
                .expect("read back")
                .expect("key present");
            let want = if i % 10 == 0 { "old" } else { "new" };
            assert_eq!(kv.value, format!("{want}{i}").into_bytes(), "key k{i:03}");
        }

        let writes = metric(follower_port, "setpoint_forwarded_writes_total") - writes_before;
        let messages = metric(follower_port, "setpoint_forward_messages_total") - messages_before;
        assert_eq!(writes, WRITES as i64, "every write was forwarded once");
        assert!(
            messages < writes,
            "{writes} concurrent writes went in {messages} messages: none shared one"
        );
    });
}

#[test]
fn a_steady_load_through_the_followers_is_answered_in_full() {
    let cluster = Cluster::start(&setpoint_bin(), 3, &[]);
    let leader = cluster.wait_leader();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let followers = [
            client_of(&cluster, (leader + 1) % 3).await,
            client_of(&cluster, (leader + 2) % 3).await,
        ];
        // 60 clients, each one write at a time, as a load generator sends them. A write the
        // leader's answer never reaches fails on the client's 5 s request timeout.
        let clients = (0..60).map(|c| {
            let client = followers[c % 2].clone();
            async move {
                for i in 0..25 {
                    client
                        .put_kv(format!("steady/{c}/{i}"), "v")
                        .await
                        .unwrap_or_else(|e| panic!("client {c}, write {i}: {e}"));
                }
            }
        });
        futures::future::join_all(clients).await;
        let all = followers[0]
            .range(setpoint_client::proto::etcdserverpb::RangeRequest {
                key: b"steady/".to_vec(),
                range_end: b"steady0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("count");
        assert_eq!(all.count, 60 * 25);
    });
}

#[test]
fn forwarded_writes_end_when_the_leader_dies_and_resume_with_the_next() {
    let mut cluster = Cluster::start(&setpoint_bin(), 3, &[]);
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let to_follower = client_of(&cluster, follower).await;
        to_follower
            .put_kv("before", "1")
            .await
            .expect("a write through the follower on a healthy cluster");

        cluster.members[leader].kill();
        // Writes sent now wait on a stream to a dead leader: each must end, one way or the
        // other, well inside the bound.
        let writes = (0..20).map(|i| {
            let client = to_follower.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    client.put_kv(format!("during{i}"), "x"),
                )
                .await
            }
        });
        for (i, ended) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            assert!(ended.is_ok(), "write {i} still waiting after 30 s");
        }

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match to_follower.put_kv("after", "2").await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "writes never resumed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let kv = to_follower
            .get("after")
            .await
            .expect("read after the election")
            .expect("key present");
        assert_eq!((kv.value, kv.version), (b"2".to_vec(), 1));
    });
}
