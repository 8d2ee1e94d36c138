//! Tests of `linearizable`: known-good and known-bad inputs, each able to fail.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// A history under construction; ids are assigned in order of `op` calls.
#[derive(Default)]
struct H {
    calls: Vec<Call>,
}

impl H {
    fn op(
        &mut self,
        key: &str,
        process: u64,
        invoke: u64,
        complete: Option<u64>,
        op: RegisterOp,
    ) -> usize {
        let id = self.calls.len();
        self.calls.push(Call {
            id,
            process,
            key: key.to_string(),
            invoke,
            complete,
            op,
        });
        id
    }
    fn write(&mut self, p: u64, t: (u64, u64), v: i64) -> usize {
        self.op("k", p, t.0, Some(t.1), RegisterOp::Write(v))
    }
    fn write_info(&mut self, p: u64, t: u64, v: i64) -> usize {
        self.op("k", p, t, None, RegisterOp::Write(v))
    }
    fn read(&mut self, p: u64, t: (u64, u64), v: Option<i64>) -> usize {
        self.op("k", p, t.0, Some(t.1), RegisterOp::Read(v))
    }
    fn cas(&mut self, p: u64, t: (u64, u64), from: i64, to: i64) -> usize {
        self.op("k", p, t.0, Some(t.1), RegisterOp::Cas { from, to })
    }
    fn cas_info(&mut self, p: u64, t: u64, from: i64, to: i64) -> usize {
        self.op("k", p, t, None, RegisterOp::Cas { from, to })
    }
    fn check(&self) -> Report {
        check(&self.calls, &Budget::default())
    }
}

fn cx(r: &Report, key: &str) -> Counterexample {
    let k = r.key(key).expect("key reported");
    assert_eq!(k.valid, Validity::Invalid, "{r:#?}");
    k.counterexample.clone().expect("counterexample")
}

#[test]
fn empty_history_is_valid() {
    let r = check(&[], &Budget::default());
    assert_eq!(r.valid, Validity::Valid);
    assert!(r.keys.is_empty());
}

#[test]
fn sequential_history_is_valid() {
    let mut h = H::default();
    h.read(0, (0, 1), None);
    h.write(0, (2, 3), 1);
    h.read(1, (4, 5), Some(1));
    h.write(1, (6, 7), 2);
    h.cas(0, (8, 9), 2, 3);
    h.read(0, (10, 11), Some(3));
    let r = h.check();
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.keys[0].ops, 6);
    assert_eq!(r.keys[0].dropped, 0);
}

#[test]
fn overlapping_ops_in_the_only_order_that_works() {
    // Two overlapping writes; reads during and after pin the order 2 before 1, which is
    // the reverse of their invocation order.
    let mut h = H::default();
    h.write(0, (0, 100), 1);
    h.write(1, (10, 90), 2);
    h.read(2, (20, 50), Some(2));
    h.read(3, (110, 120), Some(1));
    // A read overlapping everything may see the initial absence.
    h.read(4, (0, 200), None);
    let r = h.check();
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");

    // After both writes completed and a read saw 1, seeing 2 again is impossible.
    h.read(5, (130, 140), Some(2));
    assert_eq!(h.check().valid, Validity::Invalid);
}

#[test]
fn unknown_write_read_later_is_valid() {
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    h.write_info(1, 20, 2);
    h.read(2, (30, 40), Some(1));
    h.read(2, (1000, 1010), Some(2));
    let r = h.check();
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.keys[0].dropped, 0, "an observed unknown write is kept");
    // But it cannot have taken effect before it was invoked.
    let mut early = H::default();
    early.read(2, (0, 10), Some(2));
    early.write_info(1, 20, 2);
    let r = early.check();
    assert_eq!(cx(&r, "k").op.id, 0);
}

#[test]
fn unknown_write_never_read_is_valid_and_dropped() {
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    h.write_info(1, 20, 2);
    h.read(2, (30, 40), Some(1));
    h.read(2, (1000, 1010), Some(1));
    // Unknown reads say nothing, even absurd ones.
    h.op("k", 3, 50, None, RegisterOp::Read(Some(99)));
    let r = h.check();
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.keys[0].ops, 5);
    assert_eq!(r.keys[0].dropped, 2);
}

