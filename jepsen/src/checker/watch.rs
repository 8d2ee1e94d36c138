//! The watch checker: every watcher's events must be exactly the slice of the revision
//! history it asked for — its key range, from its start revision up to where it stopped —
//! in order, without gaps, duplicates or foreign events, and with each revision's events
//! together. The history itself ("the truth") is what a watch from revision 1 returned on
//! every member at the end of a run, which must be the same everywhere.
//!
//! This module only compares; collecting the observations is the watch workload's job.

/// One change as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub key: Vec<u8>,
    /// The new value; `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// The keys a watcher asked for, in etcd's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    One(Vec<u8>),
    /// Every key from this one on (range end `"\0"`).
    From(Vec<u8>),
    /// `[start, end)`.
    Range(Vec<u8>, Vec<u8>),
}

impl Keys {
    pub fn covers(&self, key: &[u8]) -> bool {
        match self {
            Keys::One(k) => key == k.as_slice(),
            Keys::From(k) => key >= k.as_slice(),
            Keys::Range(k, end) => key >= k.as_slice() && key < end.as_slice(),
        }
    }
}

/// What one watcher asked for and got.
#[derive(Debug, Clone)]
pub struct Observation {
    pub keys: Keys,
    pub start_revision: i64,
    /// The highest revision the watcher is known to have been sent everything up to (a
    /// progress notification, or the run's final revision).
    pub complete_through: i64,
    pub changes: Vec<Change>,
}

/// Why an observation is not its slice of the truth, at the first place it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// The histories members returned differ (`member` vs member 0, first differing index).
    MembersDisagree { member: usize, index: usize },
    /// The same change delivered twice.
    Duplicate { index: usize, change: Change },
    /// A change arrived after a later revision.
    OutOfOrder { index: usize, change: Change },
    /// The watcher got a change the truth does not have in its slice.
    Unexpected { index: usize, change: Change },
    /// A change of the slice never arrived (or arrived after the first wrong one).
    Missing { index: usize, change: Change },
}

/// Checks that every member returned the same history; returns it.
pub fn agreed_truth(histories: &[Vec<Change>]) -> Result<&[Change], Anomaly> {
    let first = histories.first().map(Vec::as_slice).unwrap_or_default();
    for (member, h) in histories.iter().enumerate().skip(1) {
        if h.as_slice() != first {
            let index = first
                .iter()
                .zip(h.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(first.len().min(h.len()));
            return Err(Anomaly::MembersDisagree { member, index });
        }
    }
    Ok(first)
}

/// Checks one watcher against the truth.
pub fn check(truth: &[Change], obs: &Observation) -> Result<(), Anomaly> {
    let want: Vec<&Change> = truth
        .iter()
        .filter(|c| {
            c.revision >= obs.start_revision
                && c.revision <= obs.complete_through
                && obs.keys.covers(&c.key)
        })
        .collect();
    for (index, got) in obs.changes.iter().enumerate() {
        if obs.changes[..index].contains(got) {
            return Err(Anomaly::Duplicate {
                index,
                change: got.clone(),
            });
        }
        if index > 0 && got.revision < obs.changes[index - 1].revision {
            return Err(Anomaly::OutOfOrder {
                index,
                change: got.clone(),
            });
        }
        match want.get(index) {
            Some(w) if *w == got => {}
            Some(w) if want.contains(&got) || got.revision > w.revision => {
                return Err(Anomaly::Missing {
                    index,
                    change: (*w).clone(),
                })
            }
            _ if got.revision > obs.complete_through && index == want.len() => {
                // Past what the watcher was promised: allowed, not checked.
                return Ok(());
            }
            _ => {
                return Err(Anomaly::Unexpected {
                    index,
                    change: got.clone(),
                })
            }
        }
    }
    match want.get(obs.changes.len()) {
        Some(w) => Err(Anomaly::Missing {
            index: obs.changes.len(),
            change: (*w).clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: &str, value: &str) -> Change {
        Change {
            revision: rev,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    fn del(rev: i64, key: &str) -> Change {
        Change {
            revision: rev,
            key: key.into(),
            value: None,
        }
    }

    fn truth() -> Vec<Change> {
        vec![
            put(2, "a", "1"),
            put(3, "b", "1"),
            put(4, "a", "2"),
            del(4, "b"), // a txn: two changes at revision 4
            put(5, "c", "1"),
            del(6, "a"),
        ]
    }

    fn obs(keys: Keys, start: i64, changes: Vec<Change>) -> Observation {
        Observation {
            keys,
            start_revision: start,
            complete_through: 6,
            changes,
        }
    }

    fn all() -> Keys {
        Keys::From(b"\0".to_vec())
    }

    #[test]
    fn exact_slices_are_valid() {
        let t = truth();
        assert_eq!(check(&t, &obs(all(), 1, t.clone())), Ok(()));
        let a = vec![put(4, "a", "2"), del(6, "a")];
        assert_eq!(check(&t, &obs(Keys::One(b"a".to_vec()), 3, a)), Ok(()));
        let ab = vec![put(3, "b", "1"), put(4, "a", "2"), del(4, "b")];
        let range = Keys::Range(b"a".to_vec(), b"c".to_vec());
        let mut o = obs(range, 3, ab);
        o.complete_through = 4;
        assert_eq!(check(&t, &o), Ok(()));
    }

    #[test]
    fn a_gap_is_missing() {
        let t = truth();
        let mut seen = t.clone();
        seen.remove(2);
        assert_eq!(
            check(&t, &obs(all(), 1, seen)),
            Err(Anomaly::Missing {
                index: 2,
                change: put(4, "a", "2")
            })
        );
        // A watcher that stopped early is missing the rest.
        let short = t[..3].to_vec();
        assert!(matches!(
            check(&t, &obs(all(), 1, short)),
            Err(Anomaly::Missing { index: 3, .. })
        ));
    }

    #[test]
    fn duplicates_reorderings_and_foreign_events_are_caught() {
        let t = truth();
        let mut dup = t.clone();
        dup.insert(2, put(3, "b", "1"));
        assert!(matches!(
            check(&t, &obs(all(), 1, dup)),
            Err(Anomaly::Duplicate { index: 2, .. })
        ));
        // Two changes swapped: the first place it goes wrong is a change missing there.
        let mut swapped = t.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            check(&t, &obs(all(), 1, swapped)),
            Err(Anomaly::Missing { index: 1, .. })
        ));
        // A change from an earlier revision after a later one.
        let mut late = t[..5].to_vec();
        late.push(put(3, "x", "1"));
        assert!(matches!(
            check(&t, &obs(all(), 1, late)),
            Err(Anomaly::OutOfOrder { index: 5, .. })
        ));
        let foreign = vec![put(4, "a", "2"), put(5, "c", "1")];
        assert!(matches!(
            check(&t, &obs(Keys::One(b"a".to_vec()), 3, foreign)),
            Err(Anomaly::Unexpected { index: 1, .. })
        ));
        let wrong_value = vec![put(2, "a", "X")];
        let mut o = obs(Keys::One(b"a".to_vec()), 1, wrong_value);
        o.complete_through = 2;
        assert!(check(&t, &o).is_err());
    }

    #[test]
    fn members_must_agree_on_the_history() {
        let t = truth();
        assert_eq!(agreed_truth(&[t.clone(), t.clone()]), Ok(t.as_slice()));
        let mut other = t.clone();
        other[3] = del(4, "c");
        assert_eq!(
            agreed_truth(&[t.clone(), other]),
            Err(Anomaly::MembersDisagree {
                member: 1,
                index: 3
            })
        );
    }
}
