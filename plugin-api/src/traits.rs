//! The objects that cross the boundary: the host's [`Model`] and
//! [`TraceSink`], and the plugin's sampler ([`SamplerAbi`], which
//! [`export_sampler!`](crate::export_sampler) builds from a [`Sampler`]).

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RSlice, RSliceMut, RStr};
use abi_stable::RMut;

use crate::error::{SResult, SamplerError};
use crate::types::{DescriptionRef, PlanRef, RunSummary, Stat};

/// The host-implemented posterior log π(θ) = −nβ·L_n(θ) − (γ/2)‖θ − θ*‖².
///
/// The full-chain calls cover all C chains: `positions` is C × D
/// (chain-major) and each output has C (or C × D) entries. The `_chains`
/// call covers a subset. **Precision:** L_n and its gradient are computed in
/// the run's precision (`--precision`, f32 or f64) and returned as f64; the
/// localisation term is added in f64, so `logp` carries the run's precision.
///
/// **Non-finite values** come back as a recoverable [`SamplerError`] whose
/// `chains` lists the chains whose log-density, loss or gradient is not
/// finite; the outputs are still written for every chain.
#[sabi_trait]
pub trait Model {
    /// Number of parameters D.
    fn dim(&self) -> usize;
    /// Number of training rows n.
    fn n_data(&self) -> usize;
    /// Number of chains C.
    fn n_chains(&self) -> usize;
    /// The localisation centre θ* (D values): where chains usually start.
    fn center(&self) -> RSlice<'_, f64>;
    /// The inverse temperature β (nβ multiplies L_n in log π).
    fn beta(&self) -> f64;
    /// The localisation strength γ.
    fn gamma(&self) -> f64;
    /// L_n(θ*) evaluated in the run's precision.
    fn l0(&self) -> f64;
    /// Full batch, all chains: writes log π(θ_c) to `logp[c]`, ∇log π(θ_c)
    /// to `grads[c·D..]` and L_n(θ_c) to `loss[c]`. Counts one gradient
    /// evaluation per chain.
    fn logdensity_and_grad(&mut self, positions: RSlice<'_, f64>, grads: RSliceMut<'_, f64>, logp: RSliceMut<'_, f64>, loss: RSliceMut<'_, f64>)
        -> SResult<()>;
    /// Minibatch, all chains: the gradient of the unbiased estimate
    /// −nβ·L_B(θ) − (γ/2)‖θ − θ*‖² over the rows `rows` (shared by all
    /// chains), and L_B(θ_c) in `loss[c]`. Counts |rows|/n per chain.
    fn minibatch_grad(&mut self, positions: RSlice<'_, f64>, rows: RSlice<'_, u32>, grads: RSliceMut<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()>;
    /// Full-batch L_n(θ_c) only, all chains (cheaper: no backward pass).
    fn loss(&mut self, positions: RSlice<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()>;
    /// Full batch for the K chains listed in `chains` only (distinct, each
    /// < C, in any order): `positions` holds their K × D positions in that
    /// order, and `grads` (K × D), `logp` and `loss` (K each) receive theirs.
    /// The host evaluates only these K chains: the call counts K/C gradient
    /// evaluations per chain (work per chain is the total over all chains
    /// divided by C). For samplers whose chains need different numbers of
    /// gradients per draw (NUTS): chains that are done wait without cost.
    #[sabi(last_prefix_field)]
    fn logdensity_and_grad_chains(
        &mut self,
        chains: RSlice<'_, u32>,
        positions: RSlice<'_, f64>,
        grads: RSliceMut<'_, f64>,
        logp: RSliceMut<'_, f64>,
        loss: RSliceMut<'_, f64>,
    ) -> SResult<()>;
}

/// The host-implemented trace recorder.
#[sabi_trait]
pub trait TraceSink {
    /// Announces the number of draws and burn-in (`Plan { … }.into()`);
    /// call once, before `record`.
    fn begin(&mut self, plan: PlanRef) -> SResult<()>;
    /// Marks the start of a phase (`warmup`, `sampling`, …) for timing.
    fn phase(&mut self, name: RStr<'_>);
    /// Records draw number `draw` (0, 1, 2, … in order): `loss[c]` = L_n of
    /// chain c, plus named statistics. A non-finite loss is a fatal error
    /// naming the chain and draw.
    fn record(&mut self, draw: usize, loss: RSlice<'_, f64>, stats: RSlice<'_, Stat<'_>>) -> SResult<()>;
    /// Reports progress in units of the plugin's choosing.
    fn progress(&mut self, done: usize, total: usize);
    /// True when the run should end: the user asked to stop (Ctrl-C), a
    /// budget ran out, or a `--until` criterion is met. Check it after every
    /// draw and return soon (with `Ok`) when it is true.
    #[sabi(last_prefix_field)]
    fn should_stop(&self) -> bool;
}

/// What a plugin author implements; [`export_sampler!`](crate::export_sampler)
/// exports it, with both methods behind the panic guard (a panic becomes a
/// fatal error naming the plugin, never an abort of the host).
pub trait Sampler {
    /// Name, version, help and default config.
    fn describe(&self) -> crate::types::Description;
    /// Runs the sampler on `model`, recording into `sink`. `config` is the
    /// resolved config: RON struct syntax with every key of the defaults,
    /// sorted, one `key: value,` per line (parse it with
    /// [`parse_config`](crate::parse_config)); `seed` is the run seed.
    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError>;
}

/// The sampler as it crosses the boundary (built by `export_sampler!`; a
/// plugin author implements [`Sampler`] instead).
#[sabi_trait]
pub trait SamplerAbi {
    /// The plugin's description, or the error its `describe` panicked with.
    fn describe(&self) -> SResult<DescriptionRef>;
    /// Runs the sampler (see [`Sampler::run`]).
    #[sabi(last_prefix_field)]
    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: RStr<'_>, seed: u64) -> SResult<RunSummary>;
}

/// A [`Sampler`] with both methods behind [`guard`](crate::guard): what
/// `export_sampler!` exports.
#[doc(hidden)]
pub struct Guarded<S>(pub S);

impl<S: Sampler> SamplerAbi for Guarded<S> {
    fn describe(&self) -> SResult<DescriptionRef> {
        crate::guard(|| Ok(self.0.describe().into()))
    }
    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: RStr<'_>, seed: u64) -> SResult<RunSummary> {
        crate::guard(|| self.0.run(model, sink, config.as_str(), seed))
    }
}

/// The model as a plugin receives it.
pub type ModelMut<'a> = Model_TO<'a, RMut<'a, ()>>;
/// The trace sink as a plugin receives it.
pub type SinkMut<'a> = TraceSink_TO<'a, RMut<'a, ()>>;
/// A boxed sampler as the host holds it.
pub type SamplerBox = SamplerAbi_TO<'static, RBox<()>>;
