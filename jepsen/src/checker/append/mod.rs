//! The list-append checker: decides whether a history of transactions over append-only
//! lists is strictly serializable, in the manner of Elle (Kingsbury & Alvaro, "Elle:
//! Inferring Isolation Anomalies from Experimental Observations"). Every element is appended
//! to its key once and a read returns the whole list, so a read names exactly the version
//! it saw and the longest read of a key reveals that key's version order. From these the
//! checker infers which transaction must come before which — write-write (ww), write-read
//! (wr) and read-write anti-dependencies (rw) — adds real-time order (one transaction
//! completed before another was invoked), and reports the cycles of that graph as G0, G1c,
//! G-single or G2 (with a `-realtime` suffix when real time is needed to close them). What
//! needs no graph is found directly: reads of aborted appends (G1a), of intermediate ones
//! (G1b), of elements nobody appended, duplicated elements, reads of a key that disagree on
//! its order, and transactions contradicting their own earlier reads and appends.
//!
//! It is not a search for a serial order: it reports only what the reads prove, so a
//! history whose appends nobody read can pass while hiding a violation, and a "valid"
//! verdict means no anomaly was found. It knows nothing of registers, deletes or revisions,
//! and it does not read histories; turning a recorded history into [`Txn`]s is the
//! workload's job.

use serde::Serialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use super::linearizable::Validity;

mod dependencies;
mod graph;
mod report;

pub use report::*;
use report::{diverge, excerpt, read_summary, summary};

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum Mop {
    Append {
        key: String,
        value: i64,
    },
    /// `values` is `None` when the result is unknown (an invocation, or a txn that failed
    /// or whose outcome is unknown).
    #[serde(rename = "r")]
    Read {
        key: String,
        values: Option<Vec<i64>>,
    },
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened; its reads have values.
    Ok,
    /// It may or may not have happened; its reads are unknown.
    Info,
    /// It certainly did not happen.
    Fail,
}

/// One transaction, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Txn {
    /// The caller's name for the transaction (the history index of its invocation); echoed
    /// in reports.
    pub id: usize,
    pub process: u64,
    /// When it was invoked, in nanoseconds.
    pub invoke: u64,
    /// When it completed, in nanoseconds; `None` unless the outcome is `Ok` or `Fail`.
    pub complete: Option<u64>,
    pub outcome: Outcome,
    pub mops: Vec<Mop>,
}

/// How many anomalies of each kind a report carries in full.
pub const MAX_REPORTED: usize = 10;
/// How many elements of a read a report shows.
const SHOWN: usize = 8;
/// How many anti-dependency edges of one component are tried as the single one of a
/// G-single cycle before settling for any cycle.
const G_SINGLE_TRIES: usize = 64;
const NONE: u32 = u32::MAX;

// Edge kinds, as bits so parallel edges can share one adjacency entry.
const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;
const RT: u8 = 8;
const DATA: u8 = WW | WR | RW;
const ALL: u8 = DATA | RT;

/// Checks a history of list-append transactions for strict serializability.
pub fn check(txns: &[Txn]) -> Report {
    let mut c = Checker::new(txns);
    c.check_internal();
    let orders = c.orders();
    c.check_intermediate_reads();
    let edges = c.edges(&orders);
    c.cycles(&edges);

    let count = |o: Outcome| txns.iter().filter(|t| t.outcome == o).count();
    let counts = c.found.counts;
    let valid = if counts.keys().any(|&k| k != Kind::DuplicateAppends) {
        Validity::Invalid
    } else if counts.is_empty() {
        Validity::Valid
    } else {
        Validity::Unknown
    };
    Report {
        valid,
        txns: txns.len(),
        ok: count(Outcome::Ok),
        info: count(Outcome::Info),
        fail: count(Outcome::Fail),
        keys: c.names.len(),
        anomaly_types: counts.keys().copied().collect(),
        anomaly_counts: counts,
        anomalies: c.found.list,
    }
}

/// Anomalies found so far: all counted, the first few of each kind kept.
#[derive(Default)]
struct Found {
    counts: BTreeMap<Kind, usize>,
    list: Vec<Anomaly>,
}

