// The transcendental functions of the activations, in f64 arithmetic:
// Vulkan's GLSL.std.450 exp, tanh and the like take 16- and 32-bit floats
// only, so they are built here from +, ×, ÷, floor and ldexp, which it does
// define for f64. math_f32.wgsl defines the same three functions in f32.
// exp and tanh are accurate to a few ulp; erfc to a few ulp plus the
// rounding of x² described at erfc_pos (≈ 2e-14 relative at x = 14).

const LN2_HI: f64 = 6.93147180369123816490e-01; // ln 2 to 32 bits: k·LN2_HI is exact
const LN2_LO: f64 = 1.90821492927058770002e-10; // ln 2 − LN2_HI
const INV_LN2: f64 = 1.44269504088896338700e+00;

// e^r − 1 for |r| ≤ ln(2)/2 by its Taylor series up to r¹³/13!: the
// remainder is below 1.3e-17·|r|, and no term cancels another.
fn expm1_reduced(r: f64) -> f64 {
    let p = 1.0 + r * (1.0 / 2.0 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0
        + r * (1.0 / 5040.0 + r * (1.0 / 40320.0 + r * (1.0 / 362880.0 + r * (1.0 / 3628800.0
        + r * (1.0 / 39916800.0 + r * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))))))))))));
    return r * p;
}

// x = k·ln 2 + r with |r| ≤ ln(2)/2 (Cody–Waite: k·LN2_HI is exact): returns (k, r).
// x is clamped to [−745, 709] so that 2^k stays within ldexp's defined range
// (below e^−708 the result may be flushed to zero).
fn reduce_ln2(x: f64) -> vec2<f64> {
    let xc = clamp(x, -745.0, 709.0);
    let k = floor(xc * INV_LN2 + 0.5);
    return vec2<f64>(k, (xc - k * LN2_HI) - k * LN2_LO);
}

fn exp_real(x: f64) -> f64 {
    let kr = reduce_ln2(x);
    return ldexp(1.0 + expm1_reduced(kr.y), i32(kr.x));
}

// e^x − 1, accurate also for small |x|.
fn expm1_real(x: f64) -> f64 {
    let kr = reduce_ln2(x);
    if kr.x == 0.0 {
        return expm1_reduced(kr.y);
    }
    // |x| > ln(2)/2: |e^x − 1| > 0.29, so the subtraction loses at most 2 bits.
    return ldexp(1.0 + expm1_reduced(kr.y), i32(kr.x)) - 1.0;
}

// tanh z = m / (m + 2) with m = e^{2z} − 1: neither part cancels, for either
// sign of z. tanh(±20) is ±1 in f64, and the clamp keeps e^{2z} finite.
fn tanh_real(z: f64) -> f64 {
    let m = expm1_real(2.0 * clamp(z, -20.0, 20.0));
    return m / (m + 2.0);
}

// erfc(x) for x ≥ 0: fdlibm's s_erf.c (as in the libm crate, which the CPU
// backend's erf uses), whose rational fits are accurate to below 2^−57.
// On [1.25, 28) fdlibm splits x² exactly into two parts; here x² is rounded
// once, which adds at most x²·2^−53 (≤ 1e-13 at x = 28) relative error.
const ERX: f64 = 8.45062911510467529297e-01;
const PP0: f64 = 1.28379167095512558561e-01;
const PP1: f64 = -3.25042107247001499370e-01;
const PP2: f64 = -2.84817495755985104766e-02;
const PP3: f64 = -5.77027029648944159157e-03;
const PP4: f64 = -2.37630166566501626084e-05;
const QQ1: f64 = 3.97917223959155352819e-01;
const QQ2: f64 = 6.50222499887672944485e-02;
const QQ3: f64 = 5.08130628187576562776e-03;
const QQ4: f64 = 1.32494738004321644526e-04;
const QQ5: f64 = -3.96022827877536812320e-06;
const PA0: f64 = -2.36211856075265944077e-03;
const PA1: f64 = 4.14856118683748331666e-01;
const PA2: f64 = -3.72207876035701323847e-01;
const PA3: f64 = 3.18346619901161753674e-01;
const PA4: f64 = -1.10894694282396677476e-01;
const PA5: f64 = 3.54783043256182359371e-02;
const PA6: f64 = -2.16637559486879084300e-03;
const QA1: f64 = 1.06420880400844228286e-01;
const QA2: f64 = 5.40397917702171048937e-01;
const QA3: f64 = 7.18286544141962662868e-02;
const QA4: f64 = 1.26171219808761642112e-01;
const QA5: f64 = 1.36370839120290507362e-02;
const QA6: f64 = 1.19844998467991074170e-02;
const RA0: f64 = -9.86494403484714822705e-03;
const RA1: f64 = -6.93858572707181764372e-01;
const RA2: f64 = -1.05586262253232909814e+01;
const RA3: f64 = -6.23753324503260060396e+01;
const RA4: f64 = -1.62396669462573470355e+02;
const RA5: f64 = -1.84605092906711035994e+02;
const RA6: f64 = -8.12874355063065934246e+01;
const RA7: f64 = -9.81432934416914548592e+00;
const SA1: f64 = 1.96512716674392571292e+01;
const SA2: f64 = 1.37657754143519042600e+02;
const SA3: f64 = 4.34565877475229228821e+02;
const SA4: f64 = 6.45387271733267880336e+02;
const SA5: f64 = 4.29008140027567833386e+02;
const SA6: f64 = 1.08635005541779435134e+02;
const SA7: f64 = 6.57024977031928170135e+00;
const SA8: f64 = -6.04244152148580987438e-02;
const RB0: f64 = -9.86494292470009928597e-03;
const RB1: f64 = -7.99283237680523006574e-01;
const RB2: f64 = -1.77579549177547519889e+01;
const RB3: f64 = -1.60636384855821916062e+02;
const RB4: f64 = -6.37566443368389627722e+02;
const RB5: f64 = -1.02509513161107724954e+03;
const RB6: f64 = -4.83519191608651397019e+02;
const SB1: f64 = 3.03380607434824582924e+01;
const SB2: f64 = 3.25792512996573918826e+02;
const SB3: f64 = 1.53672958608443695994e+03;
const SB4: f64 = 3.19985821950859553908e+03;
const SB5: f64 = 2.55305040643316442583e+03;
const SB6: f64 = 4.74528541206955367215e+02;
const SB7: f64 = -2.24409524465858183362e+01;

fn erfc_pos(x: f64) -> f64 {
    if x < 0.84375 {
        let z = x * x;
        let r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
        let s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
        let y = r / s;
        if x < 0.25 {
            return 1.0 - (x + x * y);
        }
        return 0.5 - (x - 0.5 + x * y);
    }
    if x < 1.25 {
        let s = x - 1.0;
        let p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
        let q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
        return 1.0 - ERX - p / q;
    }
    if x >= 28.0 {
        return 0.0;
    }
    let s = 1.0 / (x * x);
    var r: f64;
    var q: f64;
    if x < 1.0 / 0.35 {
        r = RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7))))));
        q = 1.0 + s * (SA1 + s * (SA2 + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8)))))));
    } else {
        r = RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6)))));
        q = 1.0 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7))))));
    }
    return exp_real(-x * x - 0.5625 + r / q) / x;
}
