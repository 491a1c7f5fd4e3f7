//! The order of a run's phases: the warm-up (thrown away), then one measured phase, or a
//! ramp's steps (each `step_factor` times the last) until one breaks, then, with `refine`,
//! that many steps between the highest rate that held and the lowest that broke, each at their
//! geometric middle. With ×1.25 steps a ramp only tells a rate within 25%; three refinement
//! steps narrow it to 3%, so two servers' highest clean rates can be compared by ratio.

use super::RampPlan;

/// One phase to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Phase number, unique in the run: ramp step k is k, the warm-up is `steps`, refinement
    /// step i is `steps + 1 + i`.
    pub phase: u32,
    /// Rate per room (or per client).
    pub rate: f64,
    /// The warm-up: measured by nobody.
    pub warming: bool,
}

/// The phases of a run, told the outcome of each measured one.
#[derive(Debug)]
pub struct Steps {
    base: f64,
    steps: u32,
    factor: f64,
    refine: u32,
    warmup: bool,
    /// The next ramp step, while ramping.
    next: u32,
    /// Refinement: the highest rate that held, the lowest that broke, refinement steps run.
    bracket: Option<(f64, f64, u32)>,
    done: bool,
    last: Option<Step>,
}

impl Steps {
    /// The phases of a run at `base` (a ramp's first step's rate); `warmup` puts a warm-up
    /// first.
    pub fn new(base: f64, ramp: Option<&RampPlan>, warmup: bool) -> Steps {
        Steps {
            base,
            steps: ramp.map_or(1, |r| r.steps),
            factor: ramp.map_or(1.0, |r| r.step_factor),
            refine: ramp.map_or(0, |r| r.refine),
            warmup,
            next: 0,
            bracket: None,
            done: false,
            last: None,
        }
    }

    /// The next phase, given whether the last measured one held (`None`: it was the warm-up,
    /// or not a ramp); `None` when the run is over.
    pub fn next(&mut self, held: Option<bool>) -> Option<Step> {
        if self.done {
            return None;
        }
        let step = if std::mem::take(&mut self.warmup) {
            Step { phase: self.steps, rate: self.base, warming: true }
        } else {
            match (self.last, held) {
                (Some(last), Some(held)) if !last.warming => self.after(last, held)?,
                _ => self.ramp_step()?,
            }
        };
        self.last = Some(step);
        Some(step)
    }

    fn ramp_step(&mut self) -> Option<Step> {
        if self.next >= self.steps {
            self.done = true;
            return None;
        }
        let k = self.next;
        self.next += 1;
        Some(Step { phase: k, rate: self.base * self.factor.powi(k as i32), warming: false })
    }

    fn after(&mut self, last: Step, held: bool) -> Option<Step> {
        let (lo, hi, run) = match self.bracket {
            None if held => return self.ramp_step(),
            // The first step broke: nothing held to refine from.
            None if last.phase == 0 => {
                self.done = true;
                return None;
            }
            None => (last.rate / self.factor, last.rate, 0),
            Some((lo, hi, run)) => {
                if held {
                    (last.rate, hi, run)
                } else {
                    (lo, last.rate, run)
                }
            }
        };
        if run >= self.refine {
            self.done = true;
            return None;
        }
        self.bracket = Some((lo, hi, run + 1));
        Some(Step { phase: self.steps + 1 + run, rate: (lo * hi).sqrt(), warming: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(steps: u32, refine: u32) -> RampPlan {
        RampPlan { step_factor: 2.0, steps, p99_ms: 50.0, max_loss: 0.0, refine }
    }

    /// Runs the schedule against a server that holds every rate up to `limit`.
    fn run(s: &mut Steps, limit: f64) -> Vec<Step> {
        let mut out = Vec::new();
        let mut held = None;
        while let Some(step) = s.next(held) {
            held = (!step.warming).then_some(step.rate <= limit);
            out.push(step);
        }
        out
    }

    #[test]
    fn a_ramp_stops_at_the_first_step_that_breaks() {
        let got = run(&mut Steps::new(10.0, Some(&ramp(8, 0)), true), 50.0);
        let rates: Vec<f64> = got.iter().map(|s| s.rate).collect();
        assert_eq!(rates, [10.0, 10.0, 20.0, 40.0, 80.0]);
        assert!(got[0].warming && got[0].phase == 8);
        assert_eq!(got[1..].iter().map(|s| s.phase).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn refinement_bisects_between_the_last_held_and_the_first_broken() {
        let got = run(&mut Steps::new(10.0, Some(&ramp(8, 3)), false), 50.0);
        let rates: Vec<f64> = got.iter().map(|s| (s.rate * 100.0).round() / 100.0).collect();
        // 40 held, 80 broke; then sqrt(40*80) = 56.57 breaks, sqrt(40*56.57) = 47.57 holds,
        // sqrt(47.57*56.57) = 51.87 breaks.
        assert_eq!(rates, [10.0, 20.0, 40.0, 80.0, 56.57, 47.57, 51.87]);
        assert_eq!(got[4..].iter().map(|s| s.phase).collect::<Vec<_>>(), [9, 10, 11]);
        let held = got.iter().filter(|s| s.rate <= 50.0).map(|s| s.rate).fold(0.0, f64::max);
        assert!((held - 47.57).abs() < 0.01, "within 2^(1/8) of the limit: {held}");
    }

    #[test]
    fn nothing_to_refine_when_the_first_step_breaks_or_none_does() {
        let got = run(&mut Steps::new(10.0, Some(&ramp(8, 3)), false), 5.0);
        assert_eq!(got.len(), 1);
        let got = run(&mut Steps::new(10.0, Some(&ramp(4, 3)), false), 1e9);
        assert_eq!(got.iter().map(|s| s.rate).collect::<Vec<_>>(), [10.0, 20.0, 40.0, 80.0]);
    }

    #[test]
    fn a_run_without_a_ramp_is_one_phase() {
        let got = run(&mut Steps::new(100.0, None, true), 0.0);
        assert_eq!(got.len(), 2);
        assert!(got[0].warming && !got[1].warming && got[1].phase == 0);
    }
}
