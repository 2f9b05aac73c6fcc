// The three products of a dense layer (MODE, see layer.wgsl) as one tiled,
// batched matrix product with the layer's epilogue fused:
//
//   forward:  M = rows, N = fan_out, K = fan_in
//   delta:    M = rows, N = fan_in, K = fan_out
//   gradient: M = fan_out, N = fan_in + bias, K = rows of the slice

// Output tile TILE × TILE per workgroup of 16 × 16 threads; thread (x, y)
// owns rows 4y…4y+3 and columns 4x…4x+3 of it. The shared tiles hold, for TK
// values of k, the tile's rows (A) and columns (B) as vec4s, so each k step of
// a thread is two vec4 reads for 16 multiply-adds. Rows of the shared tiles
// are padded to 17 vec4s so that vec4 stores walking k spread over the banks.
const TILE: u32 = 64u;
const TK: u32 = 16u;
const STRIDE: u32 = 17u;
var<workgroup> a_tile: array<vec4<real>, 272>; // TK × STRIDE: [k][i / 4][i % 4]
var<workgroup> b_tile: array<vec4<real>, 272>; // TK × STRIDE: [k][j / 4][j % 4]

// (M, N, K) of the product.
fn dims() -> vec3u {
    switch MODE {
        case 0u: { return vec3u(p.rows, p.fan_out, p.fan_in); }
        case 1u: { return vec3u(p.rows, p.fan_in, p.fan_out); }
        default: { return vec3u(p.fan_out, p.fan_in + p.has_bias, p.rows); }
    }
}

fn load_a(c: u32, i: u32, k: u32) -> real {
    switch MODE {
        case 0u: { return input_at(c, i, k); }
        case 1u: { return delta[(c * p.rows + i) * p.fan_out + k]; }
        default: { return delta[(c * p.rows + k) * p.fan_out + i]; }
    }
}

fn load_b(c: u32, k: u32, j: u32) -> real {
    let w = c * p.dim + p.w_off;
    switch MODE {
        case 0u: { return theta[w + j * p.fan_in + k]; }
        case 1u: { return theta[w + k * p.fan_in + j]; }
        default: {
            if j < p.fan_in {
                return input_at(c, k, j);
            }
            return 1.0; // the bias column
        }
    }
}

fn store(c: u32, s: u32, i: u32, j: u32, acc: real) {
    switch MODE {
        case 0u: {
            store_forward(c, i, j, acc);
        }
        case 1u: {
            let o = (c * p.rows + i) * p.fan_in + j;
            dst[o] = acc * act_deriv(inp[o]);
        }
        default: {
            let base = (s * p.chains + c) * p.dim;
            if j < p.fan_in {
                dst[base + p.w_off + i * p.fan_in + j] = acc;
            } else {
                dst[base + p.b_off + i] = acc;
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3u,
    @builtin(local_invocation_id) lid: vec3u,
    @builtin(local_invocation_index) li: u32,
) {
    let d = dims();
    var c = wg.z;
    var s = 0u;
    var k_lo = 0u;
    var k_hi = d.z;
    if MODE == GRADIENT {
        c = wg.z % p.chains;
        s = wg.z / p.chains;
        k_lo = min(s * p.split_rows, d.z);
        k_hi = min(k_lo + p.split_rows, d.z);
    }
    let i0 = wg.y * TILE;
    let j0 = wg.x * TILE;
    // Each thread fills one vec4 of each shared tile per k step (256 threads ×
    // 4 values = TK × TILE): four
    // consecutive i (of A) or j (of B) at one k. Neighbouring threads take
    // neighbouring k where memory is contiguous in k (A except in GRADIENT,
    // where it is Δᵀ; B only in FORWARD, where it is Wᵀ), else neighbouring i/j.
    let a_k_fast = MODE != GRADIENT;
    let b_k_fast = MODE == FORWARD;
    let a_k = select(li / 16u, li % 16u, a_k_fast);
    let a_i = i0 + 4u * select(li % 16u, li / 16u, a_k_fast);
    let b_k = select(li / 16u, li % 16u, b_k_fast);
    let b_j = j0 + 4u * select(li % 16u, li / 16u, b_k_fast);
    var acc: array<vec4<real>, 4>; // acc[r] = outputs (4y + r, 4x…4x+3)
    for (var k0 = k_lo; k0 < k_hi; k0 += TK) {
        var va = vec4<real>(0.0);
        var vb = vec4<real>(0.0);
        for (var q = 0u; q < 4u; q++) {
            if a_i + q < d.x && k0 + a_k < k_hi {
                va[q] = load_a(c, a_i + q, k0 + a_k);
            }
            if b_j + q < d.y && k0 + b_k < k_hi {
                vb[q] = load_b(c, k0 + b_k, b_j + q);
            }
        }
        a_tile[a_k * STRIDE + (a_i - i0) / 4u] = va;
        b_tile[b_k * STRIDE + (b_j - j0) / 4u] = vb;
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = a_tile[kk * STRIDE + lid.y];
            let b = b_tile[kk * STRIDE + lid.x];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + 4u * lid.y + r;
        for (var q = 0u; q < 4u; q++) {
            let j = j0 + 4u * lid.x + q;
            if i < d.x && j < d.y {
                store(c, s, i, j, acc[r][q]);
            }
        }
    }
}