#[test]
fn cas_chains_are_valid() {
    let mut h = H::default();
    h.write(0, (0, 10), 0);
    // Invoked in the reverse of the order they must take effect in.
    h.cas(1, (20, 60), 1, 2);
    h.cas(2, (25, 55), 0, 1);
    h.read(3, (70, 80), Some(2));
    // An unknown cas whose result only another unknown cas saw, which a read saw.
    h.cas_info(4, 90, 2, 3);
    h.cas_info(5, 95, 3, 4);
    h.read(3, (200, 210), Some(4));
    let r = h.check();
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.keys[0].dropped, 0);

    // Break the chain: nothing ever made it 3 before the cas from 3 took effect.
    let mut bad = H::default();
    bad.write(0, (0, 10), 0);
    bad.cas(1, (20, 30), 0, 1);
    bad.cas(2, (40, 50), 2, 3);
    bad.read(3, (60, 70), Some(3));
    assert_eq!(bad.check().valid, Validity::Invalid);
}

#[test]
fn stale_read_is_invalid() {
    let mut h = H::default();
    let w1 = h.write(0, (0, 10), 1);
    let w2 = h.write(1, (20, 30), 2);
    let r = h.read(2, (40, 50), Some(1));
    let report = h.check();
    assert_eq!(report.valid, Validity::Invalid);
    let c = cx(&report, "k");
    assert_eq!(c.key, "k");
    assert_eq!(c.op.id, r);
    assert_eq!(c.op.op, RegisterOp::Read(Some(1)));
    assert_eq!(c.op.complete, Some(50));
    assert_eq!(c.linearized, vec![w1, w2]);
    assert_eq!(c.value, Some(2));
    assert!(c.concurrent.is_empty());
}

#[test]
fn lost_write_is_invalid() {
    let mut h = H::default();
    let w = h.write(0, (0, 10), 1);
    let r = h.read(1, (20, 30), None);
    let c = cx(&h.check(), "k");
    assert_eq!(c.op.id, r);
    assert_eq!(c.linearized, vec![w]);
    assert_eq!(c.value, Some(1));

    // The same with an older value instead of absence.
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    h.write(0, (20, 30), 2);
    h.read(1, (35, 36), Some(2));
    h.write(2, (40, 50), 3);
    let r = h.read(1, (60, 70), Some(2));
    let c = cx(&h.check(), "k");
    assert_eq!(c.op.id, r);
    assert_eq!(c.value, Some(3));
}

#[test]
fn cas_from_a_value_never_current_is_invalid() {
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    // 2 is only written after this cas completed.
    let c = h.cas(1, (20, 30), 2, 3);
    h.write(2, (40, 50), 2);
    let report = h.check();
    let x = cx(&report, "k");
    assert_eq!(x.op.id, c);
    assert_eq!(x.value, Some(1));
}

#[test]
fn read_of_a_never_written_value_is_invalid() {
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    let w = h.write(1, (5, 50), 2);
    let r = h.read(2, (20, 30), Some(7));
    let x = cx(&h.check(), "k");
    assert_eq!(x.op.id, r);
    assert_eq!(x.concurrent.len(), 1);
    assert_eq!(x.concurrent[0].id, w);
}

#[test]
fn only_the_bad_key_is_reported() {
    let mut h = H::default();
    h.op("a", 0, 0, Some(10), RegisterOp::Write(1));
    h.op("b", 1, 0, Some(10), RegisterOp::Write(1));
    h.op("a", 0, 20, Some(30), RegisterOp::Write(2));
    h.op("b", 1, 20, Some(30), RegisterOp::Write(2));
    h.op("a", 2, 40, Some(50), RegisterOp::Read(Some(2)));
    let bad = h.op("b", 3, 40, Some(50), RegisterOp::Read(Some(1)));
    let r = h.check();
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.keys.len(), 2);
    assert_eq!(r.key("a").map(|k| k.valid), Some(Validity::Valid));
    let invalid: Vec<&str> = r.invalid_keys().map(|k| k.key.as_str()).collect();
    assert_eq!(invalid, vec!["b"]);
    let c = cx(&r, "b");
    assert_eq!(c.key, "b");
    assert_eq!(c.op.id, bad);
}

/// The op a search names as stuck, and the prefix before it, by id.
fn stuck(calls: &[Call], prune: bool) -> (usize, Vec<usize>) {
    let refs: Vec<&Call> = calls.iter().collect();
    let ops = prepare(&refs);
    match search(&ops, 1_000_000, prune).0 {
        Outcome::Invalid { stuck, prefix, .. } => (
            ops[stuck].call.id,
            prefix.iter().map(|&i| ops[i].call.id).collect(),
        ),
        _ => panic!("not found invalid"),
    }
}

