//! # lh-plugin-api: the sampler plugin interface of Lambda-Hat
//!
//! A sampler plugin is a `cdylib` that depends on this crate only. The host
//! (`lh-host`) loads it at run time and hands it two objects:
//!
//! - a [`Model`]: the tempered, localised posterior
//!   log π(θ) = −nβ·L_n(θ) − (γ/2)‖θ − θ*‖² of a target, evaluated for **all
//!   chains at once** (that is what makes a GPU worth it);
//! - a [`TraceSink`]: where the plugin records, for every draw, each chain's
//!   L_n and any named statistics (acceptance, step size, energy, …).
//!
//! The plugin implements [`Sampler`]: [`describe`](Sampler::describe) (name,
//! version, help, default config as RON) and [`run`](Sampler::run). The host
//! computes λ̂ from the recorded L_n itself, identically for every plugin, and
//! counts gradient evaluations itself, so work figures cannot be misreported.
//!
//! Configs cross the boundary as RON text and statistics as name → value
//! pairs, so the `#[repr(C)]` surface stays small. A plugin exports its root
//! module with [`export_sampler!`]:
//!
//! ```ignore
//! use lh_plugin_api::*;
//!
//! struct MySampler;
//! impl Sampler for MySampler {
//!     fn describe(&self) -> Description { /* … */ }
//!     fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: RStr<'_>, seed: u64) -> SResult<RunSummary> { /* … */ }
//! }
//! export_sampler!(MySampler);
//! ```
//!
//! Helpers for authors: [`guard`] turns a panic into an error (a panic must
//! never cross the FFI boundary), [`chain_rngs`] gives one independent random
//! stream per chain, [`jittered_start`] the chains' starting points,
//! [`parse_config`] reads a RON config with unknown keys as errors, and
//! [`run_with_config`] does the usual parse-then-run under [`guard`].
#![allow(non_local_definitions, non_camel_case_types)]

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use abi_stable;
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
pub use abi_stable::std_types::{RBox, RResult, RSlice, RSliceMut, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};
pub use abi_stable::{RMut, RRef};

/// The version of this interface. The host refuses a plugin built against an
/// incompatible (semver-breaking) version.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether an error is worth carrying on after.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The step failed (e.g. a non-finite log-density in one proposal): the
    /// sampler may reject it and continue; the host counts it as a divergence.
    Recoverable,
    /// The run cannot continue (bad config, broken invariant): it stops.
    Fatal,
}

/// An error crossing the plugin boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SamplerError {
    /// Recoverable or fatal.
    pub kind: ErrorKind,
    /// What went wrong, in one line.
    pub message: RString,
}

impl SamplerError {
    /// A fatal error with `message`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Fatal, message: RString::from(message.into()) }
    }
    /// A recoverable error with `message`.
    pub fn recoverable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Recoverable, message: RString::from(message.into()) }
    }
}

impl std::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SamplerError {}

/// The result type of every call across the boundary.
pub type SResult<T> = RResult<T, SamplerError>;

/// One named statistic for every chain of one draw (`values[c]` for chain c).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Stat<'a> {
    /// The statistic's name, e.g. `acceptance_rate`. The same set of names
    /// must be recorded for every draw.
    pub name: RStr<'a>,
    /// One value per chain.
    pub values: RSlice<'a, f64>,
}

impl<'a> Stat<'a> {
    /// A statistic named `name` with one value per chain.
    pub fn new(name: &'a str, values: &'a [f64]) -> Self {
        Self { name: RStr::from_str(name), values: RSlice::from_slice(values) }
    }
}

/// What a plugin says about itself (`lh-host plugins` prints it).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Description {
    /// Short name used on the command line (`--plugin NAME`).
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// One paragraph: the algorithm and its main knobs.
    pub help: RString,
    /// The default config as RON text; the host merges user overrides into it.
    pub default_config: RString,
}

/// The plan a plugin announces before its first draw.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Plan {
    /// Number of draws per chain that will be recorded (the host refuses more).
    pub draws: usize,
    /// How many of the first recorded draws are burn-in (excluded from λ̂).
    pub burn_in: usize,
    /// True when draws are independent (variational methods): diagnostics
    /// then skip R̂ and autocorrelation.
    pub independent: bool,
}

