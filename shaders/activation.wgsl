// The hidden-layer activation and its derivative, chosen when the pipeline is
// created: 0 relu, 1 tanh, 2 gelu (exact erf form z·Φ(z)), 3 identity.
override ACTIVATION: u32;

const SQRT_HALF: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;

// erfc(x) for x ≥ 0: the Chebyshev fit of Numerical Recipes (erfcc), whose
// fractional error is below 1.2e-7 for every x ≥ 0. Evaluated in f32, the
// rounding of the exponent's argument adds about 1 ulp of x² (≈ 1e-6 relative
// for x < 3), still far inside the backend's 1e-4 tolerance.
fn erfc_pos(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(poly - x * x);
}

// The standard normal CDF Φ(z) = ½·erfc(−z/√2), with small relative error on both tails.
fn normal_cdf(z: f32) -> f32 {
    let tail = 0.5 * erfc_pos(abs(z) * SQRT_HALF);
    return select(tail, 1.0 - tail, z > 0.0);
}

// tanh with its argument clamped: some drivers return NaN for large |z|;
// tanh(±15) is ±1 in f32.
fn safe_tanh(z: f32) -> f32 {
    return tanh(clamp(z, -15.0, 15.0));
}

fn act(z: f32) -> f32 {
    switch ACTIVATION {
        case 0u: { return max(z, 0.0); }
        case 1u: { return safe_tanh(z); }
        case 2u: { return z * normal_cdf(z); }
        default: { return z; }
    }
}

// d act / dz at z (relu: 0 at z = 0, as the CPU backend).
fn act_deriv(z: f32) -> f32 {
    switch ACTIVATION {
        case 0u: { return select(0.0, 1.0, z > 0.0); }
        case 1u: {
            let h = safe_tanh(z);
            return 1.0 - h * h;
        }
        case 2u: { return normal_cdf(z) + z * INV_SQRT_2PI * exp(-0.5 * z * z); }
        default: { return 1.0; }
    }
}