impl Found {
    /// Counts one anomaly; builds its counterexample only if it will be reported.
    fn add(&mut self, kind: Kind, detail: impl FnOnce() -> Detail) {
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        if *n <= MAX_REPORTED {
            self.list.push(Anomaly {
                kind,
                detail: detail(),
            });
        }
    }
}

/// What a transaction knows of a key from its own mops: the list it last read (if any)
/// and what it appended since.
struct Known<'a> {
    key: &'a str,
    read: Option<&'a [i64]>,
    appended: Vec<i64>,
}

/// Who appended an element, and whether it was that transaction's last append to the key.
#[derive(Debug, Clone, Copy)]
struct Append {
    txn: u32,
    last: bool,
}

/// A read with a known result by a transaction that happened.
struct Read<'a> {
    txn: u32,
    key: u32,
    values: &'a [i64],
}

/// A key's version order as far as reads reveal it: the longest read, and for each of its
/// positions the transaction that appended the element (`NONE` if nobody did, the appender
/// failed, or the element is a repeat).
#[derive(Default)]
struct Order<'a> {
    values: &'a [i64],
    writers: Vec<u32>,
    members: HashSet<i64>,
}

struct Checker<'a> {
    txns: &'a [Txn],
    names: Vec<&'a str>,
    appends: HashMap<(u32, i64), Append>,
    reads: Vec<Read<'a>>,
    /// Read indices per key.
    by_key: Vec<Vec<usize>>,
    /// Whether each read is a prefix of its key's longest read.
    compatible: Vec<bool>,
    /// Whether each transaction is a node of the dependency graph: it happened, or its
    /// outcome is unknown and one of its appends was read.
    in_graph: Vec<bool>,
    found: Found,
}

