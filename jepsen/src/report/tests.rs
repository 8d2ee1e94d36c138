//! Tests of `report`: known-good and known-bad inputs, each able to fail.

use super::charts::{MAX_POINTS, SHADE_ALPHA};
use super::html::percentile;
use super::*;
use crate::history::Process;
use serde_json::json;

const S: u64 = 1_000_000_000;

fn op(process: Process, kind: OpType, f: &str, time: u64, value: Value) -> Op {
    Op {
        index: 0,
        time,
        process,
        kind,
        f: f.into(),
        value,
        error: None,
        member: None,
        revision: None,
    }
}

fn nem(kind: OpType, f: &str, time: u64, value: Value) -> Op {
    op(Process::NEMESIS, kind, f, time, value)
}

fn indexed(mut h: Vec<Op>) -> Vec<Op> {
    h.sort_by_key(|o| o.time);
    for (i, o) in h.iter_mut().enumerate() {
        o.index = i as u64;
    }
    h
}

/// Counts rects shaded with the fault-window opacity.
fn shaded_rects(svg: &str) -> usize {
    let needle = format!("opacity=\"{SHADE_ALPHA}\"");
    svg.lines()
        .filter(|l| l.starts_with("<rect") && l.contains(&needle))
        .count()
}

#[test]
fn windows_pair_starts_with_stops_and_ignore_instant_faults() {
    let h = indexed(vec![
        // Invocation and completion both recorded: the completion's time counts.
        nem(
            OpType::Invoke,
            "start-partition",
            S,
            json!({"mode": "halves"}),
        ),
        nem(
            OpType::Info,
            "start-partition",
            S + 10,
            json!({"mode": "halves"}),
        ),
        // Instant faults make no window, and do not close one.
        nem(OpType::Invoke, "compact", 2 * S, json!({"revision": 5})),
        nem(OpType::Ok, "compact", 2 * S + 5, json!({"revision": 5})),
        nem(OpType::Info, "kill", 3 * S, json!([0])),
        // Only a completion recorded.
        nem(OpType::Info, "start-kill", 4 * S, json!({"targets": [1]})),
        nem(OpType::Invoke, "stop-partition", 5 * S, json!({})),
        nem(OpType::Info, "stop-partition", 5 * S + 20, json!({})),
        // Only an invocation recorded, and never stopped.
        nem(OpType::Invoke, "start-delay", 6 * S, json!({"ms": 50})),
        nem(OpType::Invoke, "stop-kill", 7 * S, json!({})),
        nem(OpType::Info, "stop-kill", 7 * S + 1, json!({})),
        // A start that failed opened nothing.
        nem(OpType::Invoke, "start-pause", 8 * S, json!({})),
        nem(OpType::Fail, "start-pause", 8 * S + 1, json!({})),
        op(
            Process::Client(0),
            OpType::Invoke,
            "read",
            9 * S,
            json!(null),
        ),
        op(Process::Client(0), OpType::Ok, "read", 10 * S, json!(null)),
    ]);
    let w = fault_windows(&h);
    assert_eq!(
        w.iter()
            .map(|w| (w.kind.as_str(), w.start, w.end))
            .collect::<Vec<_>>(),
        vec![
            ("partition", S + 10, 5 * S + 20),
            ("kill", 4 * S, 7 * S + 1),
            ("delay", 6 * S, 10 * S),
        ]
    );
    assert_eq!(w[0].detail, json!({"mode": "halves"}));
    assert_eq!(w[1].detail, json!({"targets": [1]}));
    assert_eq!(w[2].detail, json!({"ms": 50}));

    let instants = instant_faults(&h);
    assert_eq!(
        instants
            .iter()
            .map(|e| (e.f.as_str(), e.time))
            .collect::<Vec<_>>(),
        vec![("compact", 2 * S + 5), ("kill", 3 * S)]
    );
}

