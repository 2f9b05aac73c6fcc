// The three products (MODE, see layer.wgsl) of a layer with at most NARROW
// outputs, such as a regression MLP's 1-wide output layer, for which
// gemm.wgsl's 64 × 64 output tiles would be almost all padding. The host puts
// `const NARROW: u32 = …;` in front of the module. Same bindings and outputs
// as gemm.wgsl:
//
//   forward:  one thread per row: fan_out dot products of length fan_in
//   delta:    one thread per element of Δ_prev: a dot product of length fan_out
//   gradient: one workgroup per COLS columns of [∂W ∂b], chain and slice of
//             rows; LANES threads per column take every LANES-th row, and
//             their sums are added in workgroup memory
//
// FORWARD and DELTA number their elements across workgroups x and y (a
// dispatch dimension holds at most 65535 workgroups).
const THREADS: u32 = 256u;
const COLS: u32 = 64u;
const LANES: u32 = 4u; // THREADS / COLS
var<workgroup> sums: array<real, NARROW * LANES * COLS>; // [o][lane][column]

fn forward(c: u32, row: u32) {
    if row >= p.rows {
        return;
    }
    let w = c * p.dim + p.w_off;
    for (var o = 0u; o < p.fan_out; o++) {
        var z: real = 0.0;
        for (var k = 0u; k < p.fan_in; k++) {
            z += input_at(c, row, k) * theta[w + o * p.fan_in + k];
        }
        store_forward(c, row, o, z);
    }
}

// Element e = row · fan_in + j of chain c's Δ_prev.
fn delta_prev(c: u32, e: u32) {
    if e >= p.rows * p.fan_in {
        return;
    }
    let row = e / p.fan_in;
    let j = e % p.fan_in;
    let w = c * p.dim + p.w_off;
    var s: real = 0.0;
    for (var o = 0u; o < p.fan_out; o++) {
        s += delta[(c * p.rows + row) * p.fan_out + o] * theta[w + o * p.fan_in + j];
    }
    let out = c * p.rows * p.fan_in + e;
    dst[out] = s * act_deriv(inp[out]);
}

// Columns wg.x · COLS … of [∂W ∂b] over the slice of rows of workgroup z.
fn gradient(wg: vec3u, li: u32) {
    let c = wg.z % p.chains;
    let s = wg.z / p.chains;
    let r_lo = min(s * p.split_rows, p.rows);
    let r_hi = min(r_lo + p.split_rows, p.rows);
    let col = li % COLS;
    let lane = li / COLS;
    let j = wg.x * COLS + col;
    let n_cols = p.fan_in + p.has_bias;
    var acc: array<real, NARROW>;
    if j < n_cols {
        for (var r = r_lo + lane; r < r_hi; r += LANES) {
            var x: real = 1.0; // the bias column
            if j < p.fan_in {
                x = input_at(c, r, j);
            }
            for (var o = 0u; o < p.fan_out; o++) {
                acc[o] += delta[(c * p.rows + r) * p.fan_out + o] * x;
            }
        }
    }
    for (var o = 0u; o < NARROW; o++) {
        sums[(o * LANES + lane) * COLS + col] = acc[o];
    }
    workgroupBarrier();
    if lane != 0u || j >= n_cols {
        return;
    }
    let base = (s * p.chains + c) * p.dim;
    for (var o = 0u; o < p.fan_out; o++) {
        var t: real = 0.0;
        for (var l = 0u; l < LANES; l++) {
            t += sums[(o * LANES + l) * COLS + col];
        }
        if j < p.fan_in {
            dst[base + p.w_off + o * p.fan_in + j] = t;
        } else {
            dst[base + p.b_off + o] = t;
        }
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3u,
    @builtin(num_workgroups) groups: vec3u,
    @builtin(local_invocation_index) li: u32,
) {
    let e = (wg.x + wg.y * groups.x) * THREADS + li;
    switch MODE {
        case 0u: { forward(wg.z, e); }
        case 1u: { delta_prev(wg.z, e); }
        default: { gradient(wg, li); }
    }
}