/// What a plugin returns at the end of a run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct RunSummary {
    /// Final adapted/tuned values worth keeping (step size, L, …), name → value.
    pub tuned: RVec<Tuned>,
    /// Free-form notes for the manifest.
    pub notes: RString,
}

/// One tuned value in a [`RunSummary`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Tuned {
    pub name: RString,
    pub value: f64,
}

/// The host-implemented posterior. Every evaluation covers all chains:
/// `positions` is C × D (chain-major), and each output has C (or C × D) entries.
#[sabi_trait]
pub trait Model {
    /// Number of parameters D.
    fn dim(&self) -> usize;
    /// Number of training rows n.
    fn n_data(&self) -> usize;
    /// Number of chains C evaluated per call.
    fn n_chains(&self) -> usize;
    /// The localisation centre θ* (D values): where chains usually start.
    fn center(&self) -> RSlice<'_, f64>;
    /// The inverse temperature β (nβ multiplies L_n in log π).
    fn beta(&self) -> f64;
    /// The localisation strength γ.
    fn gamma(&self) -> f64;
    /// L_n(θ*) evaluated in the run's precision.
    fn l0(&self) -> f64;
    /// Full batch: writes log π(θ_c) to `logp[c]`, ∇log π(θ_c) to `grads[c·D..]`
    /// and L_n(θ_c) to `loss[c]`. A non-finite value is a recoverable error
    /// naming the chain; the outputs are still written.
    fn logdensity_and_grad(&mut self, positions: RSlice<'_, f64>, grads: RSliceMut<'_, f64>, logp: RSliceMut<'_, f64>, loss: RSliceMut<'_, f64>)
        -> SResult<()>;
    /// Minibatch: the gradient of the unbiased estimate
    /// −nβ·L_B(θ) − (γ/2)‖θ − θ*‖² over the rows `rows` (shared by all chains),
    /// and L_B(θ_c) in `loss[c]`.
    fn minibatch_grad(&mut self, positions: RSlice<'_, f64>, rows: RSlice<'_, u32>, grads: RSliceMut<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()>;
    /// Full-batch L_n(θ_c) only (cheaper: no backward pass).
    #[sabi(last_prefix_field)]
    fn loss(&mut self, positions: RSlice<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()>;
}

/// The host-implemented trace recorder.
#[sabi_trait]
pub trait TraceSink {
    /// Announces the number of draws and burn-in; call once, before `record`.
    fn begin(&mut self, plan: Plan) -> SResult<()>;
    /// Marks the start of a phase (`warmup`, `sampling`, …) for timing.
    fn phase(&mut self, name: RStr<'_>);
    /// Records draw number `draw` (0, 1, 2, … in order): `loss[c]` = L_n of
    /// chain c, plus named statistics. A non-finite loss is a fatal error
    /// naming the chain and draw.
    fn record(&mut self, draw: usize, loss: RSlice<'_, f64>, stats: RSlice<'_, Stat<'_>>) -> SResult<()>;
    /// Reports progress in units of the plugin's choosing.
    fn progress(&mut self, done: usize, total: usize);
    /// True when the user asked to stop (Ctrl-C) or a budget ran out: return soon.
    #[sabi(last_prefix_field)]
    fn should_stop(&self) -> bool;
}

/// The plugin-implemented sampler.
#[sabi_trait]
pub trait Sampler {
    /// Name, version, help and default config.
    fn describe(&self) -> Description;
    /// Runs the sampler on `model`, recording into `sink`. `config` is the
    /// resolved RON config (defaults merged with the user's overrides) and
    /// `seed` the run seed.
    #[sabi(last_prefix_field)]
    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: RStr<'_>, seed: u64) -> SResult<RunSummary>;
}

/// The model as a plugin receives it.
pub type ModelMut<'a> = Model_TO<'a, RMut<'a, ()>>;
/// The trace sink as a plugin receives it.
pub type SinkMut<'a> = TraceSink_TO<'a, RMut<'a, ()>>;
/// A boxed sampler as the host holds it.
pub type SamplerBox = Sampler_TO<'static, RBox<()>>;

/// The root module every plugin library exports (via [`export_sampler!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SamplerModRef)))]
#[sabi(missing_field(panic))]
pub struct SamplerMod {
    /// Constructs the sampler.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn() -> SResult<SamplerBox>,
}

impl RootModule for SamplerModRef {
    declare_root_module_statics! {SamplerModRef}
    const BASE_NAME: &'static str = "lh_sampler";
    const NAME: &'static str = "lh_sampler";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The symbol abi_stable 0.11 looks up in a plugin library (checked against
/// `abi_stable::library::ROOT_MODULE_LOADER_NAME` by a test).
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports `$ty` (a `Sampler + Default`) as the library's root module.
/// Construction is panic-guarded. This is abi_stable's `#[export_root_module]`
/// written out, so that plugin crates need no direct `abi_stable` dependency.
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty) => {
        /// The plugin's root module (called by the host through the library header).
        pub fn get_root_module() -> $crate::SamplerModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            extern "C" fn new_sampler() -> $crate::SResult<$crate::SamplerBox> {
                $crate::guard(|| Ok($crate::Sampler_TO::from_value(<$ty as ::std::default::Default>::default(), $crate::abi_stable::sabi_trait::TD_Opaque)))
            }
            $crate::SamplerMod { new: new_sampler }.leak_into_prefix()
        }

        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        #[doc(hidden)]
        pub static LH_SAMPLER_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(get_root_module)
            }
            // SAFETY: the constructor returns the root module type named here.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::SamplerModRef>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Runs `f`, turning a panic into a fatal [`SamplerError`] (a panic must
/// never unwind across the plugin boundary). Wrap the body of `run` in it.
/// Inside `guard` the panic message and location go into the error instead
/// of being printed by the default panic hook.
pub fn guard<T>(f: impl FnOnce() -> Result<T, SamplerError>) -> SResult<T> {
    quiet_panics::install();
    quiet_panics::ACTIVE.with(|a| a.set(a.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    quiet_panics::ACTIVE.with(|a| a.set(a.get() - 1));
    match r {
        Ok(r) => r.into(),
        Err(_) => {
            let msg = quiet_panics::LAST.with(|l| l.take()).unwrap_or_else(|| "unknown panic".into());
            RResult::RErr(SamplerError::fatal(format!("the plugin panicked: {msg}")))
        }
    }
}

/// A panic hook that, inside [`guard`], keeps the message for the error
/// instead of printing it; outside, it defers to the previous hook.
mod quiet_panics {
    use std::cell::{Cell, RefCell};
    use std::sync::Once;

    thread_local! {
        pub static ACTIVE: Cell<u32> = const { Cell::new(0) };
        pub static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.with(Cell::get) > 0 {
                    let payload = info.payload();
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic payload".into());
                    let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
                    LAST.with(|l| *l.borrow_mut() = Some(format!("{msg}{at}")));
                } else {
                    previous(info);
                }
            }));
        });
    }
}

