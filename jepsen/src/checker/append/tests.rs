//! Tests of `append`: known-good and known-bad inputs, each able to fail.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn ap(key: &str, value: i64) -> Mop {
    Mop::Append {
        key: key.into(),
        value,
    }
}

fn rd(key: &str, values: &[i64]) -> Mop {
    Mop::Read {
        key: key.into(),
        values: Some(values.to_vec()),
    }
}

/// Overlapping every other `ALL` interval: no real-time order.
const ALL_AT_ONCE: (u64, u64) = (0, 100);

/// A history under construction; ids (and processes) are assigned in order.
#[derive(Default)]
struct H {
    txns: Vec<Txn>,
}

impl H {
    fn push(
        &mut self,
        invoke: u64,
        complete: Option<u64>,
        outcome: Outcome,
        mops: Vec<Mop>,
    ) -> usize {
        let id = self.txns.len();
        self.txns.push(Txn {
            id,
            process: id as u64,
            invoke,
            complete,
            outcome,
            mops,
        });
        id
    }
    fn ok(&mut self, t: (u64, u64), mops: Vec<Mop>) -> usize {
        self.push(t.0, Some(t.1), Outcome::Ok, mops)
    }
    /// Reads of a txn whose outcome is unknown are unknown.
    fn info(&mut self, invoke: u64, mops: Vec<Mop>) -> usize {
        let mops = mops.into_iter().map(forget).collect();
        self.push(invoke, None, Outcome::Info, mops)
    }
    fn fail(&mut self, t: (u64, u64), mops: Vec<Mop>) -> usize {
        let mops = mops.into_iter().map(forget).collect();
        self.push(t.0, Some(t.1), Outcome::Fail, mops)
    }
    fn check(&self) -> Report {
        check(&self.txns)
    }
}

fn forget(m: Mop) -> Mop {
    match m {
        Mop::Read { key, .. } => Mop::Read { key, values: None },
        a => a,
    }
}

fn assert_valid(r: &Report) {
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert!(
        r.anomalies.is_empty() && r.anomaly_types.is_empty(),
        "{r:#?}"
    );
}

/// Asserts the report is invalid with exactly these kinds.
fn assert_kinds(r: &Report, kinds: &[Kind]) {
    assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
    assert_eq!(r.anomaly_types, kinds, "{r:#?}");
}

/// The txn ids of the first cycle of `kind`, smallest first, and its steps' kinds.
fn cycle(r: &Report, kind: Kind) -> (Vec<usize>, Vec<Dependency>) {
    let a = r.of(kind).next().expect("a cycle of that kind");
    let Detail::Cycle { txns, steps } = &a.detail else {
        panic!("not a cycle: {a:#?}");
    };
    assert_eq!(txns.len(), steps.len());
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.from, txns[i].id);
        assert_eq!(s.to, txns[(i + 1) % txns.len()].id);
    }
    let mut ids: Vec<usize> = txns.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    (ids, steps.iter().map(|s| s.dependency.clone()).collect())
}

#[test]
fn empty_history_is_valid() {
    let r = check(&[]);
    assert_valid(&r);
    assert_eq!((r.txns, r.keys), (0, 0));
}

#[test]
fn serial_history_is_valid() {
    let mut h = H::default();
    h.ok((0, 1), vec![ap("x", 1)]);
    h.ok((2, 3), vec![rd("x", &[1]), ap("x", 2), ap("y", 1)]);
    h.ok((4, 5), vec![rd("x", &[1, 2]), rd("y", &[1])]);
    h.ok((6, 7), vec![rd("y", &[1]), ap("y", 2), rd("y", &[1, 2])]);
    h.ok(
        (8, 9),
        vec![rd("x", &[1, 2]), rd("y", &[1, 2]), rd("z", &[])],
    );
    let r = h.check();
    assert_valid(&r);
    assert_eq!((r.txns, r.ok, r.info, r.fail, r.keys), (5, 5, 0, 0, 3));
}

