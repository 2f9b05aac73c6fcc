//! ERM training of the student to w* with Adam, full batch or minibatches
//! (reshuffled every epoch, without replacement), with early stopping.

use rand::seq::SliceRandom;

use crate::backend::{cpu, Backend, Batch, Dataset};
use crate::config::TrainingConfig;
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use crate::model::{LossKind, Precision};
use crate::rng::{purpose, stream};

/// One point of the learning curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub step: usize,
    /// Full-batch training loss at this step.
    pub train: f64,
    /// Test loss at this step (NaN when there is no test set).
    pub test: f64,
}

/// The outcome of training.
#[derive(Debug, Clone)]
pub struct Trained {
    pub w_star: Vec<f64>,
    /// L_n(w*) evaluated in f64.
    pub l0: f64,
    pub steps_run: usize,
    pub early_stopped: bool,
    pub curve: Vec<CurvePoint>,
}

/// Trains from `init` on `train`, logging test loss on `test`.
pub fn train(
    spec: &MlpSpec,
    train: &Dataset,
    test: &Dataset,
    loss: LossKind,
    cfg: &TrainingConfig,
    init: Vec<f64>,
    seed: u64,
    threads: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Trained> {
    let dim = spec.n_params();
    let mut be = cpu::new_backend(spec, train, loss, 1, cfg.precision, threads)?;
    let mut test_be = if test.n > 0 { Some(cpu::new_backend(spec, test, loss, 1, cfg.precision, threads)?) } else { None };
    let mut theta = init;
    let (mut m, mut v, mut g) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
    let mut l = [0.0];
    let mut curve = Vec::new();
    let mut recent: std::collections::VecDeque<f64> = std::collections::VecDeque::with_capacity(20);
    let mut order: Vec<u32> = (0..train.n as u32).collect();
    let mut batch_rng = stream(seed, purpose::BATCHES);
    let mut cursor = train.n; // forces a shuffle before the first minibatch
    let batch_size = cfg.batch_size.map(|b| b.min(train.n));
    let (mut steps_run, mut early_stopped) = (0, false);

    let full_loss = |be: &mut Box<dyn Backend>, theta: &[f64]| -> Result<f64> {
        let mut l = [0.0];
        be.loss_grad(theta, Batch::Full, &mut l, None)?;
        Ok(l[0])
    };

    for step in 0..cfg.steps {
        let res = match batch_size {
            None => be.loss_grad(&theta, Batch::Full, &mut l, Some(&mut g)),
            Some(b) => {
                if cursor + b > train.n {
                    order.shuffle(&mut batch_rng);
                    cursor = 0;
                }
                let r = be.loss_grad(&theta, Batch::Rows(&order[cursor..cursor + b]), &mut l, Some(&mut g));
                cursor += b;
                r
            }
        };
        res.map_err(|e| diverged(step, e))?;
        if step % cfg.log_every == 0 {
            let train_loss = if batch_size.is_some() { full_loss(&mut be, &theta).map_err(|e| diverged(step, e))? } else { l[0] };
            let test_loss = match &mut test_be {
                Some(tb) => full_loss(tb, &theta).map_err(|e| diverged(step, e))?,
                None => f64::NAN,
            };
            curve.push(CurvePoint { step, train: train_loss, test: test_loss });
            progress(step, cfg.steps);
        }
        // Adam with bias correction.
        let t = (step + 1) as i32;
        let (bc1, bc2) = (1.0 - cfg.beta1.powi(t), 1.0 - cfg.beta2.powi(t));
        for i in 0..dim {
            m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g[i];
            v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
            theta[i] -= cfg.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + cfg.eps);
        }
        if cfg.precision == Precision::F32 {
            // Keep the parameters representable in the training precision.
            theta.iter_mut().for_each(|x| *x = *x as f32 as f64);
        }
        steps_run = step + 1;
        if recent.len() == 20 {
            recent.pop_front();
        }
        recent.push_back(l[0]);
        if step > 100 && recent.len() == 20 {
            let mean = recent.iter().sum::<f64>() / 20.0;
            let var = recent.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 20.0;
            if var.sqrt() < cfg.early_stop_tol {
                early_stopped = true;
                break;
            }
        }
    }

    let mut be64 = cpu::new_backend(spec, train, loss, 1, Precision::F64, threads)?;
    let l0 = full_loss(&mut be64, &theta).map_err(|e| Error::Numerical(format!("L0 at w*: {e}")))?;
    let test_final = match test.n {
        0 => f64::NAN,
        _ => full_loss(&mut cpu::new_backend(spec, test, loss, 1, Precision::F64, threads)?, &theta)?,
    };
    curve.push(CurvePoint { step: steps_run, train: l0, test: test_final });
    progress(cfg.steps, cfg.steps);
    Ok(Trained { w_star: theta, l0, steps_run, early_stopped, curve })
}

fn diverged(step: usize, e: Error) -> Error {
    match e {
        Error::Numerical(m) => Error::Numerical(format!("training diverged at step {step}: {m}; lower training.lr")),
        other => other,
    }
}
