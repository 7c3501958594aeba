//! The stage DAG: edges from artefact references only, cycle detection with the cycle spelled out, topological order.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, EdgeRef, IntoNeighbors, Reversed, Visitable};
use std::collections::{BTreeSet, VecDeque};

/// A DAG over stage indices `0..n`; an edge `a -> b` means `b` reads an output of `a`.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<(), ()>,
    order: Vec<usize>,
}

impl Dag {
    /// Builds the DAG, or returns every cycle found, each as the list of stages along it (first repeated at the end).
    pub fn new(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Result<Dag, Vec<Vec<usize>>> {
        let mut graph = DiGraph::with_capacity(n, 0);
        for _ in 0..n {
            graph.add_node(());
        }
        let mut seen = BTreeSet::new();
        for (a, b) in edges {
            if seen.insert((a, b)) {
                graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
            }
        }
        // Kahn's algorithm always taking the lowest ready index: a stable order keeps runs and logs reproducible.
        let order = stable_topo_order(&graph);
        if order.len() == n { Ok(Dag { graph, order }) } else { Err(cycles(&graph)) }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every stage after all the stages it reads from; ties broken by index.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn parents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph.edges_directed(NodeIndex::new(i), petgraph::Incoming).map(|e| e.source().index())
    }

    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph.edges_directed(NodeIndex::new(i), petgraph::Outgoing).map(|e| e.target().index())
    }

    /// All stages that read, directly or not, from stage `i`.
    pub fn descendants(&self, i: usize) -> BTreeSet<usize> {
        reachable(&self.graph, i)
    }

    /// All stages that stage `i` reads from, directly or not.
    pub fn ancestors(&self, i: usize) -> BTreeSet<usize> {
        reachable(Reversed(&self.graph), i)
    }
}

/// The nodes reachable from `i` along the graph's edges, `i` itself excluded.
fn reachable<G>(graph: G, i: usize) -> BTreeSet<usize>
where
    G: IntoNeighbors<NodeId = NodeIndex> + Visitable,
{
    let mut bfs = Bfs::new(graph, NodeIndex::new(i));
    let mut out = BTreeSet::new();
    while let Some(n) = bfs.next(graph) {
        out.insert(n.index());
    }
    out.remove(&i);
    out
}

/// Kahn's algorithm taking the lowest ready index first (petgraph's `toposort` follows its own DFS order, which
/// would reorder stages when an unrelated edge is added).
fn stable_topo_order(graph: &DiGraph<(), ()>) -> Vec<usize> {
    let n = graph.node_count();
    let mut indegree: Vec<usize> =
        (0..n).map(|i| graph.edges_directed(NodeIndex::new(i), petgraph::Incoming).count()).collect();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for e in graph.edges_directed(NodeIndex::new(i), petgraph::Outgoing) {
            let j = e.target().index();
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    order
}

/// One concrete cycle per strongly connected component that has one.
fn cycles(graph: &DiGraph<(), ()>) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    for scc in tarjan_scc(graph) {
        let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.first().expect("an SCC is never empty");
        let self_loop = graph.find_edge(NodeIndex::new(start), NodeIndex::new(start)).is_some();
        if members.len() == 1 && !self_loop {
            continue;
        }
        // Breadth-first from `start` back to `start` inside the component: the shortest cycle through it.
        let mut prev = vec![usize::MAX; graph.node_count()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(i) = queue.pop_front() {
            for e in graph.edges_directed(NodeIndex::new(i), petgraph::Outgoing) {
                let j = e.target().index();
                if j == start {
                    closing = Some(i);
                    break 'search;
                }
                if members.contains(&j) && prev[j] == usize::MAX {
                    prev[j] = i;
                    queue.push_back(j);
                }
            }
        }
        let mut back = Vec::new();
        let mut at = closing.expect("a strongly connected component with an edge closes a cycle");
        while at != start {
            back.push(at);
            at = prev[at];
        }
        let mut path = vec![start];
        path.extend(back.into_iter().rev());
        path.push(start);
        found.push(path);
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parents_before_children_with_stable_ties() {
        let dag = Dag::new(4, [(2, 0), (3, 1), (0, 1)]).unwrap();
        assert_eq!(dag.order(), &[2, 0, 3, 1]);
        assert_eq!(dag.descendants(2), BTreeSet::from([0, 1]));
        assert_eq!(dag.ancestors(1), BTreeSet::from([0, 2, 3]));
    }

    #[test]
    fn spells_out_a_cycle_in_edge_order() {
        let cycles = Dag::new(3, [(0, 1), (1, 2), (2, 0)]).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2, 0]]);
    }

    #[test]
    fn reports_a_self_loop() {
        let cycles = Dag::new(2, [(1, 1), (0, 1)]).unwrap_err();
        assert_eq!(cycles, vec![vec![1, 1]]);
    }
}