impl<'a> Checker<'a> {
    /// Indexes the history: keys, who appended what, and the reads that have results.
    fn new(txns: &'a [Txn]) -> Self {
        let mut found = Found::default();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut id = |k: &'a str| -> u32 {
            *ids.entry(k).or_insert_with(|| {
                names.push(k);
                (names.len() - 1) as u32
            })
        };
        let mut appends: HashMap<(u32, i64), Append> = HashMap::new();
        let mut reads = Vec::new();
        for (t, txn) in txns.iter().enumerate() {
            // This txn's latest append to each key it appended to so far.
            let mut latest: Vec<(u32, i64)> = Vec::new();
            for mop in &txn.mops {
                match mop {
                    Mop::Append { key, value } => {
                        let k = id(key);
                        match appends.entry((k, *value)) {
                            Entry::Occupied(e) => {
                                let first = e.get().txn as usize;
                                found.add(Kind::DuplicateAppends, || Detail::Appends {
                                    key: key.clone(),
                                    value: *value,
                                    txns: vec![summary(&txns[first]), summary(txn)],
                                });
                                continue;
                            }
                            Entry::Vacant(e) => {
                                e.insert(Append {
                                    txn: t as u32,
                                    last: true,
                                });
                            }
                        }
                        match latest.iter_mut().find(|(lk, _)| *lk == k) {
                            Some(prev) => {
                                if let Some(a) = appends.get_mut(&(k, prev.1)) {
                                    a.last = false;
                                }
                                prev.1 = *value;
                            }
                            None => latest.push((k, *value)),
                        }
                    }
                    Mop::Read { key, values } => {
                        let k = id(key);
                        if let (Outcome::Ok, Some(values)) = (txn.outcome, values) {
                            reads.push(Read {
                                txn: t as u32,
                                key: k,
                                values,
                            });
                        }
                    }
                }
            }
        }
        let mut by_key = vec![Vec::new(); names.len()];
        for (i, r) in reads.iter().enumerate() {
            by_key[r.key as usize].push(i);
        }
        Checker {
            txns,
            compatible: vec![false; reads.len()],
            in_graph: vec![false; txns.len()],
            names,
            appends,
            reads,
            by_key,
            found,
        }
    }

    /// Within each transaction that happened, every read of a key must be what its own
    /// earlier mops say: its previous read plus its appends since, or (if it had not read
    /// the key) something ending with its appends so far.
    fn check_internal(&mut self) {
        for txn in self.txns.iter().filter(|t| t.outcome == Outcome::Ok) {
            let mut known: Vec<Known> = Vec::new();
            for (m, mop) in txn.mops.iter().enumerate() {
                match mop {
                    Mop::Append { key, value } => {
                        match known.iter_mut().find(|s| s.key == key.as_str()) {
                            Some(s) => s.appended.push(*value),
                            None => known.push(Known {
                                key,
                                read: None,
                                appended: vec![*value],
                            }),
                        }
                    }
                    Mop::Read {
                        key,
                        values: Some(read),
                    } => {
                        let Some(i) = known.iter().position(|s| s.key == key.as_str()) else {
                            known.push(Known {
                                key,
                                read: Some(read),
                                appended: Vec::new(),
                            });
                            continue;
                        };
                        let Known {
                            read: base,
                            appended,
                            ..
                        } = &known[i];
                        let consistent = match base {
                            Some(base) => {
                                read.len() == base.len() + appended.len()
                                    && read.starts_with(base)
                                    && read.ends_with(appended)
                            }
                            None => read.ends_with(appended),
                        };
                        if !consistent {
                            self.found.add(Kind::Internal, || {
                                let (expected, shown) = match base {
                                    Some(base) => {
                                        let want: Vec<i64> =
                                            base.iter().chain(appended).copied().collect();
                                        let at = diverge(&want, read).saturating_sub(2);
                                        (
                                            Expected::Exactly(excerpt(&want, at, SHOWN)),
                                            excerpt(read, at, SHOWN),
                                        )
                                    }
                                    None => (
                                        Expected::EndsWith(appended.clone()),
                                        tail(read, appended.len() + 2),
                                    ),
                                };
                                Detail::Internal {
                                    txn: summary(txn),
                                    key: key.clone(),
                                    mop: m,
                                    expected,
                                    read: shown,
                                }
                            });
                        }
                        known[i] = Known {
                            key,
                            read: Some(read),
                            appended: Vec::new(),
                        };
                    }
                    Mop::Read { values: None, .. } => {}
                }
            }
        }
    }

    /// Derives each key's version order from its longest read; reports reads that are not
    /// prefixes of it, and every element that should not be in a read at all (repeats,
    /// garbage, failed appends). Decides which transactions are graph nodes.
    fn orders(&mut self) -> Vec<Order<'a>> {
        let mut observed = vec![false; self.txns.len()];
        // Elements already reported as garbage or aborted reads.
        let mut flagged: HashSet<(u32, i64)> = HashSet::new();
        let mut orders = Vec::with_capacity(self.names.len());
        for k in 0..self.names.len() {
            let rs = std::mem::take(&mut self.by_key[k]);
            let longest = rs
                .iter()
                .copied()
                .max_by_key(|&i| (self.reads[i].values.len(), std::cmp::Reverse(i)));
            let Some(longest) = longest else {
                orders.push(Order::default());
                continue;
            };
            let l = self.reads[longest].values;
            // (length, read) of the reads that are prefixes, to name a witness for a
            // position: the shortest read that reaches it.
            let mut prefixes: Vec<(usize, usize)> = Vec::new();
            let mut others: Vec<usize> = Vec::new();
            for &i in &rs {
                let v = self.reads[i].values;
                if l.starts_with(v) {
                    self.compatible[i] = true;
                    prefixes.push((v.len(), i));
                } else {
                    let at = diverge(l, v);
                    let (longest_read, other_read) = (&self.reads[longest], &self.reads[i]);
                    let (lt, ot) = (
                        &self.txns[longest_read.txn as usize],
                        &self.txns[other_read.txn as usize],
                    );
                    let key = self.names[k];
                    self.found.add(Kind::IncompatibleOrder, || Detail::Orders {
                        key: key.to_string(),
                        diverge_at: at,
                        longest: read_summary(lt, l, at),
                        other: read_summary(ot, v, at),
                    });
                    others.push(i);
                }
            }
            prefixes.sort_unstable();
            let witness = |p: usize| {
                let j = prefixes.partition_point(|&(len, _)| len <= p);
                prefixes.get(j).map_or(longest, |w| w.1)
            };

            let mut members = HashSet::with_capacity(l.len());
            let mut writers = Vec::with_capacity(l.len());
            for (p, &v) in l.iter().enumerate() {
                let reader = witness(p);
                if !members.insert(v) {
                    self.duplicate(k as u32, v, reader);
                    writers.push(NONE);
                } else {
                    writers.push(self.element(k as u32, v, reader, &mut flagged, &mut observed));
                }
            }
            for &i in &others {
                let mut seen = HashSet::new();
                for &v in self.reads[i].values {
                    if !seen.insert(v) {
                        self.duplicate(k as u32, v, i);
                    } else {
                        self.element(k as u32, v, i, &mut flagged, &mut observed);
                    }
                }
            }
            self.by_key[k] = rs;
            orders.push(Order {
                values: l,
                writers,
                members,
            });
        }
        for (t, txn) in self.txns.iter().enumerate() {
            self.in_graph[t] = match txn.outcome {
                Outcome::Ok => true,
                Outcome::Info => observed[t],
                Outcome::Fail => false,
            };
        }
        orders
    }

    fn duplicate(&mut self, key: u32, value: i64, read: usize) {
        let reader = &self.txns[self.reads[read].txn as usize];
        let key = self.names[key as usize];
        self.found.add(Kind::DuplicateElements, || Detail::Element {
            key: key.to_string(),
            value,
            reader: summary(reader),
            writer: None,
        });
    }

    /// Checks one element that `read` saw; returns its appender if that may have happened.
    fn element(
        &mut self,
        key: u32,
        value: i64,
        read: usize,
        flagged: &mut HashSet<(u32, i64)>,
        observed: &mut [bool],
    ) -> u32 {
        let reader = &self.txns[self.reads[read].txn as usize];
        let name = self.names[key as usize];
        match self.appends.get(&(key, value)) {
            None => {
                if flagged.insert((key, value)) {
                    self.found.add(Kind::GarbageRead, || Detail::Element {
                        key: name.to_string(),
                        value,
                        reader: summary(reader),
                        writer: None,
                    });
                }
                NONE
            }
            Some(a) if self.txns[a.txn as usize].outcome == Outcome::Fail => {
                if flagged.insert((key, value)) {
                    let writer = &self.txns[a.txn as usize];
                    self.found.add(Kind::G1a, || Detail::Element {
                        key: name.to_string(),
                        value,
                        reader: summary(reader),
                        writer: Some(summary(writer)),
                    });
                }
                NONE
            }
            Some(a) => {
                observed[a.txn as usize] = true;
                a.txn
            }
        }
    }

    /// A read whose last element is another transaction's append, but not that
    /// transaction's final append to the key, saw a state that never committed (G1b).
    fn check_intermediate_reads(&mut self) {
        for r in &self.reads {
            let Some(&last) = r.values.last() else {
                continue;
            };
            let Some(a) = self.appends.get(&(r.key, last)) else {
                continue;
            };
            let writer = &self.txns[a.txn as usize];
            if a.txn != r.txn && !a.last && writer.outcome != Outcome::Fail {
                let reader = &self.txns[r.txn as usize];
                let key = self.names[r.key as usize];
                self.found.add(Kind::G1b, || Detail::Element {
                    key: key.to_string(),
                    value: last,
                    reader: summary(reader),
                    writer: Some(summary(writer)),
                });
            }
        }
    }
}

/// Adjacency lists: for each node, (successor, bits of the edge kinds to it).
type Adjacency = Vec<Vec<(u32, u8)>>;

/// The kind an edge with kinds `bits` is labelled with: the mildest available.
fn label(bits: u8) -> u8 {
    [WW, WR, RW, RT]
        .into_iter()
        .find(|b| bits & b != 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