#[test]
fn concurrent_history_in_an_order_other_than_invocation_is_valid() {
    let mut h = H::default();
    h.ok((0, 100), vec![ap("x", 1)]);
    h.ok((10, 50), vec![ap("x", 2)]); // took effect before the first
    h.ok((60, 200), vec![rd("x", &[2])]); // overlaps the first: may precede it
    h.ok((150, 160), vec![rd("x", &[2, 1])]);
    assert_valid(&h.check());
    // The same reads, but the reader of [2] starts after the first append completed.
    let mut late = H::default();
    late.ok((0, 100), vec![ap("x", 1)]);
    late.ok((10, 50), vec![ap("x", 2)]);
    late.ok((120, 200), vec![rd("x", &[2])]);
    late.ok((150, 160), vec![rd("x", &[2, 1])]);
    assert_kinds(&late.check(), &[Kind::GSingleRealtime]);
}

/// A serial executor behind concurrent clients: each txn takes effect at one instant
/// inside its interval (for `Info` ones, at any instant after invocation, or never), so
/// the history is strictly serializable.
fn simulate(seed: u64, n: usize, keys: usize, procs: u64) -> Vec<Txn> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clock = vec![0u64; procs as usize];
    let mut txns = Vec::with_capacity(n);
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut next = 0i64;
    for id in 0..n {
        let p = (0..procs as usize).min_by_key(|&p| clock[p]).unwrap_or(0);
        let invoke = clock[p] + rng.gen_range(0..20_000);
        let latency = rng.gen_range(50_000..2_000_000);
        let mops = (0..rng.gen_range(1..=4))
            .map(|_| {
                let key = format!("k{}", rng.gen_range(0..keys));
                if rng.gen_bool(0.5) {
                    Mop::Read { key, values: None }
                } else {
                    next += 1;
                    Mop::Append { key, value: next }
                }
            })
            .collect();
        let (outcome, complete, effect) = match rng.gen_range(0..100) {
            0..=3 => {
                let e = invoke + rng.gen_range(0..3 * latency);
                (Outcome::Info, None, rng.gen_bool(0.5).then_some(e))
            }
            4..=7 => (Outcome::Fail, Some(invoke + latency), None),
            _ => {
                let e = invoke + rng.gen_range(0..=latency);
                (Outcome::Ok, Some(invoke + latency), Some(e))
            }
        };
        clock[p] = invoke + latency * if outcome == Outcome::Info { 3 } else { 1 };
        if let Some(e) = effect {
            effects.push((e, id));
        }
        txns.push(Txn {
            id,
            process: p as u64,
            invoke,
            complete,
            outcome,
            mops,
        });
    }
    effects.sort_unstable();
    let mut state: HashMap<String, Vec<i64>> = HashMap::new();
    for (_, id) in effects {
        let ok = txns[id].outcome == Outcome::Ok;
        for mop in &mut txns[id].mops {
            match mop {
                Mop::Append { key, value } => state.entry(key.clone()).or_default().push(*value),
                Mop::Read { key, values } if ok => {
                    *values = Some(state.get(key).cloned().unwrap_or_default());
                }
                Mop::Read { .. } => {}
            }
        }
    }
    txns
}

#[test]
fn simulated_concurrent_histories_are_valid() {
    for seed in 0..20 {
        let txns = simulate(seed, 500, 4, 6);
        let r = check(&txns);
        assert_valid(&r);
        assert!(r.info > 0 && r.fail > 0, "seed {seed}: {} info", r.info);
    }
}