#[test]
fn pruned_search_explains_failures_like_the_plain_one() {
    // Stale read: pruning stops at the second write (the read still needs 1), and the
    // explanation moves on to the read.
    let mut h = H::default();
    let w1 = h.write(0, (0, 10), 1);
    let w2 = h.write(1, (20, 30), 2);
    let r = h.read(2, (40, 50), Some(1));
    assert_eq!(stuck(&h.calls, true), (r, vec![w1, w2]));
    assert_eq!(stuck(&h.calls, false), (r, vec![w1, w2]));
    // Lost write: pruning stops at the write itself (absence is still owed to the read).
    let mut h = H::default();
    let w = h.write(0, (0, 10), 1);
    h.read(1, (5, 8), None);
    let r = h.read(1, (20, 30), None);
    assert_eq!(stuck(&h.calls, true), (r, vec![1, w]));
    assert_eq!(stuck(&h.calls, false), (r, vec![1, w]));
}

#[test]
fn configurations_are_remembered_whatever_the_path() {
    let mut seen = Seen::default();
    let mut set = Linearized::new(200);
    assert!(seen.insert(&set, None));
    assert!(!seen.insert(&set, None));
    // {0..=63, 70, 130} reached in two different orders, with detours.
    for i in (0..64).chain([70, 130]) {
        set.set(i);
    }
    assert!(seen.insert(&set, Some(1)));
    assert!(seen.insert(&set, Some(2)), "same set, other value");
    let mut other = Linearized::new(200);
    for i in [199, 130, 70, 5].into_iter().chain(0..64) {
        other.set(i);
    }
    other.clear(199);
    assert_eq!((other.low, other.high), (set.low, set.high));
    assert!(!seen.insert(&other, Some(1)));
    other.clear(5);
    assert!(seen.insert(&other, Some(1)), "one op fewer");
    for i in (64..200).rev() {
        other.set(i);
    }
    other.set(5);
    assert_eq!((other.low, other.rest().len()), (3, 1));
    assert!(seen.insert(&other, Some(1)));
    assert_eq!(seen.len(), 5);
}

#[test]
fn report_serializes_verdicts_as_jepsen_does() {
    assert_eq!(serde_json::json!(Validity::Valid), serde_json::json!(true));
    assert_eq!(
        serde_json::json!(Validity::Invalid),
        serde_json::json!(false)
    );
    assert_eq!(
        serde_json::json!(Validity::Unknown),
        serde_json::json!("unknown")
    );
    let mut h = H::default();
    h.write(0, (0, 10), 1);
    h.read(1, (20, 30), None);
    let v = serde_json::to_value(h.check()).expect("serializes");
    assert_eq!(v["valid"], false);
    assert_eq!(v["keys"][0]["valid"], false);
    let c = &v["keys"][0]["counterexample"];
    assert_eq!(
        c["op"]["op"],
        serde_json::json!({"f": "read", "value": null})
    );
    assert_eq!(c["linearized"], serde_json::json!([0]));
    assert_eq!(c["value"], 1);
}

#[test]
fn verdicts_combine() {
    use Validity::*;
    assert_eq!(Validity::all([]), Valid);
    assert_eq!(Validity::all([Valid, Unknown, Valid]), Unknown);
    assert_eq!(Validity::all([Unknown, Invalid, Valid]), Invalid);
}

/// What a simulated client run produced.
struct Sim {
    calls: Vec<Call>,
    unknown: usize,
    unknown_applied: usize,
}

