//! Per-node timing of a tract plan (what `tract … dump --profile` shows, without the tract
//! command-line tool): each node's evaluation timed over several runs, summed by node and by
//! operator. Used by `examples/profile.rs` for BENCHMARKS.md; never on the door's path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{EvalContext, OpState};
use tract_onnx::tract_core::plan::eval;

use crate::FaceError;

/// Time spent in one node (or, in [`Profile::by_op`], one operator), summed over the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// Node name (or operator name).
    pub name: String,
    /// tract's operator.
    pub op: String,
    /// Mean time per run.
    pub time: Duration,
}

/// A plan's per-node profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Every node, slowest first.
    pub nodes: Vec<NodeTime>,
    /// Mean time per run of the whole plan, as measured around the node calls.
    pub total: Duration,
}

impl Profile {
    /// Time by operator, slowest first.
    pub fn by_op(&self) -> Vec<NodeTime> {
        let mut m: BTreeMap<&str, Duration> = BTreeMap::new();
        for n in &self.nodes {
            *m.entry(&n.op).or_default() += n.time;
        }
        let mut v: Vec<NodeTime> =
            m.into_iter().map(|(op, time)| NodeTime { name: op.to_owned(), op: op.to_owned(), time }).collect();
        v.sort_by_key(|n| std::cmp::Reverse(n.time));
        v
    }
}

/// Runs `plan` on `input` `runs` times (after one warm-up run) and times every node.
pub(crate) fn profile_plan(plan: &Arc<TypedSimplePlan>, input: Tensor, runs: u32) -> Result<Profile, FaceError> {
    let err = |e: TractError| FaceError::Inference(format!("{e:#}"));
    let mut times: Vec<Duration> = vec![Duration::ZERO; plan.model().nodes().len()];
    let runs = runs.max(1);
    let mut total = Duration::ZERO;
    for run in 0..=runs {
        let mut state = plan.spawn().map_err(err)?;
        let started = Instant::now();
        state
            .run_plan_with_eval(
                tvec!(input.clone().into()),
                |ctx: &EvalContext, st: Option<&mut (dyn OpState + 'static)>, node: &TypedNode, inputs| {
                    let t = Instant::now();
                    let r = eval(ctx, st, node, inputs);
                    if run > 0 {
                        times[node.id] += t.elapsed();
                    }
                    r
                },
            )
            .map_err(err)?;
        if run > 0 {
            total += started.elapsed();
        }
    }
    let model = plan.model();
    let mut nodes: Vec<NodeTime> = model
        .nodes()
        .iter()
        .map(|n| NodeTime { name: n.name.clone(), op: n.op().name().into_owned(), time: times[n.id] / runs })
        .filter(|n| !n.time.is_zero())
        .collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.time));
    Ok(Profile { nodes, total: total / runs })
}
