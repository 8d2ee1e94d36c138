//! The ground truth: every member's revision history, followed for the whole run by one
//! watch per member over all keys from revision 1 (resumed on the same member after every
//! fault), so compaction during the run never takes history a checker needs. At the end
//! each follower is brought up to the final revision; the members must agree, the history
//! must be gap-free, and every acknowledged write must be in it at the revision its response
//! named.
//!
//! It collects and checks the history itself; what watchers saw is `checker::watch`'s.

use crate::checker::watch::{agreed_truth, Change, Keys};
use crate::cluster::{lock, Cluster};
use crate::workload::watch::{RawWatch, StreamEnd};
use crate::workload::AckedWrite;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One member's history as followed so far.
#[derive(Default)]
pub struct Follower {
    pub changes: Mutex<Vec<Change>>,
    /// The last revision received (0 before any).
    pub last: AtomicI64,
}

/// Follows member `member`'s history until aborted.
pub async fn follow(cluster: Arc<Cluster>, member: usize, into: Arc<Follower>) {
    let all = Keys::From(vec![0]);
    loop {
        let next = into.last.load(Ordering::SeqCst) + 1;
        let stream = match cluster.client(member, Duration::from_secs(3)).await {
            Ok(c) => RawWatch::open(&c, &all, next, false, Duration::from_secs(3)).await,
            Err(e) => Err(StreamEnd::Broken(e.to_string())),
        };
        match stream {
            Ok(mut s) => {
                while let Ok((changes, _)) = s.next().await {
                    if let Some(last) = changes.last() {
                        into.last.store(last.revision, Ordering::SeqCst);
                    }
                    lock(&into.changes).extend(changes);
                }
            }
            Err(StreamEnd::Compacted(r)) => {
                // Only a nemesis that ignores `safe_compact` can do this; the gap is
                // reported by the check, so keep following from what is left.
                tracing::warn!("member {member}: history compacted to {r} under the follower");
                into.last.store(r - 1, Ordering::SeqCst);
            }
            Err(StreamEnd::Broken(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The highest revision a compaction may keep from: every follower has received all below.
pub fn safe_compact(followers: &[Arc<Follower>]) -> i64 {
    followers
        .iter()
        .map(|f| f.last.load(Ordering::SeqCst) + 1)
        .min()
        .unwrap_or(0)
}

/// Waits (bounded) until every follower has reached `revision`; false if one did not.
pub async fn wait_for(followers: &[Arc<Follower>], revision: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if followers
            .iter()
            .all(|f| f.last.load(Ordering::SeqCst) >= revision)
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The revision-history checker's verdict.
#[derive(Debug, Serialize)]
pub struct Report {
    pub valid: bool,
    /// Changes after the final revision (late commits of unknown-outcome writes), ignored.
    pub beyond_final: usize,
    pub revisions: i64,
    pub changes: usize,
    pub acknowledged_writes: usize,
    /// Why it is invalid, first problem first.
    pub errors: Vec<String>,
}

/// Checks the followed histories: the members agree, revisions are consecutive from the
/// first one, and every acknowledged write is there. Returns the agreed history.
pub fn check(
    histories: &[Vec<Change>],
    final_revision: i64,
    acked: &[AckedWrite],
) -> (Report, Vec<Change>) {
    let mut errors = Vec::new();
    // A write whose outcome was unknown may commit after the final read: not part of the run.
    let beyond_final = histories
        .iter()
        .map(|h| h.iter().filter(|c| c.revision > final_revision).count())
        .max()
        .unwrap_or(0);
    let histories: Vec<Vec<Change>> = histories
        .iter()
        .map(|h| {
            h.iter()
                .filter(|c| c.revision <= final_revision)
                .cloned()
                .collect()
        })
        .collect();
    let truth: Vec<Change> = match agreed_truth(&histories) {
        Ok(t) => t.to_vec(),
        Err(a) => {
            errors.push(format!("members disagree: {a:?}"));
            histories.first().cloned().unwrap_or_default()
        }
    };
    let mut prev: Option<i64> = None;
    for c in &truth {
        if let Some(p) = prev {
            if c.revision != p && c.revision != p + 1 {
                errors.push(format!("gap: revision {} follows {}", c.revision, p));
                break;
            }
        }
        prev = Some(c.revision);
    }
    if let Some(p) = prev {
        if p != final_revision {
            errors.push(format!(
                "history ends at revision {p}, the final revision is {final_revision}"
            ));
        }
    }
    // Every value written in a run is unique: the same put twice is a write applied twice.
    let mut seen: HashMap<(&[u8], &[u8]), i64> = HashMap::new();
    for c in &truth {
        if let Some(v) = &c.value {
            if let Some(first) = seen.insert((c.key.as_slice(), v.as_slice()), c.revision) {
                errors.push(format!(
                    "{}={} written twice, at revisions {first} and {}",
                    String::from_utf8_lossy(&c.key),
                    String::from_utf8_lossy(v),
                    c.revision
                ));
                break;
            }
        }
    }
    let index: HashMap<(i64, &[u8]), &Change> = truth
        .iter()
        .map(|c| ((c.revision, c.key.as_slice()), c))
        .collect();
    let mut missing = 0;
    for w in acked {
        match index.get(&(w.revision, w.key.as_slice())) {
            Some(c) if c.value == w.value => {}
            found => {
                missing += 1;
                if missing <= 10 {
                    errors.push(format!(
                        "acknowledged write of {} at revision {} ({}) not in the history (found: {})",
                        String::from_utf8_lossy(&w.key),
                        w.revision,
                        w.value
                            .as_ref()
                            .map(|v| String::from_utf8_lossy(v).to_string())
                            .unwrap_or_else(|| "delete".into()),
                        found
                            .map(|c| format!("{c:?}"))
                            .unwrap_or_else(|| "nothing".into())
                    ));
                }
            }
        }
    }
    if missing > 10 {
        errors.push(format!("... {missing} acknowledged writes missing in all"));
    }
    let report = Report {
        valid: errors.is_empty(),
        beyond_final,
        revisions: prev.unwrap_or(0),
        changes: truth.len(),
        acknowledged_writes: acked.len(),
        errors,
    };
    (report, truth)
}

/// The key space the history leaves behind: replaying every put and delete.
pub fn replay(truth: &[Change]) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = std::collections::BTreeMap::new();
    for c in truth {
        match &c.value {
            Some(v) => state.insert(c.key.clone(), v.clone()),
            None => state.remove(&c.key),
        };
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: &str, v: &str) -> Change {
        Change {
            revision: rev,
            key: key.as_bytes().to_vec(),
            value: Some(v.as_bytes().to_vec()),
        }
    }

    fn ack(rev: i64, key: &str, v: &str) -> AckedWrite {
        AckedWrite {
            revision: rev,
            key: key.as_bytes().to_vec(),
            value: Some(v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn agreed_gap_free_history_with_every_acknowledged_write_is_valid() {
        let h = vec![
            put(2, "a", "1"),
            put(3, "b", "2"),
            put(3, "c", "2"),
            put(4, "a", "3"),
        ];
        let (r, truth) = check(
            &[h.clone(), h.clone()],
            4,
            &[ack(2, "a", "1"), ack(4, "a", "3")],
        );
        assert!(r.valid, "{:?}", r.errors);
        assert_eq!(truth, h);
    }

    #[test]
    fn a_write_applied_twice_is_invalid_and_late_commits_are_cut() {
        let h = vec![put(2, "a", "1"), put(3, "b", "2"), put(4, "a", "1")];
        let (r, _) = check(&[h.clone(), h], 4, &[]);
        assert!(r.errors[0].contains("written twice"), "{:?}", r.errors);
        let h = vec![put(2, "a", "1"), put(3, "a", "2")];
        let (r, truth) = check(&[h.clone(), h[..1].to_vec()], 2, &[]);
        assert!(r.valid, "{:?}", r.errors);
        assert_eq!((r.beyond_final, truth.len()), (1, 1));
        let state = replay(&[
            put(2, "a", "1"),
            put(3, "b", "2"),
            Change {
                revision: 4,
                key: b"a".to_vec(),
                value: None,
            },
        ]);
        assert_eq!(
            state.into_iter().collect::<Vec<_>>(),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_invalid() {
        let h = vec![put(2, "a", "1"), put(3, "a", "2")];
        let (r, _) = check(&[h.clone(), h], 3, &[ack(3, "a", "9")]);
        assert!(!r.valid);
        assert!(r.errors[0].contains("not in the history"), "{:?}", r.errors);
    }

    #[test]
    fn gaps_short_histories_and_disagreement_are_invalid() {
        let h = vec![put(2, "a", "1"), put(4, "a", "2")];
        let (r, _) = check(std::slice::from_ref(&h), 4, &[]);
        assert!(r.errors[0].contains("gap"), "{:?}", r.errors);
        let h = vec![put(2, "a", "1")];
        let (r, _) = check(std::slice::from_ref(&h), 3, &[]);
        assert!(!r.valid);
        let other = vec![put(2, "a", "2")];
        let (r, _) = check(&[h, other], 2, &[]);
        assert!(r.errors[0].contains("disagree"), "{:?}", r.errors);
    }
}
