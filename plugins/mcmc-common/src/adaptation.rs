//! Stan-style window adaptation exactly as BlackJAX 1.2.5 does it: dual
//! averaging of log ε (with BlackJAX's one-step-lag average and re-start at
//! every slow-window end), Welford variance of the positions in slow windows
//! with the n/(n+5) shrinkage, and the 75 / 25·2ᵏ / 50 window schedule.

/// Dual averaging constants (Hoffman & Gelman 2014; BlackJAX defaults).
const T0: f64 = 10.0;
const GAMMA: f64 = 0.05;
const KAPPA: f64 = 0.75;

/// Dual averaging state for one chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualAveraging {
    /// The current iterate log ε.
    pub log_step: f64,
    /// The averaged iterate log ε̄.
    pub log_step_avg: f64,
    /// The iteration count t (1 before the first update).
    pub step: f64,
    /// The running average of target − acceptance.
    pub avg_error: f64,
    /// The shrinkage point μ = ln(10·ε₀).
    pub mu: f64,
}

impl DualAveraging {
    /// Starts at step size ε0 with μ = ln(10·ε0).
    pub fn new(step_size: f64) -> Self {
        Self { log_step: step_size.ln(), log_step_avg: 0.0, step: 1.0, avg_error: 0.0, mu: (10.0 * step_size).ln() }
    }

    /// One update with the transition's acceptance probability.
    pub fn update(&mut self, acceptance: f64, target: f64) {
        let g = target - acceptance;
        let reg = self.step + T0;
        let eta = self.step.powf(-KAPPA);
        self.avg_error = (1.0 - 1.0 / reg) * self.avg_error + g / reg;
        let old = self.log_step;
        self.log_step = self.mu - self.step.sqrt() / GAMMA * self.avg_error;
        // BlackJAX averages the previous iterate (a one-step lag).
        self.log_step_avg = eta * old + (1.0 - eta) * self.log_step_avg;
        self.step += 1.0;
    }

    /// The current iterate exp(log ε), used while adapting.
    pub fn step_size(&self) -> f64 {
        self.log_step.exp()
    }

    /// The averaged step size exp(log ε̄), used after adaptation.
    pub fn final_step_size(&self) -> f64 {
        self.log_step_avg.exp()
    }
}

/// Welford's running mean and sum of squared deviations, per coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct Welford {
    /// Points seen.
    pub n: f64,
    /// Their running mean.
    pub mean: Vec<f64>,
    /// Their running sum of squared deviations.
    pub m2: Vec<f64>,
}

impl Welford {
    /// No points yet, in D = `d` dimensions.
    pub fn new(d: usize) -> Self {
        Self { n: 0.0, mean: vec![0.0; d], m2: vec![0.0; d] }
    }

    /// Adds the point `x`.
    pub fn update(&mut self, x: &[f64]) {
        self.n += 1.0;
        for ((m, s), v) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(x) {
            let delta = v - *m;
            *m += delta / self.n;
            *s += delta * (v - *m);
        }
    }

    /// The regularised diagonal inverse mass matrix n/(n+5)·var + 1e-3·5/(n+5).
    pub fn inverse_mass_matrix(&self) -> Vec<f64> {
        let n = self.n;
        self.m2.iter().map(|s| n / (n + 5.0) * (s / (n - 1.0)) + 1e-3 * 5.0 / (n + 5.0)).collect()
    }
}

/// One warm-up step's role: fast (step size only) or slow (also the mass
/// matrix), and whether a slow window ends here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// A slow window: the positions feed the mass-matrix estimate.
    pub slow: bool,
    /// The last step of a slow window: the mass matrix is updated here.
    pub window_end: bool,
}

/// BlackJAX's `build_schedule(n, 75, 50, 25)`.
pub fn schedule(n: usize) -> Vec<Stage> {
    let fast = Stage { slow: false, window_end: false };
    if n < 20 {
        return vec![fast; n];
    }
    let (mut initial, mut last, mut first) = (75usize, 50usize, 25usize);
    if initial + first + last > n {
        initial = (0.15 * n as f64) as usize;
        last = (0.1 * n as f64) as usize;
        first = n - initial - last;
    }
    let mut out = vec![fast; initial];
    let final_start = n - last;
    let (mut size, mut start) = (first, initial);
    while start < final_start {
        let (cur_start, mut cur_size) = (start, size);
        if 3 * cur_size <= final_start - cur_start {
            size = 2 * cur_size;
        } else {
            cur_size = final_start - cur_start;
        }
        start = cur_start + cur_size;
        out.extend(std::iter::repeat_n(Stage { slow: true, window_end: false }, start - 1 - cur_start));
        out.push(Stage { slow: true, window_end: true });
    }
    out.extend(std::iter::repeat_n(fast, last));
    out
}

