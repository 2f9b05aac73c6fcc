//! The scalar vocabulary every stage shares: the hidden activation, the
//! arithmetic precision and the [`Real`] trait the backends compute in, and
//! which empirical loss L_n is.

use std::ops::{Add, AddAssign, Mul, Sub};

use serde::{Deserialize, Serialize};

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, z); derivative 0 at z = 0.
    Relu,
    /// tanh(z).
    Tanh,
    /// The exact (erf) form z·Φ(z), not the tanh approximation.
    Gelu,
    /// z (deep linear networks).
    Identity,
}

impl Activation {
    /// Parses the names used in configs and npz files.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "relu" => Some(Self::Relu),
            "tanh" => Some(Self::Tanh),
            "gelu" => Some(Self::Gelu),
            "identity" | "linear" | "none" => Some(Self::Identity),
            _ => None,
        }
    }
}

/// Arithmetic precision of a computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    F64,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

/// Which empirical loss L_n is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Mean over all n·d_out entries of (y − f)².
    Mse,
    /// (1/n) Σ ½‖y_i − f(x_i)‖² (Gaussian negative log-likelihood at σ = 1).
    HalfSse,
}

/// The arithmetic the backend is generic over (f32 and f64).
pub trait Real: Copy + Send + Sync + Default + PartialOrd + 'static + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign {
    const PRECISION: Precision;
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The activation at z.
    fn act(a: Activation, z: Self) -> Self;
    /// The activation's derivative, given z and act(z).
    fn act_deriv(a: Activation, z: Self, h: Self) -> Self;
}

macro_rules! impl_real {
    ($t:ty, $p:expr, $erf:path) => {
        impl Real for $t {
            const PRECISION: Precision = $p;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn act(a: Activation, z: Self) -> Self {
                match a {
                    Activation::Relu => z.max(0.0),
                    Activation::Tanh => z.tanh(),
                    Activation::Gelu => 0.5 * z * (1.0 + $erf(z * std::f64::consts::FRAC_1_SQRT_2 as $t)),
                    Activation::Identity => z,
                }
            }
            #[inline]
            fn act_deriv(a: Activation, z: Self, h: Self) -> Self {
                match a {
                    Activation::Relu => {
                        if z > 0.0 {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Activation::Tanh => 1.0 - h * h,
                    Activation::Gelu => {
                        let cdf = 0.5 * (1.0 + $erf(z * std::f64::consts::FRAC_1_SQRT_2 as $t));
                        let pdf = (-0.5 * z * z).exp() * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as $t;
                        cdf + z * pdf
                    }
                    Activation::Identity => 1.0,
                }
            }
        }
    };
}
impl_real!(f32, Precision::F32, libm::erff);
impl_real!(f64, Precision::F64, libm::erf);
