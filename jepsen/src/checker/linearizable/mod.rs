//! The register checker: decides whether a history of reads, writes and successful
//! compare-and-sets on single-valued registers is linearizable — whether there is one
//! total order of the operations, consistent with real time (an op that completed before
//! another was invoked comes first), in which every read returns the value last written —
//! and if not, shows where it breaks. Keys are independent registers, so each key is
//! searched on its own (P-compositionality). The search is Wing & Gong's, with Lowe's
//! memoization of (set of ops linearized, value) so that no configuration is explored
//! twice, made fast for the histories our workloads produce — every written value unique
//! per key — by a few sound shortcuts: crashed writes nobody observed are dropped, observed
//! ones get a deadline, reads that can go are taken at once, and no write may hide a value
//! some op still has to see. Each shortcut is exact for any history; only the speed
//! depends on values being unique.
//!
//! It is not a general model checker: the only model is a register that starts absent, and
//! it knows nothing of multi-key transactions, revisions or deletes. It does not read
//! histories either: turning a recorded history into [`Call`]s (dropping ops that certainly
//! failed) is the workload's job. Its cost grows exponentially with the number of ops in
//! flight at once on a key; when the budget runs out the verdict is "unknown", never a
//! guess.

use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// What an operation did to, or saw of, its key's register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "f", content = "value", rename_all = "lowercase")]
pub enum RegisterOp {
    /// Returned this value; `None` means the key was absent.
    Read(Option<i64>),
    Write(i64),
    /// A compare-and-set that succeeded (or whose outcome is unknown): the register held
    /// `from`, and now holds `to`.
    Cas {
        from: i64,
        to: i64,
    },
}

/// One operation on one key, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// The caller's name for the op (the history index of its invocation); echoed in reports.
    pub id: usize,
    pub process: u64,
    pub key: String,
    /// When it was invoked, in nanoseconds.
    pub invoke: u64,
    /// When it completed, in nanoseconds; `None` if the outcome is unknown, in which case it
    /// may have taken effect at any time after `invoke`, or never.
    pub complete: Option<u64>,
    pub op: RegisterOp,
}

/// How much work the search may do before giving up with [`Validity::Unknown`]. A key
/// found invalid is searched a second time, with the same budget, for a clearer
/// counterexample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Distinct (set of ops linearized, value) configurations remembered for one key.
    /// Each costs a few dozen bytes.
    pub max_states_per_key: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_states_per_key: 3_000_000,
        }
    }
}

/// A verdict. Serializes as `true`, `false` or `"unknown"`, as Jepsen's `:valid?` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validity {
    Valid,
    Invalid,
    /// The budget ran out before the search found an answer.
    Unknown,
}

impl Validity {
    /// The verdict on several independent parts: invalid if any part is, else unknown if any
    /// part is, else valid.
    pub fn all(parts: impl IntoIterator<Item = Validity>) -> Validity {
        parts
            .into_iter()
            .fold(Validity::Valid, |acc, v| match (acc, v) {
                (Validity::Invalid, _) | (_, Validity::Invalid) => Validity::Invalid,
                (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
                _ => Validity::Valid,
            })
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// An op as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpSummary {
    pub id: usize,
    pub process: u64,
    pub op: RegisterOp,
    pub invoke: u64,
    pub complete: Option<u64>,
}

impl From<&Call> for OpSummary {
    fn from(c: &Call) -> Self {
        OpSummary {
            id: c.id,
            process: c.process,
            op: c.op,
            invoke: c.invoke,
            complete: c.complete,
        }
    }
}

/// Why a key's history is not linearizable, at the deepest point the search reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterexample {
    pub key: String,
    /// The op that had to take effect before it completed and could not, whatever the
    /// order of the ops still pending.
    pub op: OpSummary,
    /// The ops whose intervals overlap its own (the candidates for going before it).
    pub concurrent: Vec<OpSummary>,
    /// The longest order of ops found that explains everything up to there: ids, in order.
    pub linearized: Vec<usize>,
    /// The register's value at the end of `linearized`.
    pub value: Option<i64>,
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    pub key: String,
    /// Ops on this key handed to the checker.
    pub ops: usize,
    /// Of those, ops that cannot matter and were left out of the search: unknown-outcome
    /// reads, and unknown-outcome writes and cas whose value nobody observed.
    pub dropped: usize,
    /// Configurations the search explored (for an invalid key, the second search that
    /// finds the counterexample included).
    pub states: usize,
    pub valid: Validity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: Validity,
    /// One entry per key, in key order.
    pub keys: Vec<KeyReport>,
}

impl Report {
    pub fn key(&self, key: &str) -> Option<&KeyReport> {
        self.keys.iter().find(|k| k.key == key)
    }

