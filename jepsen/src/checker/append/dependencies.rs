//! The dependency graph of a list-append history: which transaction must precede which
//! (ww, wr and rw dependencies from the keys' version orders, real-time order from the
//! clock), and each cycle of it reported as an anomaly named by its edges' kinds (G0, G1c,
//! G-single, G2, with `-realtime` when real time closes it). Finding the cycles is
//! `graph`'s pure search; this module is what the edges mean and how a cycle is explained.

use super::graph::{cycle_in_component, tarjan};
use super::report::{summary, Dependency, Detail, Kind, Step};
use super::{Adjacency, Checker, Order, Outcome, Txn, ALL, NONE, RT, RW, WR, WW};

#[derive(Debug, Clone, Copy)]
pub(super) enum Why {
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
pub(super) struct Edge {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) why: Why,
}

impl<'a> Checker<'a> {
    /// The dependency graph's edges, sorted by (from, to, kind).
    pub(super) fn edges(&self, orders: &[Order]) -> Vec<Edge> {
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
    pub(super) fn realtime_edges(&self, edges: &mut Vec<Edge>) {
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
    pub(super) fn cycles(&mut self, edges: &[Edge]) {
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
