//! What the list-append checker reports: the kinds of anomaly, the counterexample each
//! carries (the transactions involved, excerpts of their reads, the dependency steps of a
//! cycle) and the report as a whole. Serialized as they are into results.json and shown by
//! the HTML report; finding anomalies is the parent's and `dependencies`' work.

use serde::Serialize;
use std::collections::BTreeMap;

use super::{Mop, Outcome, Txn, Validity, SHOWN};

/// The kinds of anomaly the checker reports, named as Elle names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// A cycle of write-write dependencies.
    #[serde(rename = "G0")]
    G0,
    #[serde(rename = "G0-realtime")]
    G0Realtime,
    /// A read saw an element appended by a transaction that failed.
    #[serde(rename = "G1a")]
    G1a,
    /// A read's last element was not the writer's final append to the key.
    #[serde(rename = "G1b")]
    G1b,
    /// A cycle of write-write and write-read dependencies.
    #[serde(rename = "G1c")]
    G1c,
    #[serde(rename = "G1c-realtime")]
    G1cRealtime,
    /// A cycle with exactly one anti-dependency.
    #[serde(rename = "G-single")]
    GSingle,
    #[serde(rename = "G-single-realtime")]
    GSingleRealtime,
    /// A cycle with more than one anti-dependency.
    #[serde(rename = "G2")]
    G2,
    #[serde(rename = "G2-realtime")]
    G2Realtime,
    /// A read of a key is not a prefix of the longest read of that key.
    #[serde(rename = "incompatible-order")]
    IncompatibleOrder,
    /// A read holds the same element twice.
    #[serde(rename = "duplicate-elements")]
    DuplicateElements,
    /// A read holds an element no transaction appended.
    #[serde(rename = "garbage-read")]
    GarbageRead,
    /// A transaction's read disagrees with its own earlier reads and appends.
    #[serde(rename = "internal")]
    Internal,
    /// The history appends the same element to a key twice, which the checker relies on
    /// never happening; the verdict is then at best unknown.
    #[serde(rename = "duplicate-appends")]
    DuplicateAppends,
}

impl Kind {
    pub fn is_cycle(self) -> bool {
        matches!(
            self,
            Kind::G0
                | Kind::G0Realtime
                | Kind::G1c
                | Kind::G1cRealtime
                | Kind::GSingle
                | Kind::GSingleRealtime
                | Kind::G2
                | Kind::G2Realtime
        )
    }
}

/// Part of a list: `values` is `list[from..from + values.len()]` of a list of `len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    pub len: usize,
    pub from: usize,
    pub values: Vec<i64>,
}

/// A micro-operation as a report shows it: reads are cut to their tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum MopSummary {
    Append {
        key: String,
        value: i64,
    },
    #[serde(rename = "r")]
    Read {
        key: String,
        values: Option<Excerpt>,
    },
}

/// A transaction as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnSummary {
    pub id: usize,
    pub process: u64,
    pub outcome: Outcome,
    pub invoke: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<u64>,
    pub mops: Vec<MopSummary>,
}

/// One read of a key, cut to the neighbourhood of interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadSummary {
    pub txn: usize,
    pub process: u64,
    pub values: Excerpt,
}

/// Why one transaction must precede another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Dependency {
    /// `to` appended `appended` to `key` right after `from`'s `after` (among the
    /// transactions in the graph).
    Ww {
        key: String,
        after: i64,
        appended: i64,
    },
    /// `to` read `key` up to `value`, which `from` appended.
    Wr { key: String, value: i64 },
    /// `from` read `key` up to `read_up_to` (`None`: empty) and so did not see `appended`,
    /// which `to` appended later in the key's order.
    Rw {
        key: String,
        read_up_to: Option<i64>,
        appended: i64,
    },
    /// `from` completed before `to` was invoked.
    Realtime { completed: u64, invoked: u64 },
}

/// One edge of a cycle: `from` and `to` are transaction ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    #[serde(flatten)]
    pub dependency: Dependency,
}

/// What a transaction's read should have returned, given its own earlier mops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// Its earlier read of the key followed by its appends since.
    Exactly(Excerpt),
    /// Something ending with its appends so far (it had not read the key before).
    EndsWith(Vec<i64>),
}

/// A minimal counterexample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// A dependency cycle: `steps[i]` leads from `txns[i]` to the next, the last back to
    /// the first.
    Cycle {
        txns: Vec<TxnSummary>,
        steps: Vec<Step>,
    },
    /// One element a read should not have held (G1a, G1b, garbage, duplicate). `reader` is
    /// one transaction that read it; `writer` the one that appended it, if any.
    Element {
        key: String,
        value: i64,
        reader: TxnSummary,
        #[serde(skip_serializing_if = "Option::is_none")]
        writer: Option<TxnSummary>,
    },
    /// A read that is not a prefix of the longest read of its key; both cut around the
    /// first index where they differ.
    Orders {
        key: String,
        diverge_at: usize,
        longest: ReadSummary,
        other: ReadSummary,
    },
    /// The `mop`th micro-operation of `txn` read something its own earlier ones rule out.
    Internal {
        txn: TxnSummary,
        key: String,
        mop: usize,
        expected: Expected,
        read: Excerpt,
    },
    /// The same element appended to a key by more than one micro-operation.
    Appends {
        key: String,
        value: i64,
        txns: Vec<TxnSummary>,
    },
}

/// One anomaly: its kind and a counterexample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub kind: Kind,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: Validity,
    pub txns: usize,
    pub ok: usize,
    pub info: usize,
    pub fail: usize,
    pub keys: usize,
    /// The kinds found, in order.
    pub anomaly_types: Vec<Kind>,
    /// How many of each kind were found (for cycles: how many strongly connected
    /// components of the dependency graph yielded a cycle of that kind).
    pub anomaly_counts: BTreeMap<Kind, usize>,
    /// At most [`MAX_REPORTED`] of each kind.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn has(&self, kind: Kind) -> bool {
        self.anomaly_counts.contains_key(&kind)
    }

    /// The reported anomalies of one kind.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Anomaly> {
        self.anomalies.iter().filter(move |a| a.kind == kind)
    }
}

/// The first index where two lists differ (the shorter's length if one is a prefix).
pub(super) fn diverge(a: &[i64], b: &[i64]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

pub(super) fn excerpt(values: &[i64], from: usize, max: usize) -> Excerpt {
    let from = from.min(values.len());
    let to = values.len().min(from + max);
    Excerpt {
        len: values.len(),
        from,
        values: values[from..to].to_vec(),
    }
}

pub(super) fn tail(values: &[i64], max: usize) -> Excerpt {
    excerpt(values, values.len().saturating_sub(max), max)
}

pub(super) fn read_summary(txn: &Txn, values: &[i64], at: usize) -> ReadSummary {
    ReadSummary {
        txn: txn.id,
        process: txn.process,
        values: excerpt(values, at.saturating_sub(2), SHOWN),
    }
}

pub(super) fn summary(t: &Txn) -> TxnSummary {
    TxnSummary {
        id: t.id,
        process: t.process,
        outcome: t.outcome,
        invoke: t.invoke,
        complete: t.complete,
        mops: t
            .mops
            .iter()
            .map(|m| match m {
                Mop::Append { key, value } => MopSummary::Append {
                    key: key.clone(),
                    value: *value,
                },
                Mop::Read { key, values } => MopSummary::Read {
                    key: key.clone(),
                    values: values.as_deref().map(|v| tail(v, SHOWN)),
                },
            })
            .collect(),
    }
}