/// A real register used by `procs` concurrent clients with random latencies: every op
/// takes effect at a random instant inside its interval, so the history is linearizable.
/// `crashes` writes lose their answer; half of those still take effect, possibly
/// after the client gave up.
fn simulate(seed: u64, n: usize, procs: u64, crashes: usize) -> Sim {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clock = vec![0u64; procs as usize];
    let mut names: Vec<u64> = (0..procs).collect();
    // (effect time, call index, cas wants success); effect None = never took effect.
    let mut effects: Vec<(u64, usize, bool)> = Vec::new();
    let mut calls = Vec::with_capacity(n);
    let mut next_value = 0i64;
    let (mut unknown, mut unknown_applied) = (0, 0);
    let mut crash_at = HashSet::new();
    while crash_at.len() < crashes.min(n) {
        crash_at.insert(rng.gen_range(0..n));
    }
    for id in 0..n {
        let p = (0..procs as usize).min_by_key(|&p| clock[p]).unwrap_or(0);
        let invoke = clock[p] + rng.gen_range(0..20_000);
        let latency = rng.gen_range(50_000..2_000_000);
        let crash = crash_at.contains(&id);
        let kind = if crash { 10 } else { rng.gen_range(0..20) };
        let op = match kind {
            0..=9 => RegisterOp::Read(None), // value filled in below
            10..=16 => {
                next_value += 1;
                RegisterOp::Write(next_value)
            }
            _ => {
                next_value += 1;
                RegisterOp::Cas {
                    from: 0,
                    to: next_value,
                }
            }
        };
        let (complete, effect) = if crash {
            unknown += 1;
            clock[p] = invoke + 3 * latency;
            names[p] += procs; // a crashed process comes back under a new name
            if rng.gen_bool(0.5) {
                unknown_applied += 1;
                (None, Some(invoke + rng.gen_range(0..3 * latency)))
            } else {
                (None, None)
            }
        } else {
            clock[p] = invoke + latency;
            (
                Some(invoke + latency),
                Some(invoke + rng.gen_range(0..=latency)),
            )
        };
        if let Some(t) = effect {
            effects.push((t, id, rng.gen_bool(0.8)));
        }
        calls.push(Call {
            id,
            process: names[p],
            key: "r".into(),
            invoke,
            complete,
            op,
        });
    }
    // Play the effects in time order on a register to learn what reads saw and which
    // cas succeeded; a cas told to fail compares against a value it cannot hold.
    effects.sort_unstable();
    let mut value: Option<i64> = None;
    let mut failed = HashSet::new();
    for (_, id, succeed) in effects {
        match &mut calls[id].op {
            RegisterOp::Read(v) => *v = value,
            RegisterOp::Write(v) => value = Some(*v),
            RegisterOp::Cas { from, to } => match value {
                Some(cur) if succeed => {
                    *from = cur;
                    value = Some(*to);
                }
                _ => {
                    failed.insert(id);
                }
            },
        }
    }
    // Certainly-failed cas are the caller's to drop.
    calls.retain(|c| !failed.contains(&c.id));
    Sim {
        calls,
        unknown,
        unknown_applied,
    }
}

/// Turns the last completed read into a stale one: it now sees the value of a write X
/// that another write Z overwrote before the read began (X ended before Z started, Z
/// before the read). Returns the read's index, if the history has such a pattern.
fn make_stale_read(calls: &mut [Call]) -> Option<usize> {
    let completed_writer = |c: &&Call| c.complete.is_some() && written(c.op).is_some();
    let ended_before = |t: u64| move |c: &&Call| c.complete.is_some_and(|d| d < t);
    let r = calls
        .iter()
        .rposition(|c| c.complete.is_some() && matches!(c.op, RegisterOp::Read(_)))?;
    let z = calls
        .iter()
        .filter(completed_writer)
        .filter(ended_before(calls[r].invoke))
        .max_by_key(|c| c.complete)?;
    let x = calls
        .iter()
        .filter(completed_writer)
        .find(ended_before(z.invoke))?;
    calls[r].op = RegisterOp::Read(written(x.op));
    Some(r)
}

fn timed_check(what: &str, calls: &[Call]) -> Report {
    let start = Instant::now();
    let r = check(calls, &Budget::default());
    let took = start.elapsed();
    for k in &r.keys {
        println!(
            "{what}: {} ops ({} dropped): {:?}, {} states, {took:?}",
            k.ops, k.dropped, k.valid, k.states
        );
    }
    r
}

#[test]
fn large_concurrent_history_checks_quickly() {
    let mut sim = simulate(7, 5_000, 10, 50);
    assert_eq!(sim.unknown, 50);
    assert!(sim.unknown_applied > 5);
    println!(
        "{} unknown, {} took effect",
        sim.unknown, sim.unknown_applied
    );
    let r = timed_check("10 processes", &sim.calls);
    assert_eq!(r.valid, Validity::Valid, "{:#?}", r.keys[0].counterexample);
    assert!(r.keys[0].ops > 4_500);
    assert!(r.keys[0].dropped > 0);

    let busier = simulate(8, 5_000, 30, 50);
    let r = timed_check("30 processes", &busier.calls);
    assert_eq!(r.valid, Validity::Valid, "{:#?}", r.keys[0].counterexample);

    let stale = make_stale_read(&mut sim.calls).expect("a read to corrupt");
    let r = timed_check("10 processes, one stale read", &sim.calls);
    assert_eq!(cx(&r, "r").op.id, sim.calls[stale].id);
}

