//! Teacher–student data: inputs from a chosen distribution, clean outputs from
//! a teacher network, and observation noise. Everything is computed in f64
//! from the target's seed (one random stream per purpose, see [`crate::rng`]).

use rand_distr::{Bernoulli, Distribution, Gamma, StandardNormal, Uniform};

use crate::backend::Dataset;
use crate::config::{DataConfig, InputDist, Noise, TeacherConfig};
use crate::error::Result;
use crate::model::{Activation, MlpSpec};
use crate::rng::{purpose, stream, Rng};

/// A generated data set: train and test splits and the teacher's clean outputs.
#[derive(Debug, Clone)]
pub struct Generated {
    pub train: Dataset,
    pub test: Dataset,
    /// The teacher's noiseless outputs on the train rows (n × d_out).
    pub teacher_train: Vec<f64>,
    /// The teacher's noiseless outputs on the test rows (n_test × d_out).
    pub teacher_test: Vec<f64>,
    /// The teacher network and its weights.
    pub teacher: (MlpSpec, Vec<f64>),
}

fn normal(rng: &mut Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Draws `rows` inputs of dimension `d`.
fn sample_inputs(dist: &InputDist, rows: usize, d: usize, rng: &mut Rng) -> Result<Vec<f64>> {
    let mut x: Vec<f64> = (0..rows * d).map(|_| normal(rng)).collect();
    match dist {
        InputDist::GaussIso => {}
        InputDist::GaussAniso { cov_decay, spectrum } => {
            let sd: Vec<f64> = match spectrum {
                Some(s) => s.iter().map(|v| v.sqrt()).collect(),
                None => (0..d).map(|i| cov_decay.powi(i as i32).sqrt()).collect(),
            };
            for row in x.chunks_exact_mut(d) {
                row.iter_mut().zip(&sd).for_each(|(v, s)| *v *= s);
            }
        }
        InputDist::Mixture { k, spread } => {
            let centres: Vec<Vec<f64>> = (0..*k)
                .map(|_| {
                    let c: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
                    let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
                    c.iter().map(|v| v * spread / (1e-6 + norm)).collect()
                })
                .collect();
            let pick = Uniform::new(0, *k).map_err(|e| crate::error::Error::invalid(format!("data.input.k: {e}")))?;
            for row in x.chunks_exact_mut(d) {
                let c = &centres[pick.sample(rng)];
                row.iter_mut().zip(c).for_each(|(v, cv)| *v += cv);
            }
        }
        InputDist::LowdimManifold { latent_dim } => {
            let a: Vec<f64> = (0..latent_dim * d).map(|_| normal(rng)).collect();
            let z: Vec<f64> = (0..rows * latent_dim).map(|_| normal(rng)).collect();
            for (r, row) in x.chunks_exact_mut(d).enumerate() {
                let zr = &z[r * latent_dim..(r + 1) * latent_dim];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = zr.iter().enumerate().map(|(l, zl)| zl * a[l * d + j]).sum::<f64>().tanh();
                }
            }
        }
        InputDist::HeavyTail { df } => {
            let g = chi2_over_df(*df)?;
            for row in x.chunks_exact_mut(d) {
                let s = 1.0 / g.sample(rng).sqrt();
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
    }
    Ok(x)
}

/// Gamma(df/2, scale 2/df): the χ²_df / df that turns a normal into a Student-t.
fn chi2_over_df(df: f64) -> Result<Gamma<f64>> {
    Gamma::new(df / 2.0, 2.0 / df).map_err(|e| crate::error::Error::invalid(format!("student-t df = {df}: {e}")))
}

/// The teacher network and its weights.
fn make_teacher(cfg: &TeacherConfig, student: &MlpSpec) -> MlpSpec {
    let (widths, activation, bias) = match cfg {
        TeacherConfig::StudentArch => return student.clone(),
        TeacherConfig::Mlp { widths, activation, .. } => (widths.clone(), *activation, true),
        TeacherConfig::DeepLinear { widths, .. } => (widths.clone(), Activation::Identity, false),
    };
    MlpSpec { in_dim: student.in_dim, widths, out_dim: student.out_dim, activation, bias }
}

/// Teacher weights: the standard initialisation, except that a deep linear
/// teacher's first layer is replaced by a rank-`rank` product U·V, so W_L⋯W_1
/// has rank `rank`.
fn teacher_weights(cfg: &TeacherConfig, spec: &MlpSpec, rng: &mut Rng) -> Vec<f64> {
    let mut theta = spec.init(rng);
    if let TeacherConfig::DeepLinear { rank, .. } = cfg {
        let l0 = spec.layout()[0];
        let (h1, h0, r) = (l0.fan_out, l0.fan_in, *rank);
        let u: Vec<f64> = (0..h1 * r).map(|_| normal(rng)).collect();
        let v: Vec<f64> = (0..r * h0).map(|_| normal(rng)).collect();
        let s = 1.0 / ((r.max(1) * h0) as f64).sqrt();
        for i in 0..h1 {
            for j in 0..h0 {
                theta[l0.w + i * h0 + j] = s * (0..r).map(|k| u[i * r + k] * v[k * h0 + j]).sum::<f64>();
            }
        }
    }
    theta
}

/// Generates the train and test sets of a target.
pub fn generate(data: &DataConfig, teacher_cfg: &TeacherConfig, student: &MlpSpec, seed: u64) -> Result<Generated> {
    data.validate(student.in_dim)?;
    let (d_in, d_out) = (student.in_dim, student.out_dim);
    let rows = data.n + data.n_test;
    let x = sample_inputs(&data.input, rows, d_in, &mut stream(seed, purpose::INPUTS))?;

    let mut trng = stream(seed, purpose::TEACHER);
    let tspec = make_teacher(teacher_cfg, student);
    let tw = teacher_weights(teacher_cfg, &tspec, &mut trng);
    let mut clean = tspec.predict(&tw, &x, rows);
    if let TeacherConfig::Mlp { dropout, .. } = teacher_cfg {
        if *dropout > 0.0 {
            let keep = Bernoulli::new(1.0 - dropout).map_err(|e| crate::error::Error::invalid(format!("teacher.dropout: {e}")))?;
            clean.iter_mut().for_each(|v| {
                if !keep.sample(&mut trng) {
                    *v = 0.0
                }
            });
        }
    }

    let mut nrng = stream(seed, purpose::NOISE);
    let mut y = clean.clone();
    match &data.noise {
        Noise::Gauss { scale } => y.iter_mut().for_each(|v| *v += scale * normal(&mut nrng)),
        Noise::Hetero { scale, hetero_scale } => {
            for (r, yr) in y.chunks_exact_mut(d_out).enumerate() {
                let xn = x[r * d_in..(r + 1) * d_in].iter().map(|v| v * v).sum::<f64>().sqrt();
                yr.iter_mut().for_each(|v| *v += scale * (1.0 + hetero_scale * xn) * normal(&mut nrng));
            }
        }
        Noise::StudentT { scale, df } => {
            let g = chi2_over_df(*df)?;
            y.iter_mut().for_each(|v| *v += scale * normal(&mut nrng) / g.sample(&mut nrng).sqrt());
        }
        Noise::Outliers { scale, frac, outlier_scale } => {
            let u = Uniform::new(0.0, 1.0).expect("unit interval");
            y.iter_mut().for_each(|v| {
                let out = u.sample(&mut nrng) < *frac;
                *v += if out { outlier_scale } else { scale } * normal(&mut nrng);
            });
        }
    }

    let split = |a: &[f64], d: usize| (a[..data.n * d].to_vec(), a[data.n * d..].to_vec());
    let (x_train, x_test) = split(&x, d_in);
    let (y_train, y_test) = split(&y, d_out);
    let (t_train, t_test) = split(&clean, d_out);
    let test = Dataset { x: x_test, y: y_test, n: data.n_test, d_in, d_out };
    Ok(Generated { train: Dataset::new(x_train, y_train, d_in, d_out)?, test, teacher_train: t_train, teacher_test: t_test, teacher: (tspec, tw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataConfig;

    fn spec() -> MlpSpec {
        MlpSpec { in_dim: 3, widths: vec![4], out_dim: 2, activation: Activation::Tanh, bias: true }
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let cfg = DataConfig { n: 50, n_test: 10, ..Default::default() };
        let a = generate(&cfg, &TeacherConfig::StudentArch, &spec(), 1).unwrap();
        let b = generate(&cfg, &TeacherConfig::StudentArch, &spec(), 1).unwrap();
        let c = generate(&cfg, &TeacherConfig::StudentArch, &spec(), 2).unwrap();
        assert_eq!(a.train, b.train);
        assert_ne!(a.train.x, c.train.x);
        assert_eq!((a.train.n, a.test.n, a.test.x.len()), (50, 10, 30));
    }

    #[test]
    fn every_input_and_noise_kind_generates_finite_data() {
        let inputs = [
            InputDist::GaussIso,
            InputDist::GaussAniso { cov_decay: 0.5, spectrum: None },
            InputDist::GaussAniso { cov_decay: 1.0, spectrum: Some(vec![4.0, 1.0, 0.25]) },
            InputDist::Mixture { k: 3, spread: 2.0 },
            InputDist::LowdimManifold { latent_dim: 2 },
            InputDist::HeavyTail { df: 4.0 },
        ];
        let noises = [
            Noise::Gauss { scale: 0.1 },
            Noise::Hetero { scale: 0.1, hetero_scale: 0.1 },
            Noise::StudentT { scale: 0.1, df: 4.0 },
            Noise::Outliers { scale: 0.1, frac: 0.05, outlier_scale: 2.0 },
        ];
        for input in &inputs {
            for noise in &noises {
                let cfg = DataConfig { n: 400, n_test: 5, input: input.clone(), noise: noise.clone() };
                let g = generate(&cfg, &TeacherConfig::StudentArch, &spec(), 7).unwrap();
                assert!(g.train.x.iter().chain(&g.train.y).all(|v| v.is_finite()), "{input:?} {noise:?}");
            }
        }
    }

    #[test]
    fn anisotropic_spectrum_sets_the_variances() {
        let cfg = DataConfig {
            n: 20_000,
            n_test: 0,
            input: InputDist::GaussAniso { cov_decay: 1.0, spectrum: Some(vec![4.0, 1.0, 0.25]) },
            noise: Noise::Gauss { scale: 0.0 },
        };
        let g = generate(&cfg, &TeacherConfig::StudentArch, &spec(), 3).unwrap();
        for (j, want) in [4.0, 1.0, 0.25].iter().enumerate() {
            let var = g.train.x.iter().skip(j).step_by(3).map(|v| v * v).sum::<f64>() / 20_000.0;
            // 20000 draws: the sample variance's relative sd is √(2/n) ≈ 1 %; allow 5 %.
            assert!((var / want - 1.0).abs() < 0.05, "dim {j}: {var} vs {want}");
        }
    }

    #[test]
    fn deep_linear_teacher_has_the_requested_rank() {
        let student = MlpSpec { in_dim: 4, widths: vec![7, 5], out_dim: 3, activation: Activation::Identity, bias: false };
        let cfg = TeacherConfig::DeepLinear { widths: vec![7, 5], rank: 1 };
        let data = DataConfig { n: 10, n_test: 0, input: InputDist::GaussIso, noise: Noise::Gauss { scale: 0.0 } };
        let g = generate(&data, &cfg, &student, 5).unwrap();
        // Rank 1: every output row is a multiple of one vector.
        let y = &g.train.y;
        let first = &y[0..3];
        for row in y.chunks_exact(3) {
            let ratio = row[0] / first[0];
            for k in 0..3 {
                assert!((row[k] - ratio * first[k]).abs() < 1e-9 * (1.0 + row[k].abs()));
            }
        }
    }
}