    /// The keys found not linearizable.
    pub fn invalid_keys(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| k.valid == Validity::Invalid)
    }
}

/// Checks every key's register history for linearizability, each on its own.
pub fn check(calls: &[Call], budget: &Budget) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        by_key.entry(c.key.as_str()).or_default().push(c);
    }
    let keys: Vec<KeyReport> = by_key
        .into_iter()
        .map(|(key, calls)| check_key(key, &calls, budget))
        .collect();
    Report {
        valid: Validity::all(keys.iter().map(|k| k.valid)),
        keys,
    }
}

/// Applies `op` to a register holding `state`: the new value, or `None` if the op could not
/// have happened then.
fn step(state: Option<i64>, op: RegisterOp) -> Option<Option<i64>> {
    match op {
        RegisterOp::Read(v) => (v == state).then_some(state),
        RegisterOp::Write(v) => Some(Some(v)),
        RegisterOp::Cas { from, to } => (state == Some(from)).then_some(Some(to)),
    }
}

/// The value an op leaves in the register, if it changes it.
fn written(op: RegisterOp) -> Option<i64> {
    match op {
        RegisterOp::Read(_) => None,
        RegisterOp::Write(v) | RegisterOp::Cas { to: v, .. } => Some(v),
    }
}

/// The value an op requires the register to hold, if any.
fn observed(op: RegisterOp) -> Option<i64> {
    match op {
        RegisterOp::Read(v) => v,
        RegisterOp::Write(_) => None,
        RegisterOp::Cas { from, .. } => Some(from),
    }
}

/// Stands for "never": the return time of ops that need not take effect at all.
const NEVER: u64 = u64::MAX;

/// An op kept for the search, with the latest time it may take effect (`NEVER`: it may
/// take effect whenever after its invocation, or not at all).
struct Pending<'a> {
    call: &'a Call,
    deadline: u64,
}

