//! setpoint-client's watch against three real members: the member serving the watch is
//! kill -9'd (twice) while writes go on; the watcher resumes on another member from its last
//! revision and delivers every change exactly once, in order — the same stream a fresh watch
//! from the start gives afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{setpoint_bin, Cluster};
use setpoint_client::proto::etcdserverpb::{PutRequest, RangeRequest};
use setpoint_client::{prefix_range_end, Client, ConnectOptions, WatchOptions};

/// (revision, key, value) of each event.
type Change = (i64, String, String);

async fn collect_until(
    watcher: &mut setpoint_client::Watcher,
    out: &mut Vec<Change>,
    until_rev: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.last().map_or(0, |c| c.0) < until_rev {
        assert!(Instant::now() < deadline, "watch stuck at {:?}", out.last());
        let batch = tokio::time::timeout(Duration::from_secs(30), watcher.next())
            .await
            .expect("a batch within 30 s")
            .expect("watch keeps going across failures")
            .expect("watch not ended");
        for e in batch.events {
            let kv = e.kv.expect("kv");
            out.push((
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
            ));
        }
    }
}

#[test]
fn client_watch_resumes_on_another_member_without_loss_or_duplicates() {
    let mut cluster = Cluster::start(&setpoint_bin(), 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let writer = Client::connect(endpoints.clone(), ConnectOptions::default())
            .await
            .expect("writer");
        let watching = Client::connect(endpoints.clone(), ConnectOptions::default())
            .await
            .expect("watching client");
        let first = writer.put_kv("w/0", "0").await.expect("first put");
        let start = first.header.expect("header").revision;
        let from_start = WatchOptions::default()
            .with_prefix("w/")
            .with_start_revision(start);
        let mut watcher = watching
            .watch("w/", from_start.clone())
            .await
            .expect("watch");

        let mut seen = Vec::new();
        let mut acked = vec![(start, "w/0".to_string(), "0".to_string())];
        let mut killed: Vec<usize> = Vec::new();
        for i in 1..=150 {
            if i % 50 == 0 {
                // Kill the member the watcher is on; bring back the previous victim.
                if let Some(prev) = killed.last() {
                    cluster.members[*prev].start();
                }
                let victim = watcher.endpoint().expect("watcher is connected");
                println!("kill -9 member {victim} (serving the watch) at put {i}");
                cluster.members[victim].kill();
                killed.push(victim);
            }
            let (k, v) = (format!("w/{i}"), format!("{i}"));
            let req = PutRequest {
                key: k.clone().into_bytes(),
                value: v.clone().into_bytes(),
                ..Default::default()
            };
            // A write whose outcome is unknown is not retried; the watch shows what happened.
            if let Ok(r) = writer.put(req).await {
                acked.push((r.header.map_or(0, |h| h.revision), k, v));
            }
            if i % 10 == 0 {
                let last = acked.last().map_or(0, |c| c.0);
                collect_until(&mut watcher, &mut seen, last).await;
            }
        }
        // Up to the store's final revision: a put whose outcome the writer never learned may
        // still have been applied, and the watch must show it too.
        let last = loop {
            if let Ok(r) = writer
                .range(RangeRequest {
                    key: b"w/".to_vec(),
                    range_end: prefix_range_end(b"w/"),
                    count_only: true,
                    ..Default::default()
                })
                .await
            {
                break r.header.expect("header").revision;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        collect_until(&mut watcher, &mut seen, last).await;

        // Every change once, in order, nothing missing.
        let revs: Vec<i64> = seen.iter().map(|c| c.0).collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "in order, no duplicates: {revs:?}"
        );
        for a in &acked {
            assert!(seen.contains(a), "acknowledged {a:?} never delivered");
        }
        // And the same as a fresh watch from the start on a healthy member.
        let mut fresh = watching.watch("w/", from_start).await.expect("fresh watch");
        let mut replay = Vec::new();
        collect_until(&mut fresh, &mut replay, last).await;
        assert_eq!(seen, replay);
        assert!(
            acked.len() > 100,
            "only {} writes acknowledged",
            acked.len()
        );
        assert_eq!(killed.len(), 3);
        println!(
            "{} changes delivered once each across {} kills",
            seen.len(),
            killed.len()
        );
    });
}