#[test]
fn a_second_start_waits_for_its_own_stop() {
    let h = indexed(vec![
        nem(OpType::Info, "start-partition", S, json!(1)),
        nem(OpType::Info, "start-kill", 2 * S, json!(2)),
        nem(OpType::Info, "stop-partition", 3 * S, json!(null)),
        nem(OpType::Info, "start-partition", 4 * S, json!(3)),
        nem(OpType::Info, "stop-partition", 5 * S, json!(null)),
    ]);
    let w = fault_windows(&h);
    assert_eq!(
        w.iter()
            .map(|w| (w.kind.as_str(), w.start, w.end))
            .collect::<Vec<_>>(),
        vec![
            ("partition", S, 3 * S),
            ("kill", 2 * S, 5 * S),
            ("partition", 4 * S, 5 * S),
        ]
    );
}

fn synthetic() -> Vec<Op> {
    let mut h = Vec::new();
    let fs = ["read", "write", "cas"];
    for i in 0..300u64 {
        let p = Process::Client(i % 5);
        let f = fs[(i % 3) as usize];
        let t = i * 40_000_000; // 12 s of traffic
        let lat = 1_000_000 + (i * 7919 % 200) * 1_000_000;
        h.push(op(p, OpType::Invoke, f, t, json!(null)));
        let kind = match i % 17 {
            0 => OpType::Fail,
            5 => OpType::Info,
            _ => OpType::Ok,
        };
        if i < 295 {
            let mut done = op(p, kind, f, t + lat, json!(null));
            if kind == OpType::Fail {
                done.error = Some("<script>alert('op')</script>".into());
            }
            h.push(done);
        }
    }
    h.push(nem(
        OpType::Invoke,
        "start-partition",
        2 * S,
        json!({"mode": "halves"}),
    ));
    h.push(nem(
        OpType::Info,
        "start-partition",
        2 * S + 1000,
        json!({"mode": "halves"}),
    ));
    h.push(nem(OpType::Invoke, "stop-partition", 4 * S, json!({})));
    h.push(nem(OpType::Info, "stop-partition", 4 * S + 1000, json!({})));
    h.push(nem(
        OpType::Info,
        "start-kill",
        7 * S,
        json!({"targets": [2]}),
    ));
    h.push(nem(OpType::Info, "stop-kill", 9 * S, json!({})));
    h.push(nem(
        OpType::Invoke,
        "compact",
        10 * S,
        json!({"revision": 40}),
    ));
    let mut c = nem(OpType::Info, "compact", 10 * S + 5, json!({"revision": 40}));
    c.error = Some("<script>alert('compact')</script>".into());
    h.push(c);
    indexed(h)
}