/// Leaves out what cannot matter and bounds when unknown-outcome ops must have happened.
/// Returns the ops to search, those with a deadline first, each group in invocation order.
fn prepare<'a>(calls: &[&'a Call]) -> Vec<Pending<'a>> {
    // A read whose answer never came changes nothing and constrains nothing.
    let mut kept: Vec<&Call> = calls
        .iter()
        .copied()
        .filter(|c| c.complete.is_some() || !matches!(c.op, RegisterOp::Read(_)))
        .collect();

    // An unknown-outcome op writing a value no kept op observes can go: in any order that
    // uses it, what follows it up to the next write cannot depend on its value (nothing
    // reads it), so the same order without it is just as good. Dropping one may leave the
    // value another unknown op wrote unobserved, hence the loop.
    loop {
        let seen: HashSet<i64> = kept.iter().filter_map(|c| observed(c.op)).collect();
        let before = kept.len();
        kept.retain(|c| c.complete.is_some() || written(c.op).is_none_or(|v| seen.contains(&v)));
        if kept.len() == before {
            break;
        }
    }

    let mut pending: Vec<Pending> = kept
        .into_iter()
        .map(|c| Pending {
            call: c,
            // A completion before the invocation is taken as an instantaneous op.
            deadline: c.complete.map_or(NEVER, |t| t.max(c.invoke)),
        })
        .collect();

    // If only one op writes v, whoever observes v must come after it: an unknown-outcome
    // op whose value is observed by an op that must happen by time t must itself happen by
    // t. Deadlines only shrink, so this settles; chains of unknown cas take a few rounds.
    let mut writers: HashMap<i64, usize> = HashMap::new();
    for p in &pending {
        if let Some(v) = written(p.call.op) {
            *writers.entry(v).or_default() += 1;
        }
    }
    loop {
        let mut by: HashMap<i64, u64> = HashMap::new();
        for p in &pending {
            if let Some(v) = observed(p.call.op) {
                if p.deadline != NEVER {
                    let t = by.entry(v).or_insert(NEVER);
                    *t = (*t).min(p.deadline);
                }
            }
        }
        let mut changed = false;
        for p in pending.iter_mut().filter(|p| p.call.complete.is_none()) {
            let Some(v) = written(p.call.op) else {
                continue;
            };
            if writers.get(&v) != Some(&1) {
                continue;
            }
            if let Some(&t) = by.get(&v) {
                if t >= p.call.invoke && t < p.deadline {
                    p.deadline = t;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    pending.sort_by_key(|p| (p.deadline == NEVER, p.call.invoke, p.call.id));
    pending
}

/// The set of ops linearized so far, as a bitset. Ops are numbered in invocation order, so
/// the set is nearly always "every op before some point, plus a few after": what tells
/// one set from another is the number of leading all-ones words and the words from there
/// to the last non-zero one, both kept up to date as bits change.
struct Linearized {
    words: Vec<u64>,
    /// The first word that is not all ones.
    low: usize,
    /// One past the last word that is not zero.
    high: usize,
}

impl Linearized {
    fn new(n: usize) -> Self {
        Linearized {
            words: vec![0; n.div_ceil(64)],
            low: 0,
            high: 0,
        }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.high = self.high.max(w + 1);
        while self.low < self.words.len() && self.words[self.low] == u64::MAX {
            self.low += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.low = self.low.min(w);
        while self.high > 0 && self.words[self.high - 1] == 0 {
            self.high -= 1;
        }
    }

    /// The words after the leading all-ones ones, up to the last non-zero one.
    fn rest(&self) -> &[u64] {
        &self.words[self.low..self.high.max(self.low)]
    }
}

/// The configurations seen: (set of ops linearized, value), stored compactly in one arena
/// and found through a table from a 64-bit hash to the newest record with that hash
/// (records with the same hash are chained).
#[derive(Default)]
struct Seen {
    heads: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    records: Vec<Record>,
    words: Vec<u64>,
}

struct Record {
    /// The previous record with the same hash, or `usize::MAX`.
    next: usize,
    full_words: usize,
    /// Where its `rest` words are in the arena.
    start: usize,
    len: usize,
    state: Option<i64>,
}

impl Seen {
    fn len(&self) -> usize {
        self.records.len()
    }

    /// Remembers the configuration; false if it was already known.
    fn insert(&mut self, set: &Linearized, state: Option<i64>) -> bool {
        let rest = set.rest();
        let hash = config_hash(set.low, rest, state);
        let head = self.heads.get(&hash).copied().unwrap_or(usize::MAX);
        let mut r = head;
        while let Some(rec) = self.records.get(r) {
            if rec.full_words == set.low
                && rec.state == state
                && self.words.get(rec.start..rec.start + rec.len) == Some(rest)
            {
                return false;
            }
            r = rec.next;
        }
        self.heads.insert(hash, self.records.len());
        self.records.push(Record {
            next: head,
            full_words: set.low,
            start: self.words.len(),
            len: rest.len(),
            state,
        });
        self.words.extend_from_slice(rest);
        true
    }
}

/// Mixes a configuration into 64 bits (a multiply-xorshift per item, then splitmix64's
/// finalizer). Collisions only cost a comparison.
fn config_hash(full_words: usize, rest: &[u64], state: Option<i64>) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, x: u64| (h ^ x).wrapping_mul(K).rotate_left(29);
    let mut h = mix(0, full_words as u64);
    for &w in rest {
        h = mix(h, w);
    }
    h = match state {
        None => mix(h, 0x5eed),
        Some(v) => mix(mix(h, 1), v as u64),
    };
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Calls and returns of a key's ops in time order, as a doubly linked list that can take
/// an op out (both its entries) and put it back in the reverse order. Entry 0 is the head;
/// the list is circular, so 0 also marks the end.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Which op an entry belongs to.
    op: Vec<usize>,
    /// For a call entry, its return entry; 0 for a return entry.
    ret: Vec<usize>,
}

impl Entries {
    fn new(ops: &[Pending]) -> Self {
        // (time, is return, op): at equal times calls go first, so touching ops overlap.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, p) in ops.iter().enumerate() {
            events.push((p.call.invoke, false, i));
            events.push((p.deadline, true, i));
        }
        events.sort_unstable();
        let m = events.len();
        let mut e = Entries {
            next: (0..=m).map(|i| (i + 1) % (m + 1)).collect(),
            prev: (0..=m).map(|i| (i + m) % (m + 1)).collect(),
            op: vec![0; m + 1],
            ret: vec![0; m + 1],
        };
        let mut call_of = vec![0; ops.len()];
        for (k, &(_, is_return, op)) in events.iter().enumerate() {
            let idx = k + 1;
            e.op[idx] = op;
            if is_return {
                e.ret[call_of[op]] = idx;
            } else {
                call_of[op] = idx;
            }
        }
        e
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn is_call(&self, idx: usize) -> bool {
        idx != 0 && self.ret[idx] != 0
    }

    fn unlink(&mut self, idx: usize) {
        let (p, n) = (self.prev[idx], self.next[idx]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, idx: usize) {
        let (p, n) = (self.prev[idx], self.next[idx]);
        self.next[p] = idx;
        self.prev[n] = idx;
    }

    /// Takes the op of call entry `call` out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ret[call]);
    }

    /// Undoes the most recent `lift`, which must have been of `call`.
    fn unlift(&mut self, call: usize) {
        self.relink(self.ret[call]);
        self.relink(call);
    }
}

enum Outcome {
    Valid,
    Unknown,
    /// The deepest point reached: the op that could not be placed, the ops placed before
    /// it (in order, as indices into the pending ops), and the value after them.
    Invalid {
        stuck: usize,
        prefix: Vec<usize>,
        value: Option<i64>,
    },
}

/// Who observes which value. Values are numbered ("slots"); slot 0 is absence.
///
/// With every value written once, a value that has been overwritten never comes back (nor
/// does absence, as nothing deletes). So while the register holds `v` and some op that
/// must take effect (has a deadline) still has to observe `v`, nothing may overwrite it:
/// that op could never be satisfied afterwards. This prunes, before they are explored, the
/// orders in which a write jumps ahead of the reads of the value before it. Values written
/// by more than one op are exempt.
struct Values {
    /// The slot of the value each op writes, if it writes.
    writes: Vec<Option<usize>>,
    /// The slot of the value each op with a deadline observes, if it observes one.
    observes: Vec<Option<usize>>,
    /// Per slot: whether the rule applies (at most one writer).
    guarded: Vec<bool>,
    /// Per slot: ops with a deadline still to observe it.
    outstanding: Vec<usize>,
}

impl Values {
    fn new(ops: &[Pending]) -> Self {
        let mut slot_of: HashMap<Option<i64>, usize> = HashMap::from([(None, 0)]);
        let mut slot = |v: Option<i64>| {
            let next = slot_of.len();
            *slot_of.entry(v).or_insert(next)
        };
        let writes: Vec<Option<usize>> = ops
            .iter()
            .map(|p| written(p.call.op).map(|v| slot(Some(v))))
            .collect();
        let observes: Vec<Option<usize>> = ops
            .iter()
            .map(|p| match p.call.op {
                _ if p.deadline == NEVER => None,
                RegisterOp::Read(v) => Some(slot(v)),
                RegisterOp::Cas { from, .. } => Some(slot(Some(from))),
                RegisterOp::Write(_) => None,
            })
            .collect();
        let slots = slot_of.len();
        let mut writers = vec![0usize; slots];
        for w in writes.iter().flatten() {
            writers[*w] += 1;
        }
        let mut outstanding = vec![0; slots];
        for o in observes.iter().flatten() {
            outstanding[*o] += 1;
        }
        Values {
            writes,
            observes,
            guarded: writers.iter().map(|&n| n <= 1).collect(),
            outstanding,
        }
    }

    /// Whether op `op` may overwrite the value in slot `current` (if it writes at all).
    fn may_go(&self, op: usize, current: usize) -> bool {
        if self.writes[op].is_none() || !self.guarded[current] {
            return true;
        }
        let mine = usize::from(self.observes[op] == Some(current));
        self.outstanding[current] <= mine
    }
}

/// What happened when an op was offered as the next to take effect.
#[derive(PartialEq, Eq)]
enum Push {
    /// It went, into a configuration not seen before.
    Taken,
    /// It could not have happened in the current value.
    Illegal,
    /// It leads to a configuration already explored, hence known to fail.
    Seen,
    /// It went, and the budget is now exhausted.
    OverBudget,
}

/// One linearization step, with what is needed to undo it.
struct Lifted {
    /// The op's call entry.
    call: usize,
    /// The value before it, and its slot.
    state: Option<i64>,
    slot: usize,
    /// Whether it was a forced move (see [`Search::legal_read`]).
    forced: bool,
}

/// The search's mutable state: the list of entries not yet linearized, the configuration
/// reached, and how it was reached.
struct Search<'a> {
    ops: &'a [Pending<'a>],
    entries: Entries,
    linearized: Linearized,
    values: Values,
    state: Option<i64>,
    /// The slot of `state`.
    slot: usize,
    /// Required ops (those with a deadline) linearized so far.
    done: usize,
    /// Linearizations, in order.
    stack: Vec<Lifted>,
    seen: Seen,
    max_states: usize,
    /// Whether to apply the rule of [`Values`].
    prune: bool,
}

impl Search<'_> {
    /// Linearizes the op of call entry `call` next, if it can go and leads somewhere new.
    fn push(&mut self, call: usize, forced: bool) -> Push {
        let op = self.entries.op[call];
        let Some(next) = step(self.state, self.ops[op].call.op) else {
            return Push::Illegal;
        };
        if self.prune && !self.values.may_go(op, self.slot) {
            return Push::Illegal;
        }
        self.linearized.set(op);
        if !self.seen.insert(&self.linearized, next) {
            self.linearized.clear(op);
            return Push::Seen;
        }
        self.stack.push(Lifted {
            call,
            state: self.state,
            slot: self.slot,
            forced,
        });
        self.state = next;
        if let Some(w) = self.values.writes[op] {
            self.slot = w;
        }
        if let Some(o) = self.values.observes[op] {
            self.values.outstanding[o] -= 1;
        }
        if self.ops[op].deadline != NEVER {
            self.done += 1;
        }
        self.entries.lift(call);
        if self.seen.len() > self.max_states {
            Push::OverBudget
        } else {
            Push::Taken
        }
    }

    /// Undoes the last linearization; returns its call entry and whether it was forced.
    fn pop(&mut self) -> Option<(usize, bool)> {
        let last = self.stack.pop()?;
        let op = self.entries.op[last.call];
        self.linearized.clear(op);
        if self.ops[op].deadline != NEVER {
            self.done -= 1;
        }
        if let Some(o) = self.values.observes[op] {
            self.values.outstanding[o] += 1;
        }
        self.state = last.state;
        self.slot = last.slot;
        self.entries.unlift(last.call);
        Some((last.call, last.forced))
    }

    /// A read that may go now (invoked before every pending op's return, and seeing the
    /// current value). Taking it at once never loses a solution: in any order that takes it
    /// later, moving it to the front breaks no real-time constraint (everything that had to
    /// precede it is already linearized) and changes no value. So it is a forced move, and
    /// if it leads nowhere, neither does the configuration before it.
    fn legal_read(&self) -> Option<usize> {
        let mut idx = self.entries.first();
        while self.entries.is_call(idx) {
            let op = self.ops[self.entries.op[idx]].call.op;
            if matches!(op, RegisterOp::Read(_)) && step(self.state, op).is_some() {
                return Some(idx);
            }
            idx = self.entries.next[idx];
        }
        None
    }

    /// The counterexample for a failure at op `stuck`, after the ops `prefix`, which left
    /// `value` (in `slot`). If `stuck` is a write that pruning held back, tells the story
    /// an unpruned search would: the write goes, and an op that still had to see the value
    /// it hid is the one that cannot.
    fn explain(
        &self,
        stuck: usize,
        mut prefix: Vec<usize>,
        value: Option<i64>,
        slot: usize,
    ) -> Outcome {
        let held_back =
            self.prune && self.values.writes[stuck].is_some() && self.values.guarded[slot];
        if let (true, Some(next)) = (held_back, step(value, self.ops[stuck].call.op)) {
            let done: HashSet<usize> = prefix.iter().copied().collect();
            let owed = (0..self.ops.len())
                .filter(|&i| i != stuck && !done.contains(&i))
                .filter(|&i| self.values.observes[i] == Some(slot))
                .min_by_key(|&i| (self.ops[i].deadline, self.ops[i].call.invoke));
            if let Some(owed) = owed {
                prefix.push(stuck);
                return Outcome::Invalid {
                    stuck: owed,
                    prefix,
                    value: next,
                };
            }
        }
        Outcome::Invalid {
            stuck,
            prefix,
            value,
        }
    }

    fn prefix(&self) -> Vec<usize> {
        self.stack.iter().map(|l| self.entries.op[l.call]).collect()
    }
}

