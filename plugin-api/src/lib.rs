//! # lh-plugin-api: the sampler plugin interface of Lambda-Hat
//!
//! A sampler plugin is a `cdylib` whose `Cargo.toml` lists this crate and
//! nothing else. The host (`lh-host`) loads it at run time and hands it two
//! objects:
//!
//! - a [`Model`]: the tempered, localised posterior
//!   log π(θ) = −nβ·L_n(θ) − (γ/2)‖θ − θ*‖² of a target, evaluated for all
//!   chains at once (that is what makes a GPU worth it), or for a subset of
//!   them ([`Model::logdensity_and_grad_chains`]);
//! - a [`TraceSink`]: where the plugin records, for every draw, each chain's
//!   L_n and any named statistics (acceptance, step size, energy, …; the
//!   names the host interprets are in [`stat_names`]).
//!
//! The plugin implements [`Sampler`]: [`describe`](Sampler::describe) (name,
//! version, help, default config as RON) and [`run`](Sampler::run), and
//! exports it with [`export_sampler!`], which puts both behind the panic
//! guard. The host computes λ̂ from the recorded L_n itself, identically for
//! every plugin, and counts gradient evaluations itself, so work figures
//! cannot be misreported.
//!
//! What a plugin needs besides is here too: [`serde`] (re-exported, with
//! its derive, for the config struct), [`ChainRng`] (one random stream per
//! chain, with its own methods: no `rand` version couples plugin and host),
//! [`parse_config`], [`jittered_start`], [`Minibatches`] and [`ess_geyer`].
//!
//! ```
//! use lh_plugin_api::*;
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
//! struct Config {
//!     draws: usize,
//! }
//!
//! #[derive(Default)]
//! struct MySampler;
//!
//! impl Sampler for MySampler {
//!     fn describe(&self) -> Description {
//!         Description { name: "mine".into(), version: "0.1.0".into(), help: "…".into(), default_config: "(draws: 100)".into() }
//!     }
//!     fn run(&mut self, _model: ModelMut<'_>, _sink: SinkMut<'_>, config: &str, _seed: u64) -> Result<RunSummary, SamplerError> {
//!         let _cfg: Config = parse_config(config)?;
//!         Ok(RunSummary::default())
//!     }
//! }
//! export_sampler!(MySampler);
//! ```
//!
//! ## Version policy
//!
//! [`API_VERSION`] is this crate's version. A host loads a plugin built
//! against the same `0.MINOR` (while the major version is 0; the same MAJOR
//! from 1.0 on), whatever the patch levels of either: patch releases only add
//! (fields at the end of the prefix types [`Plan`] and [`Description`],
//! methods at the end of the traits, variants of the non-exhaustive
//! [`ErrorKind`]), and what one side does not know reads as absent or
//! default on the other. Anything else is a new minor version, and the host
//! refuses plugins of another minor version with a one-line message naming
//! both versions ([`check_api_version`]).
#![allow(non_local_definitions, non_camel_case_types)]

mod config;
mod error;
mod ess;
mod export;
mod rng;
mod traits;
mod types;

pub use abi_stable;
pub use abi_stable::std_types::{RBox, RResult, RSlice, RSliceMut, RStr, RString, RVec};
pub use abi_stable::{RMut, RRef};
pub use serde;
pub use serde::Deserialize;

pub use crate::config::parse_config;
pub use crate::error::{ErrorKind, ErrorKind_NE, SResult, SamplerError};
pub use crate::ess::ess_geyer;
pub use crate::export::{guard, SamplerMod, SamplerModRef, ROOT_MODULE_SYMBOL};
pub use crate::rng::{chain_rngs, jittered_start, ChainRng, Minibatches};
pub use crate::traits::{Guarded, Model, ModelMut, Model_TO, Sampler, SamplerAbi, SamplerAbi_TO, SamplerBox, SinkMut, TraceSink, TraceSink_TO};
pub use crate::types::{stat_names, Description, DescriptionRef, Plan, PlanRef, RunSummary, Stat, Tuned};

/// The version of this interface (this crate's version).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version policy: `Ok` when a host speaking `host` loads a plugin built
/// against `plugin` (same major version, and the same minor while the major
/// is 0; patch levels do not matter), else the one-line reason.
pub fn check_api_version(host: &str, plugin: &str) -> Result<(), String> {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.trim().parse().ok()?))
    };
    let (Some(p), Some(h)) = (parse(plugin), parse(host)) else {
        return Err(format!("unreadable plugin API version `{plugin}`"));
    };
    let compatible = if h.0 == 0 { p == h } else { p.0 == h.0 };
    if compatible {
        Ok(())
    } else {
        let series = if h.0 == 0 { format!("{}.{}.x", h.0, h.1) } else { format!("{}.x", h.0) };
        Err(format!(
            "incompatible plugin API version: built against lh-plugin-api {plugin}, but this host speaks {host} (it loads plugins built against {series}); rebuild the plugin against this lh-plugin-api"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policy() {
        // Same 0.MINOR loads, whatever the patch levels, in either direction.
        for (host, plugin) in [("0.2.0", "0.2.0"), ("0.2.0", "0.2.7"), ("0.2.5", "0.2.1"), ("1.3.0", "1.0.2"), ("1.0.0", "1.9.9")] {
            assert_eq!(check_api_version(host, plugin), Ok(()), "{host} should load {plugin}");
        }
        // Another minor (while 0.x) or major is refused, naming both versions.
        for (host, plugin) in [("0.2.0", "0.1.0"), ("0.2.0", "0.3.0"), ("1.0.0", "0.9.0"), ("1.2.0", "2.0.0")] {
            let e = check_api_version(host, plugin).unwrap_err();
            assert!(e.contains("incompatible plugin API version") && e.contains(host) && e.contains(plugin), "{e}");
        }
        assert!(check_api_version("0.2.0", "banana").unwrap_err().contains("unreadable"));
        assert!(API_VERSION.starts_with("0.2."));
    }

    #[test]
    fn non_exhaustive_error_kinds() {
        let e = SamplerError::non_finite(vec![1, 3], "bad");
        assert!(e.is_recoverable());
        assert_eq!(e.chains.as_slice(), &[1, 3]);
        assert_eq!(SamplerError::fatal("x").kind(), Some(ErrorKind::Fatal));
        assert!(!SamplerError::fatal("x").is_recoverable());
    }

    #[test]
    fn prefix_types_round_trip() {
        let p: PlanRef = Plan { draws: 10, burn_in: 3, independent: true }.into();
        assert_eq!(p.to_plan(), Plan { draws: 10, burn_in: 3, independent: true });
        let d: DescriptionRef = Description { name: "x".into(), version: "1".into(), help: "h".into(), default_config: "()".into() }.into();
        assert_eq!(d.to_description().name.as_str(), "x");
        assert_eq!(d.default_config().as_str(), "()");
    }
}
