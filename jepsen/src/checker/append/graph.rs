//! Cycles in the list-append dependency graph: strongly connected components (Tarjan) and,
//! inside one, a shortest cycle of the mildest kind the edges allow. Pure graph search over
//! edge-kind bit masks; what the edges mean and how anomalies are named is the parent's.

use super::{label, Adjacency, DATA, G_SINGLE_TRIES, NONE, RT, RW, WR, WW};
use std::collections::VecDeque;

/// One short cycle in a strongly connected component, as (nodes, kind of the edge from
/// each node to the next). Looks for the mildest anomaly first: G0, G1c, G-single, G2,
/// then the same with real-time edges allowed.
pub(super) fn cycle_in_component(
    adj: &Adjacency,
    comp: &[u32],
    local_of: &mut [u32],
) -> Option<(Vec<u32>, Vec<u8>)> {
    for (i, &g) in comp.iter().enumerate() {
        local_of[g as usize] = i as u32;
    }
    let local: Adjacency = comp
        .iter()
        .map(|&g| {
            adj[g as usize]
                .iter()
                .filter_map(|&(w, m)| {
                    let l = local_of[w as usize];
                    (l != NONE).then_some((l, m))
                })
                .collect()
        })
        .collect();
    for &g in comp {
        local_of[g as usize] = NONE;
    }
    let found = [0, RT].into_iter().find_map(|rt| {
        cycle_within(&local, WW | rt)
            .or_else(|| cycle_within(&local, WW | WR | rt))
            .or_else(|| single_rw_cycle(&local, WW | WR | rt))
            .or_else(|| cycle_within(&local, DATA | rt))
    })?;
    let (mut nodes, mut labels) = found;
    // Start at the earliest transaction, for stable reports.
    if let Some(first) = (0..nodes.len()).min_by_key(|&i| comp[nodes[i] as usize]) {
        nodes.rotate_left(first);
        labels.rotate_left(first);
    }
    Some((
        nodes.into_iter().map(|l| comp[l as usize]).collect(),
        labels,
    ))
}

fn edge_bits(g: &Adjacency, from: u32, to: u32) -> u8 {
    g[from as usize]
        .iter()
        .find(|e| e.0 == to)
        .map_or(0, |e| e.1)
}

/// A short cycle using only edges of the kinds in `mask`, if there is one.
fn cycle_within(g: &Adjacency, mask: u8) -> Option<(Vec<u32>, Vec<u8>)> {
    let sub = tarjan(g, mask);
    let smallest = sub.iter().min_by_key(|c| c.len())?;
    let start = *smallest.first()?;
    let nodes = shortest_path(g, start, start, mask)?;
    let labels = (0..nodes.len())
        .map(|i| label(edge_bits(g, nodes[i], nodes[(i + 1) % nodes.len()]) & mask))
        .collect();
    Some((nodes, labels))
}

/// A cycle of one anti-dependency closed by edges of the kinds in `mask`.
fn single_rw_cycle(g: &Adjacency, mask: u8) -> Option<(Vec<u32>, Vec<u8>)> {
    let rw_edges = g.iter().enumerate().flat_map(|(a, out)| {
        out.iter()
            .filter(|e| e.1 & RW != 0)
            .map(move |&(b, bits)| (a as u32, b, bits))
    });
    for (a, b, bits) in rw_edges.take(G_SINGLE_TRIES) {
        let Some(path) = shortest_path(g, b, a, mask) else {
            continue;
        };
        // path runs b ..= a; the cycle is a, b, ..., back to a.
        let mut nodes = Vec::with_capacity(path.len());
        nodes.push(a);
        nodes.extend_from_slice(&path[..path.len() - 1]);
        let mut labels = vec![label(bits & (mask | RW))];
        labels.extend(
            path.windows(2)
                .map(|w| label(edge_bits(g, w[0], w[1]) & mask)),
        );
        return Some((nodes, labels));
    }
    None
}

/// The nodes of a shortest path from `from` to `to` over edges of the kinds in `mask`,
/// both ends included; when `from == to`, a shortest cycle through it, listed once.
fn shortest_path(g: &Adjacency, from: u32, to: u32, mask: u8) -> Option<Vec<u32>> {
    let mut parent = vec![NONE; g.len()];
    let mut queue = VecDeque::from([from]);
    parent[from as usize] = from;
    while let Some(v) = queue.pop_front() {
        for &(w, bits) in &g[v as usize] {
            if bits & mask == 0 {
                continue;
            }
            if w == to {
                let mut path = if from == to { vec![] } else { vec![to] };
                let mut x = v;
                loop {
                    path.push(x);
                    if x == from {
                        break;
                    }
                    x = parent[x as usize];
                }
                path.reverse();
                return Some(path);
            }
            if parent[w as usize] == NONE {
                parent[w as usize] = v;
                queue.push_back(w);
            }
        }
    }
    None
}

/// Tarjan's strongly connected components over the edges of the kinds in `mask`,
/// iteratively (dependency chains can be tens of thousands long); only components of more
/// than one node, since the graph has no self-loops.
pub(super) fn tarjan(g: &Adjacency, mask: u8) -> Vec<Vec<u32>> {
    let n = g.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    // (node, how many of its edges were looked at)
    let mut calls: Vec<(u32, usize)> = Vec::new();
    let mut counter = 0u32;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root as u32);
        on_stack[root] = true;
        calls.push((root as u32, 0));
        while let Some(top) = calls.last_mut() {
            let v = top.0 as usize;
            if let Some(&(w, bits)) = g[v].get(top.1) {
                top.1 += 1;
                if bits & mask == 0 {
                    continue;
                }
                let w = w as usize;
                if index[w] == NONE {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w as u32);
                    on_stack[w] = true;
                    calls.push((w as u32, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(p, _)) = calls.last() {
                    low[p as usize] = low[p as usize].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w as usize] = false;
                        comp.push(w);
                        if w as usize == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        out.push(comp);
                    }
                }
            }
        }
    }
    out
}
