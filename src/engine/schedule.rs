//! The order stale stages go in, as a pure state machine over stage indices: which stages may start, what a
//! finished stage releases, what a failed one takes down with it. Both executors drive it: the local one starts
//! a stage when it is ready and finishes it when its thread reports; the Slurm one starts a group of stages (a job
//! array) when their parents outside the group have jobs, and counts a submitted job as finished, since Slurm's
//! `afterok` dependencies order the rest.

use std::collections::{BTreeSet, VecDeque};

use crate::engine::graph::Dag;

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not stale: its entry is reused, it counts as finished from the start.
    Fresh,
    /// Stale, with parents not finished yet.
    Waiting,
    /// Stale, every parent finished: it may start.
    Ready,
    Running,
    Finished,
    Failed,
    /// Not run because a stage it depends on failed.
    Skipped,
}

/// The schedule of one run.
#[derive(Debug, Clone)]
pub struct Schedule<'a> {
    dag: &'a Dag,
    state: Vec<State>,
    /// Unfinished stale parents of each stage.
    waiting: Vec<usize>,
    /// Ready stages, in the order they became ready (DAG order for the first ones).
    ready: VecDeque<usize>,
    /// Nothing more starts (a failure without `--keep-going`).
    stopped: bool,
}

impl<'a> Schedule<'a> {
    /// A schedule for the `stale` stages of `dag`; every other stage counts as finished.
    pub fn new(dag: &'a Dag, stale: &BTreeSet<usize>) -> Schedule<'a> {
        let n = dag.len();
        let waiting: Vec<usize> = (0..n).map(|i| dag.parents(i).filter(|p| stale.contains(p)).count()).collect();
        let state: Vec<State> = (0..n)
            .map(|i| match (stale.contains(&i), waiting[i]) {
                (false, _) => State::Fresh,
                (true, 0) => State::Ready,
                (true, _) => State::Waiting,
            })
            .collect();
        let ready: VecDeque<usize> = dag.order().iter().copied().filter(|&i| state[i] == State::Ready).collect();
        Schedule { dag, state, waiting, ready, stopped: false }
    }

    pub fn state(&self, i: usize) -> State {
        self.state[i]
    }

    /// The next ready stage, marked running (none once stopped).
    pub fn start_next(&mut self) -> Option<usize> {
        if self.stopped {
            return None;
        }
        let i = self.ready.pop_front()?;
        self.state[i] = State::Running;
        Some(i)
    }

    /// The stages that may start now, in order, without starting them.
    pub fn ready(&self) -> impl Iterator<Item = usize> + '_ {
        self.ready.iter().copied()
    }

    /// Starts a given stage: it must be ready, or wait only on stages in `with` (the other members of a job array,
    /// which Slurm starts together).
    pub fn start(&mut self, i: usize, with: &[usize]) {
        debug_assert!(self.unfinished_parents(i).all(|p| with.contains(&p)), "stage {i} started before its parents");
        self.ready.retain(|&r| r != i);
        self.state[i] = State::Running;
    }