/// A chain's random stream (Xoshiro256++; `rand` traits).
pub type ChainRng = rand_xoshiro::Xoshiro256PlusPlus;

/// One independent Xoshiro256++ stream per chain from the run seed: chain c
/// gets the seeded generator jumped c + 1 times (2^128 draws apart), so a
/// chain's numbers do not depend on how many chains run beside it.
pub fn chain_rngs(seed: u64, chains: usize) -> Vec<ChainRng> {
    use rand::SeedableRng;
    let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..chains)
        .map(|_| {
            r.jump();
            r.clone()
        })
        .collect()
}

/// The usual body of [`Sampler::run`]: parses the config into `C` (unknown
/// keys are errors) and calls `f` with it, panic-guarded.
pub fn run_with_config<C: serde::de::DeserializeOwned>(config: RStr<'_>, f: impl FnOnce(C) -> Result<RunSummary, SamplerError>) -> SResult<RunSummary> {
    guard(|| f(parse_config(config.as_str())?))
}

/// Starting positions for every chain: θ* + `scale`·N(0, I), C × D, drawing
/// from each chain's own stream.
pub fn jittered_start(center: &[f64], scale: f64, rngs: &mut [ChainRng]) -> Vec<f64> {
    use rand_distr::{Distribution, StandardNormal};
    rngs.iter_mut()
        .flat_map(|rng| {
            center.iter().map(move |c| {
                let z: f64 = StandardNormal.sample(rng);
                c + scale * z
            })
        })
        .collect()
}

/// Minibatch rows for all chains: the rows 0..n reshuffled every epoch and
/// handed out `batch` at a time, without replacement within an epoch (a
/// partial last batch of an epoch is skipped). Give it a stream of its own so
/// the batches do not depend on the chain count.
pub struct Minibatches {
    order: Vec<u32>,
    cursor: usize,
    batch: usize,
    rng: ChainRng,
}