#[test]
fn simulated_history_with_a_stale_read_is_invalid() {
    let mut txns = simulate(3, 500, 4, 6);
    // Make the longest read of some key in the second half miss its last element.
    let (t, m) = txns
        .iter()
        .enumerate()
        .skip(250)
        .filter(|(_, t)| t.outcome == Outcome::Ok)
        .flat_map(|(i, t)| t.mops.iter().enumerate().map(move |(m, mop)| (i, m, mop)))
        .filter_map(|(i, m, mop)| match mop {
            Mop::Read {
                values: Some(v), ..
            } if v.len() > 3 => Some((i, m)),
            _ => None,
        })
        .next()
        .expect("a read");
    if let Mop::Read {
        values: Some(v), ..
    } = &mut txns[t].mops[m]
    {
        v.pop();
    }
    let r = check(&txns);
    assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
}

#[test]
fn an_unknown_append_that_was_read_happened_entirely() {
    let mut h = H::default();
    h.info(0, vec![ap("x", 1), ap("y", 1)]);
    h.ok((10, 20), vec![rd("x", &[1]), rd("y", &[1])]);
    let r = h.check();
    assert_valid(&r);
    assert_eq!((r.ok, r.info), (1, 1));

    // Seeing one of its appends but not the other is read skew.
    let mut h = H::default();
    h.info(0, vec![ap("x", 1), ap("y", 1)]);
    h.ok((10, 20), vec![rd("x", &[1]), rd("y", &[])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GSingle]);
    assert_eq!(cycle(&r, Kind::GSingle).0, vec![0, 1]);
}

#[test]
fn an_unknown_append_nobody_read_may_not_have_happened() {
    let mut h = H::default();
    h.info(0, vec![ap("x", 1), ap("y", 1)]);
    h.ok((10, 20), vec![rd("y", &[])]);
    h.ok((30, 40), vec![rd("x", &[]), rd("y", &[])]);
    assert_valid(&h.check());
    // Had it completed, the later reads would have had to see it.
    let mut h = H::default();
    h.ok((0, 5), vec![ap("x", 1), ap("y", 1)]);
    h.ok((10, 20), vec![rd("y", &[])]);
    h.ok((30, 40), vec![rd("x", &[]), rd("y", &[])]);
    assert_kinds(&h.check(), &[Kind::GSingleRealtime]);
}

#[test]
fn write_cycle_is_g0() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), ap("y", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 2), ap("y", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2]), rd("y", &[2, 1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::G0]);
    let (ids, deps) = cycle(&r, Kind::G0);
    assert_eq!(ids, vec![0, 1]);
    assert!(deps.contains(&Dependency::Ww {
        key: "x".into(),
        after: 1,
        appended: 2
    }));
    assert!(deps.contains(&Dependency::Ww {
        key: "y".into(),
        after: 2,
        appended: 1
    }));
}

#[test]
fn reading_a_failed_append_is_g1a() {
    let mut h = H::default();
    h.fail((0, 10), vec![ap("x", 1)]);
    h.ok((20, 30), vec![rd("x", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::G1a]);
    let Detail::Element {
        value,
        reader,
        writer,
        ..
    } = &r.anomalies[0].detail
    else {
        panic!("{r:#?}");
    };
    assert_eq!(
        (*value, reader.id, writer.as_ref().map(|w| w.id)),
        (1, 1, Some(0))
    );
    // A failed append nobody saw is fine.
    let mut h = H::default();
    h.fail((0, 10), vec![ap("x", 1)]);
    h.ok((20, 30), vec![rd("x", &[])]);
    assert_valid(&h.check());
}

#[test]
fn reading_an_intermediate_append_is_g1b() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2])]);
    let r = h.check();
    assert!(r.has(Kind::G1b), "{r:#?}");
    let Detail::Element { value, reader, .. } = &r.of(Kind::G1b).next().expect("G1b").detail else {
        panic!("{r:#?}");
    };
    assert_eq!((*value, reader.id), (1, 1));
    // Reading the writer's final append, or its own intermediate one, is fine.
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), rd("x", &[1]), ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2])]);
    assert_valid(&h.check());
}

#[test]
fn circular_information_flow_is_g1c() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), rd("y", &[1])]);
    h.ok(ALL_AT_ONCE, vec![ap("y", 1), rd("x", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::G1c]);
    let (ids, deps) = cycle(&r, Kind::G1c);
    assert_eq!(ids, vec![0, 1]);
    assert!(deps.iter().all(|d| matches!(d, Dependency::Wr { .. })));
}

