// `real`, the scalar type of every kernel, is f32 or f64: WGSL has no
// generics, so the host puts `alias real = f32;` or `alias real = f64;` in
// front of each module it assembles (`Kernel::source` in
// host/src/backend/wgpu.rs), followed by this file.
//
// Shared by every kernel: the parameters of one dispatch, integers only, so
// that one layout serves both precisions. Mirrors `Params` in
// host/src/backend/wgpu.rs (a unit test checks that the layouts agree). Each
// dispatch reads its own copy through a dynamic uniform offset.
struct Params {
    // Rows in this chunk of the batch, and the chunk's first row within the batch.
    rows: u32,
    row0: u32,
    // Where the batch's row indices start in `idx` (the identity list for a full batch).
    idx_base: u32,
    chains: u32,
    // Parameters per chain.
    dim: u32,
    // The layer: its shape and where W (row-major [fan_out, fan_in]) and b live in θ.
    fan_in: u32,
    fan_out: u32,
    w_off: u32,
    b_off: u32,
    has_bias: u32,
    // 1: the layer's input is X, its rows gathered through `idx`; 0: the previous layer's H.
    gather: u32,
    // 1: the layer is hidden (the activation is applied and H written).
    hidden: u32,
    // Gradient: rows per slice, and the number of slices whose partial sums are added.
    split_rows: u32,
    splits: u32,
    // Loss: outputs per row.
    d_out: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
