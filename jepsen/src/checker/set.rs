//! The set checker: a cheap durability check. Clients add unique elements to a set; at the
//! end every member reads the whole set. Every acknowledged add must be in every final
//! read (otherwise it was lost), no final read may hold an element that was never added or
//! whose add certainly failed, and all members must return the same set. Adds whose outcome
//! is unknown may go either way; those present are counted as recovered.
//!
//! It says nothing about when an element became visible or in what order — only about the
//! state the cluster settled in — and it does not take the final reads itself; the set
//! workload does that once every fault is healed.

use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

pub use super::append::Outcome;
pub use super::linearizable::Validity;

/// One add as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    /// The caller's name for the add (the history index of its invocation).
    pub id: usize,
    pub value: i64,
    pub outcome: Outcome,
}

/// How many values each list in a report shows.
pub const MAX_SHOWN: usize = 20;

/// How one member's final read differs from member 0's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub member: usize,
    /// How many values member 0 has and this member lacks, and the first few of them.
    pub missing: usize,
    pub missing_values: Vec<i64>,
    /// How many values this member has and member 0 lacks, and the first few of them.
    pub extra: usize,
    pub extra_values: Vec<i64>,
}

/// The verdict on a set history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Valid iff nothing was lost or unexpected and the members agree; unknown when there
    /// is no final read to check against.
    pub valid: Validity,
    /// Distinct values whose add was attempted.
    pub attempted: usize,
    /// Distinct values some add of which was acknowledged.
    pub acknowledged: usize,
    /// Acknowledged values missing from at least one final read.
    pub lost: usize,
    /// Values in some final read that were never added, or whose every add failed.
    pub unexpected: usize,
    /// Values whose adds had unknown outcomes (and none was acknowledged) that are present
    /// in some final read.
    pub recovered: usize,
    /// How many final reads were compared.
    pub members: usize,
    /// The smallest lost and unexpected values, at most [`MAX_SHOWN`] each.
    pub lost_values: Vec<i64>,
    pub unexpected_values: Vec<i64>,
    /// Members whose final read differs from member 0's (compared as sets).
    pub disagreements: Vec<Disagreement>,
}

