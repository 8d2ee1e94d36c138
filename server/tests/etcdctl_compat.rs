//! The same etcdctl session against the real etcd and against Setpoint must print the same,
//! apart from ids, terms, ports, sizes and versions (normalized away below).

mod common;

use common::{assert_same_transcript, etcd_bin, etcdctl_input, normalize, setpoint_bin, Cluster};

/// One etcdctl invocation; `stdin` feeds `txn` and values read from standard input.
struct Step {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn step_in(args: &[&str], stdin: &[u8]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: Some(stdin.to_vec()),
    }
}

fn run(endpoint: &str, s: &Step) -> String {
    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
    let out = etcdctl_input(endpoint, &args, s.stdin.as_deref().unwrap_or_default());
    format!(
        "$ etcdctl {}\n{}{}[exit {}]\n",
        s.args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    )
}

fn session() -> Vec<Step> {
    let txn_ok = b"value(\"foo\") = \"bar2\"\n\nput t1 yes\nget foo\n\nput t1 no\n\n".to_vec();
    let txn_fail = b"mod(\"foo\") > \"1000\"\n\nput t2 yes\n\nput t2 no\ndel zoo\n\n".to_vec();
    let big = vec![b'x'; 1_600_000];
    // Longer than the values the in-memory key index keeps: its previous value comes from disk.
    let long = "y".repeat(300);
    vec![
        step(&["put", "foo", "bar"]),
        step(&["put", "foo", "bar2", "--prev-kv"]),
        step(&["get", "foo", "-w", "json"]),
        step(&["put", "foo1", "a"]),
        step(&["put", "foo2", "b"]),
        step(&["put", "zoo", "z"]),
        step(&["get", "foo", "--prefix"]),
        step(&["get", "foo", "--prefix", "--limit", "1", "-w", "json"]),
        step(&["get", "foo", "--prefix", "--keys-only"]),
        step(&["get", "foo", "--prefix", "--rev=5", "-w", "json"]),
        step(&[
            "get",
            "foo",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
        ]),
        step(&[
            "get",
            "foo",
            "--prefix",
            "--sort-by=VALUE",
            "--order=ASCEND",
            "--print-value-only",
        ]),
        // Sorted by values it does not return.
        step(&[
            "get",
            "foo",
            "--prefix",
            "--keys-only",
            "--sort-by=VALUE",
            "--order=DESCEND",
            "-w",
            "json",
        ]),
        step(&["get", "foo1", "--from-key"]),
        step(&["get", "", "--prefix", "--keys-only"]),
        step(&["get", "foo", "--rev=2"]),
        step(&["get", "foo", "--consistency=s", "-w", "json"]),
        step(&["get", "nothing-here", "-w", "json"]),
        step(&["get", "foo", "zoo"]),
        step(&["del", "foo1"]),
        step(&["del", "foo2", "--prev-kv"]),
        step(&["del", "nothing-here"]),
        step_in(&["txn", "-w", "json"], &txn_ok),
        step_in(&["txn"], &txn_fail),
        step(&["get", "t1"]),
        step(&["get", "t2"]),
        step(&["put", "foo", "bar3"]),
        step(&["compaction", "4"]),
        step(&["get", "foo", "--rev=3"]),
        step(&["get", "foo", "--rev=4", "-w", "json"]),
        step(&["get", "foo", "--rev=1000"]),
        step(&["compaction", "3"]),
        step(&["compaction", "1000"]),
        step(&["put", "long", &long]),
        step(&["put", "long", "short", "--prev-kv"]),
        step(&["put", "long", &long]),
        step(&["put", "long", "--ignore-value", "--prev-kv"]),
        step(&["get", "long", "-w", "json"]),
        step(&["put", "", "empty"]),
        step_in(&["put", "big"], &big),
        step(&["put", "k", "--ignore-value"]),
        step(&["del", "", "--prefix"]),
        step(&["get", "", "--prefix", "-w", "json"]),
        step(&["member", "list"]),
        step(&["alarm", "list"]),
        step(&["alarm", "disarm"]),
        step(&["alarm", "list", "-w", "json"]),
        step(&["defrag"]),
        step(&["get", "foo", "--rev=3"]),
    ]
}

/// Runs the session on a fresh single member of `binary`, with a kill -9 and restart at the end.
fn transcript(binary: &std::path::Path) -> String {
    let mut cluster = Cluster::start(binary, 1, &[]);
    let ep = cluster.members[0].endpoint();
    let mut out = String::new();
    for s in session() {
        out.push_str(&run(&ep, &s));
    }
    out.push_str("--- kill -9 and restart ---\n");
    cluster.members[0].kill();
    cluster.members[0].start();
    cluster.wait_ready(0);
    out.push_str(&run(&ep, &step(&["get", "", "--prefix", "-w", "json"])));
    out.push_str(&run(&ep, &step(&["get", "foo", "--rev=3"])));
    normalize(&out)
}

#[test]
fn etcdctl_session_matches_real_etcd() {
    let etcd = etcd_bin()
        .expect("the real etcd is needed for this comparison: install Debian's etcd-server");
    let ours = transcript(&setpoint_bin());
    let theirs = transcript(&etcd);
    assert_same_transcript(&ours, &theirs);
    // Sanity: the session did real work (not two identical failures).
    assert!(ours.contains("\"revision\""), "{ours}");
    assert!(ours.contains("compacted revision 4"), "{ours}");
    println!("{ours}");
}