    /// The stale parents of `i` that have not finished.
    pub fn unfinished_parents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.dag.parents(i).filter(|&p| !matches!(self.state[p], State::Fresh | State::Finished))
    }

    /// Marks a running stage finished; its children whose parents have all finished become ready.
    pub fn finish(&mut self, i: usize) {
        self.state[i] = State::Finished;
        // Released children queue in index order (petgraph lists edges newest first).
        let mut children: Vec<usize> = self.dag.children(i).collect();
        children.sort_unstable();
        children.dedup();
        for c in children {
            if self.state[c] == State::Waiting || self.state[c] == State::Running {
                self.waiting[c] = self.waiting[c].saturating_sub(1);
                if self.waiting[c] == 0 && self.state[c] == State::Waiting {
                    self.state[c] = State::Ready;
                    self.ready.push_back(c);
                }
            }
        }
    }

    /// Marks a running stage failed; returns the stages skipped because of it (its descendants not yet run).
    pub fn fail(&mut self, i: usize) -> Vec<usize> {
        self.state[i] = State::Failed;
        let mut skipped = Vec::new();
        for d in self.dag.descendants(i) {
            if matches!(self.state[d], State::Waiting | State::Ready) {
                self.state[d] = State::Skipped;
                skipped.push(d);
            }
        }
        self.ready.retain(|r| !skipped.contains(r));
        skipped
    }

    /// Starts nothing more: stages not started stay as they are (the run reports them as not run).
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 → 1 → 3, 0 → 2 → 3, 4 alone.
    fn diamond() -> Dag {
        Dag::new(5, [(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap()
    }

    fn drain(s: &mut Schedule<'_>) -> Vec<usize> {
        let mut order = Vec::new();
        while let Some(i) = s.start_next() {
            s.finish(i);
            order.push(i);
        }
        order
    }

    #[test]
    fn stages_run_after_their_parents_in_dag_order() {
        let dag = diamond();
        let mut s = Schedule::new(&dag, &(0..5).collect());
        assert_eq!(drain(&mut s), [0, 4, 1, 2, 3]);
        assert!((0..5).all(|i| s.state(i) == State::Finished));
    }

    #[test]
    fn fresh_stages_count_as_finished() {
        let dag = diamond();
        let mut s = Schedule::new(&dag, &[1, 3].into());
        assert_eq!(s.state(0), State::Fresh);
        assert_eq!(drain(&mut s), [1, 3]);
    }

    #[test]
    fn a_stage_waits_for_every_parent() {
        let dag = diamond();
        let mut s = Schedule::new(&dag, &(0..4).collect());
        assert_eq!(s.start_next(), Some(0));
        s.finish(0);
        let (a, b) = (s.start_next().unwrap(), s.start_next().unwrap());
        assert_eq!((a, b), (1, 2));
        s.finish(a);
        assert_eq!(s.start_next(), None, "3 still waits for 2");
        s.finish(b);
        assert_eq!(s.start_next(), Some(3));
    }

    #[test]
    fn a_failure_skips_its_descendants_only() {
        let dag = diamond();
        let mut s = Schedule::new(&dag, &(0..5).collect());
        assert_eq!(s.start_next(), Some(0));
        s.finish(0);
        assert_eq!(s.start_next(), Some(4));
        assert_eq!(s.start_next(), Some(1));
        assert_eq!(s.fail(1), [3]);
        assert_eq!(s.start_next(), Some(2), "a sibling of the failure goes on");
        s.finish(2);
        assert_eq!(s.start_next(), None);
        assert_eq!(s.state(3), State::Skipped);
    }

    #[test]
    fn members_of_a_group_may_start_together_despite_edges_between_them() {
        // 0 → 1 inside one group: the group starts when its outside parents have finished.
        let dag = Dag::new(3, [(2, 0), (0, 1)]).unwrap();
        let mut s = Schedule::new(&dag, &(0..3).collect());
        assert_eq!(s.start_next(), Some(2));
        s.finish(2);
        let group = [0, 1];
        assert!(group.iter().all(|&m| s.unfinished_parents(m).all(|p| group.contains(&p))));
        for &m in &group {
            s.start(m, &group);
        }
        for &m in &group {
            s.finish(m);
        }
        assert_eq!(s.start_next(), None);
        assert!((0..3).all(|i| s.state(i) == State::Finished));
    }

    #[test]
    fn stopping_leaves_the_rest_unstarted() {
        let dag = diamond();
        let mut s = Schedule::new(&dag, &(0..5).collect());
        let first = s.start_next().unwrap();
        s.stop();
        s.finish(first);
        assert_eq!(s.start_next(), None);
        assert_eq!(s.state(1), State::Ready, "finishing still releases children");
    }
}