/// Checks adds against the final read of the set on every member.
pub fn check(adds: &[Add], final_reads: &[Vec<i64>]) -> Report {
    // A value's best outcome: acknowledged beats unknown beats failed.
    let rank = |o: Outcome| match o {
        Outcome::Ok => 2,
        Outcome::Info => 1,
        Outcome::Fail => 0,
    };
    let mut best: HashMap<i64, Outcome> = HashMap::new();
    for a in adds {
        best.entry(a.value)
            .and_modify(|o| {
                if rank(a.outcome) > rank(*o) {
                    *o = a.outcome;
                }
            })
            .or_insert(a.outcome);
    }

    let reads: Vec<BTreeSet<i64>> = final_reads
        .iter()
        .map(|r| r.iter().copied().collect())
        .collect();
    let union: BTreeSet<i64> = reads.iter().flatten().copied().collect();

    let acknowledged: BTreeSet<i64> = best
        .iter()
        .filter(|(_, &o)| o == Outcome::Ok)
        .map(|(&v, _)| v)
        .collect();
    let lost: Vec<i64> = acknowledged
        .iter()
        .copied()
        .filter(|v| reads.iter().any(|r| !r.contains(v)))
        .collect();
    let unexpected: Vec<i64> = union
        .iter()
        .copied()
        .filter(|v| matches!(best.get(v), None | Some(Outcome::Fail)))
        .collect();
    let recovered = union
        .iter()
        .filter(|v| best.get(v) == Some(&Outcome::Info))
        .count();

    let disagreements: Vec<Disagreement> = match reads.split_first() {
        None => Vec::new(),
        Some((first, rest)) => rest
            .iter()
            .enumerate()
            .filter(|(_, r)| *r != first)
            .map(|(i, r)| {
                let missing: Vec<i64> = first.difference(r).copied().collect();
                let extra: Vec<i64> = r.difference(first).copied().collect();
                Disagreement {
                    member: i + 1,
                    missing: missing.len(),
                    missing_values: missing.into_iter().take(MAX_SHOWN).collect(),
                    extra: extra.len(),
                    extra_values: extra.into_iter().take(MAX_SHOWN).collect(),
                }
            })
            .collect(),
    };

    let valid = if final_reads.is_empty() {
        Validity::Unknown
    } else if lost.is_empty() && unexpected.is_empty() && disagreements.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Report {
        valid,
        attempted: best.len(),
        acknowledged: acknowledged.len(),
        lost: lost.len(),
        unexpected: unexpected.len(),
        recovered,
        members: final_reads.len(),
        lost_values: lost.into_iter().take(MAX_SHOWN).collect(),
        unexpected_values: unexpected.into_iter().take(MAX_SHOWN).collect(),
        disagreements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: usize, value: i64, outcome: Outcome) -> Add {
        Add { id, value, outcome }
    }

    /// Adds of 0..n: multiples of 5 unknown, of 7 failed (35 is unknown), the rest ok.
    fn adds(n: i64) -> Vec<Add> {
        (0..n)
            .map(|v| {
                let outcome = if v % 5 == 0 {
                    Outcome::Info
                } else if v % 7 == 0 {
                    Outcome::Fail
                } else {
                    Outcome::Ok
                };
                add(v as usize, v, outcome)
            })
            .collect()
    }

    /// The acknowledged values plus the unknown ones for which `keep` says so.
    fn survivors(adds: &[Add], keep: impl Fn(i64) -> bool) -> Vec<i64> {
        adds.iter()
            .filter(|a| match a.outcome {
                Outcome::Ok => true,
                Outcome::Info => keep(a.value),
                Outcome::Fail => false,
            })
            .map(|a| a.value)
            .collect()
    }

    #[test]
    fn every_acknowledged_add_present_everywhere_is_valid() {
        let adds = adds(100);
        let read = survivors(&adds, |_| false);
        let r = check(&adds, &[read.clone(), read.clone(), read]);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!((r.attempted, r.members, r.recovered), (100, 3, 0));
        // 20 unknown; 12 failed (7, 14, ..., 98 but for 35 and 70).
        assert_eq!(r.acknowledged, 100 - 20 - 12);
        assert_eq!((r.lost, r.unexpected), (0, 0));
        assert!(r.disagreements.is_empty());
    }

    #[test]
    fn unknown_adds_may_be_present_and_count_as_recovered() {
        let adds = adds(100);
        let mut read = survivors(&adds, |v| v % 10 == 0);
        read.reverse(); // order does not matter
        let r = check(&adds, &[read.clone(), read]);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!(r.recovered, 10);
    }

    #[test]
    fn a_missing_acknowledged_add_is_lost() {
        let adds = adds(100);
        let full = survivors(&adds, |_| false);
        let short: Vec<i64> = full.iter().copied().filter(|&v| v != 43).collect();
        let r = check(&adds, &[short.clone(), short]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.lost, r.lost_values.clone()), (1, vec![43]));
        // Lost on one member only: lost, and the members disagree.
        let short: Vec<i64> = full.iter().copied().filter(|&v| v != 43).collect();
        let r = check(&adds, &[full, short]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.lost_values, vec![43]);
        assert_eq!(r.disagreements.len(), 1);
        assert_eq!(r.disagreements[0].missing_values, vec![43]);
    }

    #[test]
    fn values_never_added_or_failed_are_unexpected() {
        let adds = adds(100);
        let mut read = survivors(&adds, |_| false);
        read.push(1_000);
        let r = check(&adds, std::slice::from_ref(&read));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.unexpected_values, vec![1_000]);
        read.pop();
        read.push(14); // its add failed
        let r = check(&adds, &[read]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.unexpected, r.unexpected_values), (1, vec![14]));
    }

    #[test]
    fn members_that_disagree_are_invalid() {
        let adds = adds(100);
        let a = survivors(&adds, |_| false);
        let mut b = a.clone();
        b.push(10); // an unknown add only member 2 has: nothing lost, nothing unexpected
        let r = check(&adds, &[a.clone(), a, b]);
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert_eq!((r.lost, r.unexpected, r.recovered), (0, 0, 1));
        assert_eq!(
            r.disagreements,
            vec![Disagreement {
                member: 2,
                missing: 0,
                missing_values: vec![],
                extra: 1,
                extra_values: vec![10],
            }]
        );
    }

    #[test]
    fn long_lists_are_capped_but_counted() {
        let adds: Vec<Add> = (0..100).map(|v| add(v as usize, v, Outcome::Ok)).collect();
        let read: Vec<i64> = (1_000..1_050).collect();
        let r = check(&adds, &[read]);
        assert_eq!((r.lost, r.unexpected), (100, 50));
        assert_eq!(r.lost_values, (0..20).collect::<Vec<_>>());
        assert_eq!(r.unexpected_values.len(), MAX_SHOWN);
    }

    #[test]
    fn a_value_acknowledged_once_must_survive_even_if_retried() {
        let adds = vec![add(0, 5, Outcome::Info), add(1, 5, Outcome::Ok)];
        let r = check(&adds, &[vec![]]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.attempted, r.acknowledged, r.lost), (1, 1, 1));
    }

    #[test]
    fn no_final_read_is_unknown_and_serializes_as_jepsen_does() {
        let adds = adds(10);
        let r = check(&adds, &[]);
        assert_eq!(r.valid, Validity::Unknown);
        let j = serde_json::to_value(&r).expect("json");
        assert_eq!(j["valid"], serde_json::json!("unknown"));
        let read = survivors(&adds, |_| true);
        let j = serde_json::to_value(check(&adds, &[read])).expect("json");
        assert_eq!(j["valid"], serde_json::json!(true));
        assert_eq!(j["recovered"], 2);
        let j = serde_json::to_value(check(&adds, &[vec![]])).expect("json");
        assert_eq!(j["valid"], serde_json::json!(false));
        assert_eq!(j["lost_values"], serde_json::json!([1, 2, 3, 4, 6, 8, 9]));
    }
}