#[test]
fn read_skew_is_g_single() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), ap("y", 1)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1]), rd("y", &[])]);
    h.ok(ALL_AT_ONCE, vec![rd("y", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GSingle]);
    let (ids, deps) = cycle(&r, Kind::GSingle);
    assert_eq!(ids, vec![0, 1]);
    assert!(deps.contains(&Dependency::Rw {
        key: "y".into(),
        read_up_to: None,
        appended: 1
    }));
    assert!(deps.contains(&Dependency::Wr {
        key: "x".into(),
        value: 1
    }));
}

#[test]
fn lost_update_is_g_single() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![rd("x", &[]), ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[]), ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GSingle]);
    assert_eq!(cycle(&r, Kind::GSingle).0, vec![0, 1]);
}

#[test]
fn write_skew_is_g2() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![rd("x", &[]), ap("y", 1)]);
    h.ok(ALL_AT_ONCE, vec![rd("y", &[]), ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[2]), rd("y", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::G2]);
    let (ids, deps) = cycle(&r, Kind::G2);
    assert_eq!(ids, vec![0, 1]);
    assert!(deps.iter().all(|d| matches!(d, Dependency::Rw { .. })));
}

#[test]
fn stale_read_is_a_real_time_violation() {
    let mut h = H::default();
    h.ok((0, 10), vec![ap("x", 1)]);
    h.ok((20, 30), vec![rd("x", &[])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GSingleRealtime]);
    let (ids, deps) = cycle(&r, Kind::GSingleRealtime);
    assert_eq!(ids, vec![0, 1]);
    assert!(deps.contains(&Dependency::Realtime {
        completed: 10,
        invoked: 20
    }));
    // Also when a later read shows the append.
    h.ok((40, 50), vec![rd("x", &[1])]);
    assert_kinds(&h.check(), &[Kind::GSingleRealtime]);
    // Overlapping, the read may have gone first.
    let mut h = H::default();
    h.ok((0, 10), vec![ap("x", 1)]);
    h.ok((10, 30), vec![rd("x", &[])]);
    h.ok((40, 50), vec![rd("x", &[1])]);
    assert_valid(&h.check());
}

#[test]
fn reads_disagreeing_on_order_are_incompatible() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[2, 1])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[2])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::IncompatibleOrder]);
    assert_eq!(r.anomaly_counts[&Kind::IncompatibleOrder], 2);
    let Detail::Orders {
        diverge_at,
        longest,
        other,
        ..
    } = &r.anomalies[0].detail
    else {
        panic!("{r:#?}");
    };
    assert_eq!((*diverge_at, longest.txn, other.txn), (0, 2, 3));
    assert_eq!(other.values.values, vec![2, 1]);
}

#[test]
fn duplicate_elements_are_caught() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2, 1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::DuplicateElements]);
    let Detail::Element { value, reader, .. } = &r.anomalies[0].detail else {
        panic!("{r:#?}");
    };
    assert_eq!((*value, reader.id), (1, 3));
}

#[test]
fn garbage_reads_are_caught() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 99])]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 99])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GarbageRead]);
    assert_eq!(r.anomaly_counts[&Kind::GarbageRead], 1);
    let Detail::Element { value, reader, .. } = &r.anomalies[0].detail else {
        panic!("{r:#?}");
    };
    assert_eq!((*value, reader.id), (99, 1));
}

