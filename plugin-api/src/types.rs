//! The data a plugin hands the host: its description, the plan of a run,
//! per-draw statistics and the run's summary.

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

/// Names of the statistics the host's diagnostics interpret (`lh-host
/// diagnose`); record them under these names for the matching summaries and
/// figures. Any other name is kept as a trace and summarised (mean, R̂, ESS)
/// but not interpreted.
pub mod stat_names {
    /// Metropolis acceptance probability of the transition, in [0, 1]:
    /// `acceptance` summary and `acceptance_hist.png`.
    pub const ACCEPTANCE_RATE: &str = "acceptance_rate";
    /// The Hamiltonian of the state kept (Stan's `energy__`): BFMI and `energy.png`.
    pub const ENERGY: &str = "energy";
    /// 1 for a divergent transition, else 0: the `divergences` count.
    pub const IS_DIVERGENT: &str = "is_divergent";
    /// Energy change of an unadjusted step (MCLMC): `energy_change` summary and histogram.
    pub const ENERGY_CHANGE: &str = "energy_change";
    /// The evidence lower bound of a variational fit: `elbo` and `elbo.png`.
    pub const ELBO: &str = "elbo";
    /// The step size used (a trace only).
    pub const STEP_SIZE: &str = "step_size";
    /// Leapfrog / integrator steps of the transition (a trace only).
    pub const NUM_INTEGRATION_STEPS: &str = "num_integration_steps";
    /// NUTS tree depth (trajectory doublings) of the transition (a trace only).
    pub const TREE_DEPTH: &str = "tree_depth";
    /// Names the host writes itself; a statistic may not use them.
    pub const RESERVED: [&str; 2] = ["loss", "llc"];
}

/// One named statistic for every chain of one draw (`values[c]` for chain c).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Stat<'a> {
    /// The statistic's name, e.g. [`stat_names::ACCEPTANCE_RATE`]. The same
    /// set of names must be recorded for every draw.
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

/// What a plugin says about itself (`lh-host plugins` prints it). A prefix
/// type: later minor versions may add fields after `default_config`, which
/// read as their default from a plugin built before them. The strings are
/// `'static` (literals, `env!`, or leaked once).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default)]
#[sabi(kind(Prefix(prefix_ref = DescriptionRef)))]
#[sabi(missing_field(default))]
pub struct Description {
    /// Short name used on the command line (`--plugin NAME`).
    pub name: RStr<'static>,
    /// The plugin's own version.
    pub version: RStr<'static>,
    /// One paragraph: the algorithm and its main knobs.
    pub help: RStr<'static>,
    /// The default config as RON struct text, `(key: value, …)`; the host
    /// merges user overrides into it and refuses keys not in it.
    #[sabi(last_prefix_field)]
    pub default_config: RStr<'static>,
}

impl From<Description> for DescriptionRef {
    /// Leaks the description into its prefix form (once per plugin load).
    fn from(d: Description) -> Self {
        d.leak_into_prefix()
    }
}

/// The plan a plugin announces before its first draw
/// ([`TraceSink::begin`](crate::TraceSink::begin)), with `.into()`. A prefix
/// type: later minor versions may add fields after `independent`, which read
/// as their default from a plugin built before them.
///
/// **Draws and burn-in.** `draws` counts every record the plugin will make,
/// burn-in included; the first `burn_in` of them are excluded from λ̂ and
/// from R̂/ESS. So a sampler with 500 warm-up and 1000 sampling transitions
/// announces `draws: 1500, burn_in: 500`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[sabi(kind(Prefix(prefix_ref = PlanRef)))]
#[sabi(missing_field(default))]
pub struct Plan {
    /// Number of draws per chain that will be recorded, burn-in included
    /// (the host refuses more).
    pub draws: usize,
    /// How many of the first recorded draws are burn-in (excluded from λ̂).
    pub burn_in: usize,
    /// True when draws are independent (variational methods): diagnostics
    /// then skip R̂ and autocorrelation.
    #[sabi(last_prefix_field)]
    pub independent: bool,
}

impl From<Plan> for PlanRef {
    /// Leaks the plan into its prefix form (a few bytes, once per run).
    fn from(p: Plan) -> Self {
        p.leak_into_prefix()
    }
}

impl PlanRef {
    /// The plan as a plain struct (fields a plugin did not know read as their default).
    pub fn to_plan(self) -> Plan {
        Plan { draws: self.draws(), burn_in: self.burn_in(), independent: self.independent() }
    }
}

impl DescriptionRef {
    /// The description as a plain struct (fields a plugin did not know read as their default).
    pub fn to_description(self) -> Description {
        Description { name: self.name(), version: self.version(), help: self.help(), default_config: self.default_config() }
    }
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
    /// The value's name, e.g. `step_size_mean`.
    pub name: RString,
    /// The value.
    pub value: f64,
}

impl Tuned {
    /// A tuned value `name` = `value`.
    pub fn new(name: &str, value: f64) -> Self {
        Self { name: name.into(), value }
    }
}
