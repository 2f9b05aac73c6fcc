//! `lh-host truth`: the deep-linear-network learning coefficient.

use anyhow::{bail, Result};
use lh_host::config::TeacherConfig;
use lh_host::model::Activation;
use lh_host::store::Store;
use lh_host::target::{self, truth, TargetModel, TargetSource};

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// A deep-linear target (identity activation, no biases, deep_linear teacher).
    #[arg(long, conflicts_with_all = ["sizes", "rank"])]
    target: Option<String>,
    /// Layer sizes H_0,…,H_L (input, hidden…, output), e.g. 5,3,5.
    #[arg(long, value_delimiter = ',', requires = "rank")]
    sizes: Option<Vec<usize>>,
    /// Rank of the true product W_L⋯W_1.
    #[arg(long)]
    rank: Option<usize>,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    let (sizes, rank) = match (a.target, a.sizes, a.rank) {
        (Some(id), _, _) => {
            let t = target::load(store, &id)?;
            let TargetModel::Mlp { spec, .. } = &t.model else {
                bail!("target {id} is quadratic: its learning coefficient is D/2 in the limit, not a deep linear network's");
            };
            let TargetSource::Built(cfg) = &t.meta.source else {
                bail!("target {id} was imported: its true rank is unknown; use --sizes and --rank");
            };
            let TeacherConfig::DeepLinear { rank, .. } = cfg.teacher else {
                bail!("target {id} has no deep_linear teacher, so it has no analytic learning coefficient");
            };
            if spec.activation != Activation::Identity || spec.bias {
                bail!("target {id} is not a deep linear network (its model needs activation identity and bias false)");
            }
            (spec.sizes(), rank)
        }
        (None, Some(s), Some(r)) => (s, r),
        _ => bail!("give --target ID, or --sizes H0,…,HL with --rank R"),
    };
    outln!("{}", truth::dln_learning_coefficient(&sizes, rank)?);
    Ok(Exit::Success)
}
