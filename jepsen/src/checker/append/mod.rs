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

mod graph;
use graph::{cycle_in_component, tarjan};

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

#[derive(Debug, Clone, Copy)]
enum Why {
    Ww {
        key: u32,
        after: i64,
        appended: i64,
    },
    Wr {
        key: u32,
        value: i64,
    },
    Rw {
        key: u32,
        read_up_to: Option<i64>,
        appended: i64,
    },
    Rt {
        completed: u64,
        invoked: u64,
    },
}

impl Why {
    fn bit(&self) -> u8 {
        match self {
            Why::Ww { .. } => WW,
            Why::Wr { .. } => WR,
            Why::Rw { .. } => RW,
            Why::Rt { .. } => RT,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    from: u32,
    to: u32,
    why: Why,
}

/// Adjacency lists: for each node, (successor, bits of the edge kinds to it).
type Adjacency = Vec<Vec<(u32, u8)>>;

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

    /// The dependency graph's edges, sorted by (from, to, kind).
    fn edges(&self, orders: &[Order]) -> Vec<Edge> {
        let mut edges = Vec::new();
        let in_graph = &self.in_graph;

        // Appends of graph transactions that no read of their key's order shows: they
        // happened, so they come after that whole order.
        let mut unseen: Vec<Vec<(u32, i64)>> = vec![Vec::new(); self.names.len()];
        for (&(k, v), a) in &self.appends {
            if in_graph[a.txn as usize] && !orders[k as usize].members.contains(&v) {
                unseen[k as usize].push((a.txn, v));
            }
        }

        for u in &mut unseen {
            u.sort_unstable();
        }

        for (k, order) in orders.iter().enumerate() {
            let key = k as u32;
            let l = order.values;
            let unseen = &unseen[k];
            let writer = |p: usize| {
                let w = order.writers[p];
                if w != NONE && in_graph[w as usize] {
                    w
                } else {
                    NONE
                }
            };

            // ww: along the order, each graph writer before the next one.
            let mut prev: Option<(u32, i64)> = None;
            for (p, &v) in l.iter().enumerate() {
                let w = writer(p);
                if w == NONE {
                    continue;
                }
                if let Some((pt, pv)) = prev {
                    if pt != w {
                        edges.push(Edge {
                            from: pt,
                            to: w,
                            why: Why::Ww {
                                key,
                                after: pv,
                                appended: v,
                            },
                        });
                    }
                }
                prev = Some((w, v));
            }
            if let Some((pt, pv)) = prev {
                for &(u, v) in unseen {
                    if u != pt {
                        edges.push(Edge {
                            from: pt,
                            to: u,
                            why: Why::Ww {
                                key,
                                after: pv,
                                appended: v,
                            },
                        });
                    }
                }
            }

            // next[p]: the first position at or after p with a graph writer.
            let mut next = vec![l.len(); l.len() + 1];
            for p in (0..l.len()).rev() {
                next[p] = if writer(p) != NONE { p } else { next[p + 1] };
            }

            for &i in &self.by_key[k] {
                if !self.compatible[i] {
                    continue;
                }
                let r = &self.reads[i];
                let n = r.values.len();
                let up_to = r.values.last().copied();
                // wr: from whoever appended the last element read.
                if let Some(v) = up_to {
                    let w = writer(n - 1);
                    if w != NONE && w != r.txn {
                        edges.push(Edge {
                            from: w,
                            to: r.txn,
                            why: Why::Wr { key, value: v },
                        });
                    }
                }
                // rw: to whoever appended the next element; if the reader appended it
                // itself, its ww edges carry the order on.
                let q = next[n];
                if q < l.len() {
                    let w = writer(q);
                    if w != r.txn {
                        edges.push(Edge {
                            from: r.txn,
                            to: w,
                            why: Why::Rw {
                                key,
                                read_up_to: up_to,
                                appended: l[q],
                            },
                        });
                    }
                } else {
                    for &(u, v) in unseen {
                        if u != r.txn {
                            edges.push(Edge {
                                from: r.txn,
                                to: u,
                                why: Why::Rw {
                                    key,
                                    read_up_to: up_to,
                                    appended: v,
                                },
                            });
                        }
                    }
                }
            }
        }

        self.realtime_edges(&mut edges);
        edges.sort_unstable_by_key(|e| (e.from, e.to, e.why.bit()));
        edges
    }

    /// Real-time order without quadratically many edges: a "frontier" holds the completed
    /// transactions not yet known to precede another completed one. A transaction invoked
    /// gets an edge from each of them; when it completes, those that completed before its
    /// invocation (and so have an edge to it) leave the frontier, and it joins. Anything
    /// that completed before an invocation reaches it through a chain of such edges, and
    /// the frontier stays about as large as the concurrency.
    fn realtime_edges(&self, edges: &mut Vec<Edge>) {
        let end = |t: &Txn| t.complete.map(|c| c.max(t.invoke));
        // (time, completion?, txn): at equal times invocations go first, so only strictly
        // earlier completions count.
        let mut events: Vec<(u64, bool, u32)> = Vec::new();
        for (t, txn) in self.txns.iter().enumerate() {
            if !self.in_graph[t] {
                continue;
            }
            events.push((txn.invoke, false, t as u32));
            if txn.outcome == Outcome::Ok {
                if let Some(e) = end(txn) {
                    events.push((e, true, t as u32));
                }
            }
        }
        events.sort_unstable();
        let mut frontier: Vec<(u32, u64)> = Vec::new();
        for (time, completion, t) in events {
            if completion {
                let invoked = self.txns[t as usize].invoke;
                frontier.retain(|&(_, done)| done >= invoked);
                frontier.push((t, time));
            } else {
                for &(f, done) in &frontier {
                    edges.push(Edge {
                        from: f,
                        to: t,
                        why: Why::Rt {
                            completed: done,
                            invoked: time,
                        },
                    });
                }
            }
        }
    }

    /// Finds the strongly connected components of the graph and one short cycle in each.
    fn cycles(&mut self, edges: &[Edge]) {
        let n = self.txns.len();
        let mut adj: Adjacency = vec![Vec::new(); n];
        for e in edges {
            let list = &mut adj[e.from as usize];
            match list.last_mut() {
                Some(last) if last.0 == e.to => last.1 |= e.why.bit(),
                _ => list.push((e.to, e.why.bit())),
            }
        }
        let mut components = tarjan(&adj, ALL);
        for c in &mut components {
            c.sort_unstable();
        }
        components.sort_unstable();
        let mut local_of = vec![NONE; n];
        for comp in &components {
            let Some((nodes, labels)) = cycle_in_component(&adj, comp, &mut local_of) else {
                continue;
            };
            let txns = self.txns;
            let names = &self.names;
            self.found.add(classify(&labels), || {
                let steps = nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &from)| {
                        let to = nodes[(i + 1) % nodes.len()];
                        let e = find_edge(edges, from, to, labels[i])?;
                        Some(Step {
                            from: txns[from as usize].id,
                            to: txns[to as usize].id,
                            dependency: dependency(&e.why, names),
                        })
                    })
                    .collect();
                Detail::Cycle {
                    txns: nodes.iter().map(|&t| summary(&txns[t as usize])).collect(),
                    steps,
                }
            });
        }
    }
}