#[test]
fn write_produces_charts_and_an_escaped_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = synthetic();
    assert_eq!(fault_windows(&h).len(), 2);
    let results = json!({
        "valid": false,
        "ops": 300,
        "faults": 3,
        "checkers": {
            "linearizable-register": {"valid": true, "count": 120},
            "watch-order": {
                "valid": false,
                "error": "<script>alert('x')</script> went backwards",
            },
            "bank-total": {"valid": "unknown"},
        },
    });
    let out_dir = dir.path().join("report");
    let path = write(&out_dir, &h, &results).expect("write");
    assert_eq!(path, out_dir.join("report.html"));

    for name in ["latency.svg", "rate.svg"] {
        let svg = std::fs::read_to_string(out_dir.join(name)).expect("svg");
        assert!(svg.starts_with("<svg"), "{name} is not an SVG");
        assert!(svg.trim_end().ends_with("</svg>"), "{name} is truncated");
        assert_eq!(shaded_rects(&svg), 2, "{name}: one shaded rect per window");
        assert!(
            svg.contains("partition") && svg.contains("kill"),
            "{name} legend"
        );
        assert!(svg.contains("compact (instant)"), "{name} instant legend");
        assert!(svg.contains("<text"), "{name} has no labels");
    }
    let latency = std::fs::read_to_string(out_dir.join("latency.svg")).expect("svg");
    assert!(latency.contains("read ok") && latency.contains("cas fail"));
    // Every client op is one marker (crosses are two lines), all drawn at opacity 0.7.
    let marked = |tag: &str| {
        latency
            .lines()
            .filter(|l| l.starts_with(tag) && l.contains("opacity=\"0.7\""))
            .count()
    };
    let markers = marked("<circle") + marked("<polygon") + marked("<line") / 2;
    assert_eq!(markers, 300);

    let page = std::fs::read_to_string(&path).expect("html");
    for name in ["linearizable-register", "watch-order", "bank-total"] {
        assert!(page.contains(name), "missing checker {name}");
    }
    assert!(!page.contains("<script"), "unescaped script in the page");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)"));
    assert!(page.contains("&lt;script&gt;alert(&#39;compact&#39;)"));
    assert!(page.contains("class=\"invalid\">INVALID"));
    assert!(page.contains("class=\"valid\">valid"));
    assert_eq!(page.matches("<svg").count(), 2, "both charts inlined");
    // The fault-window table: both windows with their times.
    assert!(page.contains("<td class=\"num\">2.000</td><td class=\"num\">4.000</td>"));
    assert!(page.contains("<td class=\"num\">7.000</td><td class=\"num\">9.000</td>"));
    // Per-f counts, as the synthetic history was built: `read` is every i % 3 == 0.
    let reads = (0..300u64).filter(|i| i % 3 == 0);
    let (mut ok, mut fail, mut info, mut unfinished) = (0, 0, 0, 0);
    for i in reads {
        match (i >= 295, i % 17) {
            (true, _) => {
                info += 1;
                unfinished += 1;
            }
            (false, 0) => fail += 1,
            (false, 5) => info += 1,
            _ => ok += 1,
        }
    }
    let row = format!(
        "<tr><td>read</td><td class=\"num\">{ok}</td><td class=\"num\">{fail}</td>\
         <td class=\"num\">{info}</td><td class=\"num\">{unfinished}</td>"
    );
    assert!(page.contains(&row), "missing {row}");
    assert!(unfinished > 0);
}

#[test]
fn a_long_run_thins_ok_points_but_keeps_every_failure() {
    let mut h = Vec::new();
    let n = 3 * MAX_POINTS as u64;
    for i in 0..n {
        let p = Process::Client(i % 8);
        let f = format!("f{}", i % 30);
        let t = i * 1_000_000;
        h.push(op(p, OpType::Invoke, &f, t, json!(null)));
        let kind = if i % 100 == 0 {
            OpType::Fail
        } else {
            OpType::Ok
        };
        h.push(op(p, kind, &f, t + 500_000, json!(null)));
    }
    let h = indexed(h);
    let svg = latency_svg(&Run::new(&h)).expect("svg");
    let fails = svg
        .lines()
        .filter(|l| l.contains("opacity=\"0.7\"") && l.contains("#D62728"))
        .count();
    let all = svg
        .lines()
        .filter(|l| l.contains("opacity=\"0.7\""))
        .count();
    // Crosses are two lines each, so count loosely: every failure is there (at least
    // one element each), and the total is far below one marker per op.
    assert!(fails as u64 >= n / 100, "only {fails} fail elements");
    assert!(
        (all as u64) < n / 2,
        "{all} elements for {n} ops: not thinned"
    );
    assert!(svg.contains("ok ops shown"));
    // 30 fs × 2 outcomes is too many pairs: the legend lists outcomes and fs apart,
    // outcomes first, and says what it had no room for.
    assert!(svg.contains(">\nok\n<") && svg.contains(">\nfail\n<"));
    assert!(svg.contains("and ") && svg.contains(" more"));
}

#[test]
fn an_empty_history_still_makes_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &[], &json!({"valid": "unknown"})).expect("write");
    let page = std::fs::read_to_string(path).expect("html");
    assert!(page.contains("No checker results."));
    assert!(page.contains("class=\"unknown\">unknown"));
}

#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 0.5), Some(50));
    assert_eq!(percentile(&v, 0.99), Some(99));
    assert_eq!(percentile(&[7], 0.99), Some(7));
    assert_eq!(percentile(&[], 0.5), None);
}
