// The hidden-layer activation and its derivative, chosen when the pipeline is
// created: 0 relu, 1 tanh, 2 gelu (exact erf form z·Φ(z)), 3 identity.
// exp_real, tanh_real and erfc_pos come from math_f32.wgsl or math_f64.wgsl.
override ACTIVATION: u32;

const SQRT_HALF: real = 0.70710678118654752440;
const INV_SQRT_2PI: real = 0.39894228040143267794;

// The standard normal CDF Φ(z) = ½·erfc(−z/√2), with small relative error on both tails.
fn normal_cdf(z: real) -> real {
    let tail = 0.5 * erfc_pos(abs(z) * SQRT_HALF);
    return select(tail, 1.0 - tail, z > 0.0);
}

fn act(z: real) -> real {
    switch ACTIVATION {
        case 0u: { return max(z, 0.0); }
        case 1u: { return tanh_real(z); }
        case 2u: { return z * normal_cdf(z); }
        default: { return z; }
    }
}

// d act / dz at z (relu: 0 at z = 0, as the CPU backend).
fn act_deriv(z: real) -> real {
    switch ACTIVATION {
        case 0u: { return select(real(0.0), real(1.0), z > 0.0); }
        case 1u: {
            let h = tanh_real(z);
            return 1.0 - h * h;
        }
        case 2u: { return normal_cdf(z) + z * INV_SQRT_2PI * exp_real(-0.5 * z * z); }
        default: { return 1.0; }
    }
}