/// Wing–Gong–Lowe: repeatedly linearize the first pending op (in call order) that can go
/// next and leads to a configuration not seen before; on reaching a return entry (an op
/// that should have taken effect by now and has not), undo the last choice and try the
/// next candidate after it. Reads that can go are taken first, as forced moves; with
/// `prune`, writes that would hide a value still owed to someone are not tried (see
/// [`Values`]). Returns the outcome and the number of configurations seen.
fn search(ops: &[Pending], max_states: usize, prune: bool) -> (Outcome, usize) {
    let mut s = Search {
        ops,
        entries: Entries::new(ops),
        linearized: Linearized::new(ops.len()),
        values: Values::new(ops),
        state: None,
        slot: 0,
        done: 0,
        stack: Vec::new(),
        seen: Seen::default(),
        max_states,
        prune,
    };
    let required = ops.iter().filter(|p| p.deadline != NEVER).count();
    // The deepest failure: the overdue op, the ops linearized before it, the value then
    // and its slot.
    let mut deepest: Option<(usize, Vec<usize>, Option<i64>, usize)> = None;
    let mut cur = s.entries.first();
    // Whether the configuration was just entered (rather than returned to by undoing).
    let mut fresh = true;
    loop {
        if s.done == required {
            return (Outcome::Valid, s.seen.len());
        }
        let mut stuck = false;
        if fresh {
            fresh = false;
            if let Some(read) = s.legal_read() {
                match s.push(read, true) {
                    Push::Taken => {
                        cur = s.entries.first();
                        fresh = true;
                        continue;
                    }
                    Push::OverBudget => return (Outcome::Unknown, s.seen.len()),
                    Push::Seen => stuck = true,
                    Push::Illegal => {} // not returned for a legal read
                }
            }
        }
        if !stuck {
            if s.entries.is_call(cur) {
                match s.push(cur, false) {
                    Push::Taken => {
                        cur = s.entries.first();
                        fresh = true;
                    }
                    Push::OverBudget => return (Outcome::Unknown, s.seen.len()),
                    Push::Illegal | Push::Seen => cur = s.entries.next[cur],
                }
                continue;
            }
            // A return entry: its op is overdue. Remember how far this attempt got.
            if cur != 0 && deepest.as_ref().is_none_or(|d| s.stack.len() > d.1.len()) {
                deepest = Some((s.entries.op[cur], s.prefix(), s.state, s.slot));
            }
        }
        // Undo the last choice, and any forced moves leading to it.
        loop {
            let Some((call, forced)) = s.pop() else {
                let outcome = match deepest {
                    Some((stuck, prefix, value, slot)) => s.explain(stuck, prefix, value, slot),
                    // Unreachable: a required op remained, so its return entry was met.
                    None => Outcome::Unknown,
                };
                return (outcome, s.seen.len());
            };
            if !forced {
                cur = s.entries.next[call];
                break;
            }
        }
    }
}

