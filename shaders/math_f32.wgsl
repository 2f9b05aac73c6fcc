// The transcendental functions of the activations, in f32: Vulkan's
// GLSL.std.450 exp and tanh, and a Chebyshev fit of erfc. math_f64.wgsl
// defines the same three functions in f64.

fn exp_real(x: f32) -> f32 {
    return exp(x);
}

// tanh with its argument clamped: some drivers return NaN for large |z|;
// tanh(±15) is ±1 in f32.
fn tanh_real(z: f32) -> f32 {
    return tanh(clamp(z, -15.0, 15.0));
}

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
