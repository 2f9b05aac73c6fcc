// Adds the gradient kernel's per-slice partial sums of one chunk into the
// gradient: grad[i] += Σ_s part[s][i] over the C × D entries, one thread each.

// Partial gradients, splits × C × D.
@group(0) @binding(1) var<storage, read> part: array<real>;
// ∇L, C × D, accumulated over the chunks (cleared before the first).
@group(0) @binding(5) var<storage, read_write> grad: array<real>;

const THREADS: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
    let total = p.chains * p.dim;
    let i = gid.x + gid.y * groups.x * THREADS;
    if i >= total {
        return;
    }
    var sum: real = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += part[s * total + i];
    }
    grad[i] += sum;
}
