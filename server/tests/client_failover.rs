//! setpoint-client against three real members: when the member it talks to is killed, reads
//! go on through another member, and writes go on once the client has moved — without a
//! write being sent twice.

mod common;

use std::time::{Duration, Instant};

use common::{setpoint_bin, Cluster};
use setpoint_client::{Client, ConnectOptions};

#[test]
fn client_fails_over_to_a_live_member() {
    let mut cluster = Cluster::start(&setpoint_bin(), 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = Client::connect(endpoints, ConnectOptions::default())
            .await
            .expect("connect");
        client
            .put_kv("before", "1")
            .await
            .expect("put on a healthy cluster");
        let victim = client.current_endpoint();
        cluster.members[victim].kill();

        // Reads are safe to retry: the first one already succeeds through another member.
        let got = client.get("before").await.expect("read fails over");
        assert_eq!(got.map(|kv| kv.value), Some(b"1".to_vec()));
        assert_ne!(
            client.current_endpoint(),
            victim,
            "the client moved off the dead member"
        );

        // Writes: the client never resends one whose fate is unknown, so allow a bounded
        // number of attempts and check that the value landed exactly as written.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.put_kv("after", "2").await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "writes never resumed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let got = client.get("after").await.expect("read after failover");
        assert_eq!(
            got.map(|kv| (kv.value, kv.version)),
            Some((b"2".to_vec(), 1))
        );
    });
}
