// What the two layer kernels share (gemm.wgsl for layers of any width,
// narrow.wgsl for layers of at most NARROW outputs): the three products of a
// dense layer, their bindings and the layer input. MODE is fixed when the
// pipeline is created; workgroup z runs over the chains (and, for the
// gradient, the row slices).
//
//   0 forward:  Z = In·Wᵀ + b, and H = act(Z) for hidden layers
//   1 delta:    Δ_prev = (Δ·W) ⊙ act'(Z_prev)
//   2 gradient: [∂W ∂b] = Δᵀ·[In 1] over one slice of rows, written to that
//               slice's partial sums
//
// Per-row arrays (In, Z, H, Δ) are chain-major: [chain][row][unit].
override MODE: u32;
const FORWARD: u32 = 0u;
const DELTA: u32 = 1u;
const GRADIENT: u32 = 2u;

// X (gathered through idx) or the previous layer's H; Z_prev in DELTA.
@group(0) @binding(1) var<storage, read> inp: array<real>;
// θ, C × D.
@group(0) @binding(2) var<storage, read> theta: array<real>;
// Row indices: the identity list, then the minibatch's.
@group(0) @binding(3) var<storage, read> idx: array<u32>;
// This layer's Δ = dL/dZ (DELTA, GRADIENT).
@group(0) @binding(4) var<storage, read> delta: array<real>;
// Z (FORWARD), Δ_prev (DELTA), or the partial gradients, splits × C × D (GRADIENT).
@group(0) @binding(5) var<storage, read_write> dst: array<real>;
// H (FORWARD, hidden layers).
@group(0) @binding(6) var<storage, read_write> dst2: array<real>;

// The layer input at (row of the chunk, unit).
fn input_at(c: u32, row: u32, unit: u32) -> real {
    if p.gather != 0u {
        return inp[idx[p.idx_base + p.row0 + row] * p.fan_in + unit];
    }
    return inp[(c * p.rows + row) * p.fan_in + unit];
}

// FORWARD's output for (chain, row of the chunk, unit j) from the product acc:
// Z = acc + b_j, and H = act(Z) for hidden layers.
fn store_forward(c: u32, row: u32, j: u32, acc: real) {
    var z = acc;
    if p.has_bias != 0u {
        z += theta[c * p.dim + p.b_off + j];
    }
    let o = (c * p.rows + row) * p.fan_out + j;
    dst[o] = z;
    if p.hidden != 0u {
        dst2[o] = act(z);
    }
}