#[test]
fn a_txn_contradicting_itself_is_internal() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), rd("x", &[])]);
    h.ok(ALL_AT_ONCE, vec![ap("y", 5)]);
    h.ok(ALL_AT_ONCE, vec![rd("y", &[]), rd("y", &[5])]);
    let r = h.check();
    assert!(r.has(Kind::Internal), "{r:#?}");
    assert_eq!(r.anomaly_counts[&Kind::Internal], 2);
    let internal: Vec<_> = r.of(Kind::Internal).map(|a| &a.detail).collect();
    let Detail::Internal { expected, mop, .. } = internal[0] else {
        panic!("{r:#?}");
    };
    assert_eq!((expected, *mop), (&Expected::EndsWith(vec![1]), 1));
    let Detail::Internal { expected, txn, .. } = internal[1] else {
        panic!("{r:#?}");
    };
    assert_eq!(txn.id, 2);
    assert!(matches!(expected, Expected::Exactly(e) if e.len == 0));
    // Reads that follow the txn's own appends are fine.
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("y", 4)]);
    h.ok(
        ALL_AT_ONCE,
        vec![
            rd("x", &[]),
            ap("x", 1),
            rd("x", &[1]),
            ap("y", 5),
            rd("y", &[4, 5]),
        ],
    );
    assert_valid(&h.check());
}

#[test]
fn appending_an_element_twice_makes_the_verdict_unknown() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    let r = h.check();
    assert_eq!(r.valid, Validity::Unknown, "{r:#?}");
    assert_eq!(r.anomaly_types, vec![Kind::DuplicateAppends]);
}

#[test]
fn cycles_beyond_the_cap_are_counted_not_shown() {
    let mut h = H::default();
    for i in 0..15 {
        let (x, y) = (format!("x{i}"), format!("y{i}"));
        h.ok(ALL_AT_ONCE, vec![ap(&x, 1), ap(&y, 1)]);
        h.ok(ALL_AT_ONCE, vec![ap(&x, 2), ap(&y, 2)]);
        h.ok(ALL_AT_ONCE, vec![rd(&x, &[1, 2]), rd(&y, &[2, 1])]);
    }
    let r = h.check();
    assert_kinds(&r, &[Kind::G0]);
    assert_eq!(r.anomaly_counts[&Kind::G0], 15);
    assert_eq!(r.of(Kind::G0).count(), MAX_REPORTED);
}

#[test]
fn a_long_cycle_is_found() {
    // T0 -> T1 -> ... -> T49 by ww on x, closed by T49 -> T0 through a stale read.
    let mut h = H::default();
    let n = 50;
    let all: Vec<i64> = (0..n).collect();
    for i in 0..n {
        h.ok(ALL_AT_ONCE, vec![ap("x", i)]);
    }
    h.ok(ALL_AT_ONCE, vec![rd("x", &all)]);
    h.txns[n as usize - 1].mops.push(rd("y", &[]));
    h.txns[0].mops.push(ap("y", 1));
    h.ok(ALL_AT_ONCE, vec![rd("y", &[1])]);
    let r = h.check();
    assert_kinds(&r, &[Kind::GSingle]);
    assert_eq!(cycle(&r, Kind::GSingle).0.len(), n as usize);
}

#[test]
fn realtime_edges_imply_exactly_the_real_time_order() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..20 {
        let n = 60;
        let txns: Vec<Txn> = (0..n)
            .map(|id| {
                let invoke = rng.gen_range(0..1_000);
                Txn {
                    id,
                    process: id as u64,
                    invoke,
                    complete: Some(invoke + rng.gen_range(0..200)),
                    outcome: Outcome::Ok,
                    mops: vec![],
                }
            })
            .collect();
        let mut c = Checker::new(&txns);
        c.orders();
        let mut edges = Vec::new();
        c.realtime_edges(&mut edges);
        let mut reach = vec![vec![false; n]; n];
        for e in &edges {
            reach[e.from as usize][e.to as usize] = true;
        }
        for k in 0..n {
            let via = reach[k].clone();
            for row in &mut reach {
                if row[k] {
                    for (to, &v) in row.iter_mut().zip(&via) {
                        *to |= v;
                    }
                }
            }
        }
        for (i, a) in txns.iter().enumerate() {
            for (j, b) in txns.iter().enumerate() {
                let before = a.complete.is_some_and(|c| c < b.invoke);
                assert_eq!(reach[i][j], before, "{a:?} {b:?}");
            }
        }
    }
    // Sequential txns need one edge each, not one per earlier txn.
    let txns: Vec<Txn> = (0..100)
        .map(|id| Txn {
            id,
            process: 0,
            invoke: 10 * id as u64,
            complete: Some(10 * id as u64 + 5),
            outcome: Outcome::Ok,
            mops: vec![],
        })
        .collect();
    let mut c = Checker::new(&txns);
    c.orders();
    let mut edges = Vec::new();
    c.realtime_edges(&mut edges);
    assert_eq!(edges.len(), 99);
}