fn check_key(key: &str, calls: &[&Call], budget: &Budget) -> KeyReport {
    let ops = prepare(calls);
    let (mut outcome, mut states) = search(&ops, budget.max_states_per_key, true);
    if matches!(outcome, Outcome::Invalid { .. }) {
        // Pruning makes the search give up early, often far from the op that saw the wrong
        // value; an unpruned search goes as far as the history allows and names that op.
        // It can cost much more, so it gets its own budget and only improves the report.
        let (plain, more) = search(&ops, budget.max_states_per_key, false);
        states += more;
        if matches!(plain, Outcome::Invalid { .. }) {
            outcome = plain;
        }
    }
    let (valid, counterexample) = match outcome {
        Outcome::Valid => (Validity::Valid, None),
        Outcome::Unknown => (Validity::Unknown, None),
        Outcome::Invalid {
            stuck,
            prefix,
            value,
        } => {
            let s = &ops[stuck];
            let concurrent = ops
                .iter()
                .enumerate()
                .filter(|&(i, p)| {
                    i != stuck && p.call.invoke <= s.deadline && p.deadline >= s.call.invoke
                })
                .map(|(_, p)| OpSummary::from(p.call))
                .collect();
            let cx = Counterexample {
                key: key.to_string(),
                op: OpSummary::from(s.call),
                concurrent,
                linearized: prefix.into_iter().map(|i| ops[i].call.id).collect(),
                value,
            };
            (Validity::Invalid, Some(cx))
        }
    };
    KeyReport {
        key: key.to_string(),
        ops: calls.len(),
        dropped: calls.len() - ops.len(),
        states,
        valid,
        counterexample,
    }
}

#[cfg(test)]
mod tests;