/// The window adaptation state of one chain.
#[derive(Debug, Clone)]
pub struct WindowAdaptation {
    /// The step size's dual averaging.
    pub da: DualAveraging,
    /// The current slow window's variance estimate.
    pub welford: Welford,
    /// Diagonal inverse mass matrix in use.
    pub inverse_mass: Vec<f64>,
    /// Step size in use.
    pub step_size: f64,
}

impl WindowAdaptation {
    /// Unit mass matrix in D = `d` dimensions, step size `initial_step_size`.
    pub fn new(d: usize, initial_step_size: f64) -> Self {
        Self { da: DualAveraging::new(initial_step_size), welford: Welford::new(d), inverse_mass: vec![1.0; d], step_size: initial_step_size }
    }

    /// Updates after a transition that ended at `position` with acceptance probability `acceptance`.
    pub fn update(&mut self, stage: Stage, position: &[f64], acceptance: f64, target: f64) {
        if stage.slow {
            self.welford.update(position);
        }
        self.da.update(acceptance, target);
        self.step_size = self.da.step_size();
        if stage.window_end {
            self.inverse_mass = self.welford.inverse_mass_matrix();
            self.welford = Welford::new(position.len());
            self.da = DualAveraging::new(self.da.final_step_size());
            self.step_size = self.da.step_size();
        }
    }

    /// The adapted step size for sampling.
    pub fn final_step_size(&self) -> f64 {
        self.da.final_step_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> serde_json::Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference_vectors.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn dual_averaging_matches_blackjax() {
        let r = &reference()["dual_averaging_target0.8_init1.0"];
        let mut da = DualAveraging::new(1.0);
        assert!(close(da.mu, r["mu"].as_f64().unwrap()));
        for s in r["trajectory"].as_array().unwrap() {
            da.update(s["acc"].as_f64().unwrap(), 0.8);
            assert!(close(da.log_step, s["log_step"].as_f64().unwrap()), "{da:?} vs {s}");
            assert!(close(da.log_step_avg, s["log_step_avg"].as_f64().unwrap()), "{da:?} vs {s}");
            assert!(close(da.avg_error, s["avg_error"].as_f64().unwrap()));
            assert_eq!(da.step, s["step"].as_f64().unwrap());
        }
        assert!(close(da.final_step_size(), r["final_step_size"].as_f64().unwrap()));
    }

    #[test]
    fn welford_mass_matrix_matches_blackjax() {
        let r = &reference()["mass_matrix_diag_final_5pts"];
        let mut w = Welford::new(3);
        for p in r["points"].as_array().unwrap() {
            let x: Vec<f64> = p.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            w.update(&x);
        }
        for (got, want) in w.inverse_mass_matrix().iter().zip(r["inverse_mass_matrix"].as_array().unwrap()) {
            // The reference is rounded to 3 decimals.
            assert!((got - want.as_f64().unwrap()).abs() < 5e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn schedule_matches_blackjax() {
        let r = reference()["window_schedule_200"].as_array().unwrap().clone();
        let s = schedule(200);
        assert_eq!(s.len(), r.len());
        for (got, want) in s.iter().zip(&r) {
            assert_eq!((got.slow as u64, got.window_end as u64), (want[0].as_u64().unwrap(), want[1].as_u64().unwrap()));
        }
        // ALGORITHMS.md §5.1.3 worked schedules: slow-window end indices.
        let ends = |n: usize| schedule(n).iter().enumerate().filter(|(_, s)| s.window_end).map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(ends(20), vec![17]);
        assert_eq!(ends(50), vec![44]);
        assert_eq!(ends(100), vec![89]);
        assert_eq!(ends(1000), vec![99, 149, 249, 449, 949]);
        assert!(schedule(5).iter().all(|s| !s.slow));
        assert_eq!(schedule(1000).len(), 1000);
    }
}