#[test]
fn reports_serialize_as_jepsen_does() {
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), ap("y", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 2), ap("y", 2)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1, 2]), rd("y", &[2, 1])]);
    let j = serde_json::to_value(h.check()).expect("json");
    assert_eq!(j["valid"], serde_json::json!(false));
    assert_eq!(j["anomaly_types"], serde_json::json!(["G0"]));
    assert_eq!(j["anomaly_counts"]["G0"], 1);
    let a = &j["anomalies"][0];
    assert_eq!(a["kind"], "G0");
    assert_eq!(a["steps"][0]["kind"], "ww");
    assert!(a["steps"][0]["key"].is_string());
    assert_eq!(
        a["txns"][0]["mops"][0],
        serde_json::json!({"f": "append", "key": "x", "value": 1})
    );

    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1), ap("y", 1)]);
    h.ok(ALL_AT_ONCE, vec![rd("x", &[1]), rd("y", &[])]);
    let j = serde_json::to_value(h.check()).expect("json");
    let a = &j["anomalies"][0];
    assert_eq!(a["kind"], "G-single");
    assert_eq!(
        a["txns"][1]["mops"][0],
        serde_json::json!({"f": "r", "key": "x", "values": {"len": 1, "from": 0, "values": [1]}})
    );
    assert_eq!(
        a["steps"][1],
        serde_json::json!({"from": 1, "to": 0, "kind": "rw", "key": "y", "read_up_to": null, "appended": 1})
    );

    let j = serde_json::to_value(check(&[])).expect("json");
    assert_eq!(j["valid"], serde_json::json!(true));
    let mut h = H::default();
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    h.ok(ALL_AT_ONCE, vec![ap("x", 1)]);
    let j = serde_json::to_value(h.check()).expect("json");
    assert_eq!(j["valid"], serde_json::json!("unknown"));
}

#[test]
fn large_history_checks_quickly() {
    let txns = simulate(11, 20_000, 10, 20);
    let longest = txns
        .iter()
        .flat_map(|t| &t.mops)
        .filter_map(|m| match m {
            Mop::Read {
                values: Some(v), ..
            } => Some(v.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let start = Instant::now();
    let r = check(&txns);
    let took = start.elapsed();
    println!(
        "{} txns ({} ok, {} info, {} fail) over {} keys, lists up to {longest}: {:?} in {took:?}",
        r.txns, r.ok, r.info, r.fail, r.keys, r.valid
    );
    assert_valid(&r);
    assert!(longest > 1_000);
}

#[test]
fn large_corrupted_history_checks_quickly_too() {
    let mut txns = simulate(12, 20_000, 10, 20);
    // Every 20th read loses its last element: many stale reads, large components.
    let mut n = 0;
    for t in &mut txns {
        for m in &mut t.mops {
            if let Mop::Read {
                values: Some(v), ..
            } = m
            {
                n += 1;
                if n % 20 == 0 {
                    v.pop();
                }
            }
        }
    }
    let start = Instant::now();
    let r = check(&txns);
    let took = start.elapsed();
    println!("{:?} in {took:?}: {:?}", r.valid, r.anomaly_counts);
    assert_eq!(r.valid, Validity::Invalid);
    assert!(r.anomalies.len() <= MAX_REPORTED * r.anomaly_types.len());
}