impl Minibatches {
    /// Batches of `batch` rows (capped at n) out of n, shuffled with `rng`.
    pub fn new(n: usize, batch: usize, rng: ChainRng) -> Self {
        Self { order: (0..n as u32).collect(), cursor: n, batch: batch.clamp(1, n.max(1)), rng }
    }

    /// The next batch of row indices.
    pub fn next_batch(&mut self) -> &[u32] {
        use rand::seq::SliceRandom;
        if self.cursor + self.batch > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        self.cursor += self.batch;
        &self.order[self.cursor - self.batch..self.cursor]
    }
}

/// Effective sample size of m chains of n draws from their autocovariances,
/// with Geyer's initial positive sequence and monotone correction, as ArviZ's
/// `_ess` and BlackJAX's `effective_sample_size`: `mean_var` is the mean
/// within-chain variance (ddof 1), `var_plus` the pooled variance estimate and
/// `mean_autocov(k)` the chains' mean lag-k autocovariance (biased, / n).
/// Samplers that tune on ESS (MCLMC's third stage) use it; so do the host's diagnostics.
pub fn ess_geyer(m: usize, n: usize, mean_var: f64, var_plus: f64, mean_autocov: impl Fn(usize) -> f64) -> f64 {
    let rho_at = |k: usize| 1.0 - (mean_var - mean_autocov(k)) / var_plus;
    let mut rho = vec![0.0; n];
    rho[0] = 1.0;
    rho[1] = rho_at(1);
    let (mut even, mut odd) = (rho[0], rho[1]);
    let mut t = 1;
    while t < n - 3 && even + odd > 0.0 {
        even = rho_at(t + 1);
        odd = rho_at(t + 2);
        if even + odd >= 0.0 {
            rho[t + 1] = even;
            rho[t + 2] = odd;
        }
        t += 2;
    }
    let max_t = t - 2;
    if even > 0.0 {
        rho[max_t + 1] = even;
    }
    let mut t = 1;
    while t + 2 <= max_t {
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t] {
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0;
            rho[t + 2] = rho[t + 1];
        }
        t += 2;
    }
    let mn = (m * n) as f64;
    let tau = (-1.0 + 2.0 * rho[..=max_t].iter().sum::<f64>() + rho[max_t + 1]).max(1.0 / mn.log10());
    mn / tau
}

/// Parses a RON config into `T`. Give `T` `#[serde(deny_unknown_fields)]` so
/// that an unknown key is an error naming it, with its line and column.
pub fn parse_config<T: serde::de::DeserializeOwned>(ron_text: &str) -> Result<T, SamplerError> {
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(ron_text)
        .map_err(|e| SamplerError::fatal(format!("config {}:{}: {}", e.span.start.line, e.span.start.col, e.code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_a_fatal_error() {
        let r: SResult<()> = guard(|| panic!("boom"));
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Fatal);
        assert!(e.message.contains("boom"));
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn chain_streams_are_independent_of_the_chain_count() {
        use rand::Rng;
        let mut a = chain_rngs(7, 2);
        let mut b = chain_rngs(7, 5);
        assert_eq!(a[1].next_u64(), b[1].next_u64());
        assert_ne!(b[0].next_u64(), b[2].next_u64());
    }

    #[test]
    fn minibatches_cover_every_row_once_per_epoch() {
        let mut b = Minibatches::new(10, 3, chain_rngs(1, 1).remove(0));
        let mut seen: Vec<u32> = (0..3).flat_map(|_| b.next_batch().to_vec()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "three batches of an epoch are disjoint");
        assert_eq!(b.next_batch().len(), 3);
        assert_eq!(Minibatches::new(2, 5, chain_rngs(1, 1).remove(0)).next_batch().len(), 2);
    }

    #[test]
    fn export_macro_uses_abi_stables_symbol() {
        assert_eq!(ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }

    #[test]
    fn config_unknown_keys_are_errors() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            steps: usize,
        }
        assert_eq!(parse_config::<C>("(steps: 3)").unwrap().steps, 3);
        let e = parse_config::<C>("(steps: 3,\n stepz: 4)").unwrap_err();
        assert!(e.message.contains("2:") && e.message.contains("stepz"), "{}", e.message);
    }
}
