//! How a run uses the board's cores: tract's threads inside each frame (lower latency), whole
//! frames on several workers (more frames a second), or one core.
//!
//! The choice is made once at start from the board's `threads`, the cores this process may
//! use, the board's per-frame budget and the model's cost measured here, on this input:
//! - a model that keeps up on one thread stays on one: more cores would add heat (a Pi in a
//!   case throttles) and nothing the camera can use;
//! - a model tract splits well (on `n` threads at least [`THREAD_EFFICIENCY`] of `n` times
//!   faster) gets `n` threads: each frame is ready sooner, and more of them pass;
//! - any other model gets `n` workers of one thread each: tract's threads would leave cores
//!   idle on its serial operators, whole frames do not.
//!
//! `run --threads N --workers M` overrides the choice. The choice is made once, for the model
//! the run starts with; a model switched to later runs on the same threads and workers.

use crate::model::engine::{self, Engine, EngineError};
use std::time::Instant;

/// Share of an ideal `n`-fold speed-up from `n` threads above which threads are chosen over
/// workers. Workers scale almost ideally (each frame is independent); threads give lower
/// latency, worth some of the throughput.
pub const THREAD_EFFICIENCY: f64 = 0.7;

/// How a run spreads over cores.
#[derive(Debug, Clone, PartialEq)]
pub struct CorePlan {
    /// Threads tract splits each frame's operators over.
    pub threads: usize,
    /// Frames in flight at once, each on its own worker.
    pub workers: usize,
    /// Why, in one sentence with the figures it rests on.
    pub reason: String,
}

/// What the choice is made from.
#[derive(Debug, Clone, Copy)]
pub struct CoreBudget {
    /// The board's `threads`.
    pub board_threads: usize,
    /// Cores this process may run on (`available_parallelism`): fewer than the board's when
    /// a board's profile is tried on another machine, or the process is pinned.
    pub available: usize,
    /// The board's per-frame latency target, in ms.
    pub frame_ms: f64,
}

impl CoreBudget {
    /// The cores a run may take: the board's threads, no more than the machine has.
    pub fn cores(&self) -> usize {
        self.board_threads.min(self.available).max(1)
    }
}

/// The cores this process may run on; 1 when the system cannot say.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Chooses from `budget` and `time_ms(threads)`, the time of one frame on that many threads.
/// Measures one thread, and `n` threads only when one is not enough.
pub fn choose(
    budget: CoreBudget,
    mut time_ms: impl FnMut(usize) -> Result<f64, EngineError>,
) -> Result<CorePlan, EngineError> {
    let n = budget.cores();
    let capped = if budget.available < budget.board_threads {
        format!(
            " (the board has {} threads, this process may use {} cores)",
            budget.board_threads, budget.available
        )
    } else {
        String::new()
    };
    if n == 1 {
        return Ok(CorePlan {
            threads: 1,
            workers: 1,
            reason: format!("one core to run on{capped}"),
        });
    }
    let one = time_ms(1)?;
    if one <= budget.frame_ms {
        return Ok(CorePlan {
            threads: 1,
            workers: 1,
            reason: format!(
                "a frame takes {one:.1} ms on one thread, within the board's {:.1} ms: the \
                 other cores stay idle",
                budget.frame_ms
            ),
        });
    }
    let many = time_ms(n)?;
    let efficiency = if many > 0.0 {
        one / (many * n as f64)
    } else {
        0.0
    };
    Ok(if efficiency >= THREAD_EFFICIENCY {
        CorePlan {
            threads: n,
            workers: 1,
            reason: format!(
                "a frame takes {one:.1} ms on one thread and {many:.1} ms on {n}{capped} \
                 ({:.0} % of an ideal split): {n} threads per frame",
                efficiency * 100.0
            ),
        }
    } else {
        CorePlan {
            threads: 1,
            workers: n,
            reason: format!(
                "a frame takes {one:.1} ms on one thread and {many:.1} ms on {n}{capped} \
                 ({:.0} % of an ideal split): {n} frames at once, one thread each",
                efficiency * 100.0
            ),
        }
    })
}

/// One frame's time on `threads` threads, on whatever the engine's input holds (the models this
/// is for cost the same whatever the pixels): the faster of two runs after one to warm up, so
/// that one run slowed by another process does not decide.
pub fn time_engine(engine: &mut Engine, threads: usize) -> Result<f64, EngineError> {
    engine::with_threads(threads, || {
        engine.run()?;
        let mut fastest = f64::INFINITY;
        for _ in 0..2 {
            let started = Instant::now();
            engine.run()?;
            fastest = fastest.min(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(fastest)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(board_threads: usize, available: usize) -> CoreBudget {
        CoreBudget {
            board_threads,
            available,
            frame_ms: 33.3,
        }
    }

    #[test]
    fn a_model_within_the_frame_budget_stays_on_one_core() {
        let mut asked = Vec::new();
        let plan = choose(budget(4, 4), |t| {
            asked.push(t);
            Ok(20.0)
        })
        .expect("plan");
        assert_eq!((plan.threads, plan.workers), (1, 1));
        assert_eq!(asked, [1], "n threads are not measured when one is enough");
        assert!(plan.reason.contains("20.0 ms"), "{}", plan.reason);
    }

    #[test]
    fn a_model_tract_splits_well_gets_threads_and_one_it_does_not_gets_workers() {
        // 400 ms -> 130 ms on 4 threads is 77 % of an ideal split.
        let plan = choose(budget(4, 4), |t| Ok(if t == 1 { 400.0 } else { 130.0 })).expect("plan");
        assert_eq!((plan.threads, plan.workers), (4, 1), "{}", plan.reason);
        // 400 ms -> 200 ms on 4 threads is 50 %.
        let plan = choose(budget(4, 4), |t| Ok(if t == 1 { 400.0 } else { 200.0 })).expect("plan");
        assert_eq!((plan.threads, plan.workers), (1, 4), "{}", plan.reason);
        assert!(plan.reason.contains("50 %"), "{}", plan.reason);
    }

    #[test]
    fn the_cores_are_capped_by_the_machine_and_one_core_measures_nothing() {
        let plan = choose(budget(4, 2), |t| Ok(if t == 1 { 400.0 } else { 210.0 })).expect("plan");
        assert_eq!((plan.threads, plan.workers), (2, 1), "{}", plan.reason);
        assert!(plan.reason.contains("may use 2 cores"), "{}", plan.reason);
        let plan = choose(budget(1, 8), |_| -> Result<f64, EngineError> {
            panic!("nothing to measure on one core")
        })
        .expect("plan");
        assert_eq!((plan.threads, plan.workers), (1, 1));
    }
}