fn find_edge(edges: &[Edge], from: u32, to: u32, bit: u8) -> Option<&Edge> {
    let start = edges.partition_point(|e| (e.from, e.to) < (from, to));
    edges[start..]
        .iter()
        .take_while(|e| e.from == from && e.to == to)
        .find(|e| e.why.bit() == bit)
}

fn dependency(why: &Why, names: &[&str]) -> Dependency {
    let name = |k: u32| {
        names
            .get(k as usize)
            .copied()
            .unwrap_or_default()
            .to_string()
    };
    match *why {
        Why::Ww {
            key,
            after,
            appended,
        } => Dependency::Ww {
            key: name(key),
            after,
            appended,
        },
        Why::Wr { key, value } => Dependency::Wr {
            key: name(key),
            value,
        },
        Why::Rw {
            key,
            read_up_to,
            appended,
        } => Dependency::Rw {
            key: name(key),
            read_up_to,
            appended,
        },
        Why::Rt { completed, invoked } => Dependency::Realtime { completed, invoked },
    }
}

/// Names a cycle by its edges' kinds.
fn classify(labels: &[u8]) -> Kind {
    let rw = labels.iter().filter(|&&l| l == RW).count();
    let wr = labels.contains(&WR);
    let rt = labels.contains(&RT);
    match (rw, wr, rt) {
        (0, false, false) => Kind::G0,
        (0, false, true) => Kind::G0Realtime,
        (0, true, false) => Kind::G1c,
        (0, true, true) => Kind::G1cRealtime,
        (1, _, false) => Kind::GSingle,
        (1, _, true) => Kind::GSingleRealtime,
        (_, _, false) => Kind::G2,
        (_, _, true) => Kind::G2Realtime,
    }
}

/// The kind an edge with kinds `bits` is labelled with: the mildest available.
fn label(bits: u8) -> u8 {
    [WW, WR, RW, RT]
        .into_iter()
        .find(|b| bits & b != 0)
        .unwrap_or(0)
}

/// The first index where two lists differ (the shorter's length if one is a prefix).
fn diverge(a: &[i64], b: &[i64]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn excerpt(values: &[i64], from: usize, max: usize) -> Excerpt {
    let from = from.min(values.len());
    let to = values.len().min(from + max);
    Excerpt {
        len: values.len(),
        from,
        values: values[from..to].to_vec(),
    }
}

fn tail(values: &[i64], max: usize) -> Excerpt {
    excerpt(values, values.len().saturating_sub(max), max)
}

fn read_summary(txn: &Txn, values: &[i64], at: usize) -> ReadSummary {
    ReadSummary {
        txn: txn.id,
        process: txn.process,
        values: excerpt(values, at.saturating_sub(2), SHOWN),
    }
}

fn summary(t: &Txn) -> TxnSummary {
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

#[cfg(test)]
mod tests;
