// The loss of one chunk: residuals r = pred − y, written as the output
// layer's Δ (dL/dpred is a constant times r; the host applies that constant
// to the gradient it reads back, in f64), and Σ r² added to the chain's
// running sum. One workgroup per chain; a tree reduction in workgroup memory.

// Z of the output layer, C × rows × d_out.
@group(0) @binding(1) var<storage, read> pred: array<real>;
// Y, n × d_out.
@group(0) @binding(2) var<storage, read> y: array<real>;
// Row indices: the identity list, then the minibatch's.
@group(0) @binding(3) var<storage, read> idx: array<u32>;
// Δ of the output layer, C × rows × d_out.
@group(0) @binding(5) var<storage, read_write> delta: array<real>;
// Σ r² per chain, accumulated over the chunks (cleared before the first).
@group(0) @binding(6) var<storage, read_write> sse: array<real>;

const THREADS: u32 = 256u;
var<workgroup> partial: array<real, THREADS>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
    let c = wg.x;
    let count = p.rows * p.d_out;
    let base = c * count;
    var acc: real = 0.0;
    for (var e = li; e < count; e += THREADS) {
        let row = e / p.d_out;
        let r = pred[base + e] - y[idx[p.idx_base + p.row0 + row] * p.d_out + e % p.d_out];
        delta[base + e] = r;
        acc += r * r;
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var w = THREADS / 2u; w > 0u; w /= 2u) {
        if li < w {
            partial[li] += partial[li + w];
        }
        workgroupBarrier();
    }
    if li == 0u {
        sse[c] += partial[0];
    }
}