#[test]
fn simulated_histories_are_valid_and_corrupted_ones_are_not() {
    for seed in 0..40 {
        let mut sim = simulate(seed, 300, 5, 10);
        let r = check(&sim.calls, &Budget::default());
        assert_eq!(r.valid, Validity::Valid, "seed {seed}: {r:#?}");
        if make_stale_read(&mut sim.calls).is_some() {
            let r = check(&sim.calls, &Budget::default());
            assert_eq!(r.valid, Validity::Invalid, "seed {seed}");
            assert!(cx(&r, "r").op.complete.is_some());
        }
    }
}

#[test]
fn tiny_budget_gives_unknown() {
    let sim = simulate(3, 1_000, 10, 10);
    let r = check(
        &sim.calls,
        &Budget {
            max_states_per_key: 50,
        },
    );
    assert_eq!(r.valid, Validity::Unknown);
    assert_eq!(r.keys[0].valid, Validity::Unknown);
    assert!(r.keys[0].counterexample.is_none());
    assert_eq!(
        serde_json::to_value(&r).expect("serializes")["valid"],
        "unknown"
    );
    // An invalid key still makes the whole verdict invalid.
    let mut calls = sim.calls.clone();
    calls.push(Call {
        id: 1_000_000,
        process: 0,
        key: "other".into(),
        invoke: 0,
        complete: Some(1),
        op: RegisterOp::Read(Some(1)),
    });
    assert_eq!(
        check(
            &calls,
            &Budget {
                max_states_per_key: 50
            }
        )
        .valid,
        Validity::Invalid
    );
}

/// Tries every order: is there one in which each completed op (and any subset of the
/// unknown ones) takes effect, respecting real time, with every op seeing what it saw?
fn brute_force(calls: &[Call]) -> bool {
    fn go(calls: &[Call], used: &mut [bool], state: Option<i64>) -> bool {
        if calls
            .iter()
            .zip(used.iter())
            .all(|(c, u)| *u || c.complete.is_none())
        {
            return true;
        }
        for i in 0..calls.len() {
            if used[i] {
                continue;
            }
            let blocked = calls.iter().enumerate().any(|(j, o)| {
                !used[j] && j != i && o.complete.is_some_and(|t| t < calls[i].invoke)
            });
            if blocked {
                continue;
            }
            if let Some(s) = step(state, calls[i].op) {
                used[i] = true;
                if go(calls, used, s) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    go(calls, &mut vec![false; calls.len()], None)
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = StdRng::seed_from_u64(42);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..6_000 {
        let n = rng.gen_range(1..=7);
        // Callers promise unique written values, but the checker stays exact without.
        let unique = round % 2 == 0;
        let mut calls = Vec::new();
        for id in 0..n {
            let invoke = rng.gen_range(0..12);
            let complete = rng.gen_bool(0.8).then(|| invoke + rng.gen_range(0..6));
            // Written values are the id (or small numbers that repeat), observed ones
            // are any id or absence.
            let any = |rng: &mut StdRng| rng.gen_range(0..n as i64 + 1);
            let value = if unique {
                id as i64
            } else {
                rng.gen_range(0..3)
            };
            let op = match rng.gen_range(0..3) {
                0 => {
                    let v = any(&mut rng);
                    RegisterOp::Read((v < n as i64).then_some(v))
                }
                1 => RegisterOp::Write(value),
                _ => RegisterOp::Cas {
                    from: any(&mut rng),
                    to: value,
                },
            };
            calls.push(Call {
                id,
                process: id as u64,
                key: "k".into(),
                invoke,
                complete,
                op,
            });
        }
        let want = brute_force(&calls);
        let got = check(&calls, &Budget::default());
        let refs: Vec<&Call> = calls.iter().collect();
        let plain = search(&prepare(&refs), 1_000_000, false).0;
        assert_eq!(
            matches!(plain, Outcome::Valid),
            want,
            "round {round} unpruned"
        );
        assert_eq!(
            got.valid,
            if want {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            "round {round}: {calls:#?}\n{got:#?}"
        );
        if want {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    println!("{valid} valid, {invalid} invalid");
    assert!(
        valid > 600 && invalid > 600,
        "{valid} valid, {invalid} invalid"
    );
}
