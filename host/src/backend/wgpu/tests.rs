//! The wgpu backend against the f64 CPU reference (on lavapipe in CI), and
//! the shaders against naga's validator.

use super::*;
use crate::backend::cpu::CpuBackend;
use crate::model::Activation;
use crate::rng::stream;
use rand_distr::{Distribution, StandardNormal};
use std::sync::OnceLock;

const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::F64];

/// Every kernel module parses and validates with naga (no GPU needed), the
/// f32 ones without `FLOAT64` and the f64 ones with it. The f64 modules call
/// none of the GLSL.std.450 functions that Vulkan defines for 16- and
/// 32-bit floats only (exp, tanh, …) on an f64 value.
#[test]
fn shaders_parse_and_validate() {
    use naga::MathFunction as M;
    let float32_only = [
        M::Sin,
        M::Cos,
        M::Tan,
        M::Asin,
        M::Acos,
        M::Atan,
        M::Atan2,
        M::Sinh,
        M::Cosh,
        M::Tanh,
        M::Asinh,
        M::Acosh,
        M::Atanh,
        M::Exp,
        M::Exp2,
        M::Log,
        M::Log2,
        M::Pow,
        M::Radians,
        M::Degrees,
    ];
    for precision in PRECISIONS {
        let caps = match precision {
            Precision::F32 => naga::valid::Capabilities::default(),
            Precision::F64 => naga::valid::Capabilities::default() | naga::valid::Capabilities::FLOAT64,
        };
        for k in Kernel::ALL {
            let src = k.source(precision);
            let what = format!("{} ({precision})", k.name());
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
            let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
            let functions = module.functions.iter().map(|(h, f)| (f, &info[h]));
            let entry_points = module.entry_points.iter().enumerate().map(|(i, ep)| (&ep.function, info.get_entry_point(i)));
            for (f, fi) in functions.chain(entry_points) {
                for (_, e) in f.expressions.iter() {
                    if let naga::Expression::Math { fun, arg, .. } = e {
                        let scalar = fi[*arg].ty.inner_with(&module.types).scalar();
                        assert!(
                            !(scalar == Some(naga::Scalar::F64) && float32_only.contains(fun)),
                            "{what}: {fun:?} of an f64 in {:?}: Vulkan defines it for 16/32-bit floats only",
                            f.name
                        );
                    }
                }
            }
        }
    }
}

/// `struct Params` in common.wgsl has the Rust struct's members, offsets and size.
#[test]
fn params_layout_matches_wgsl() {
    macro_rules! rust_fields {
        ($($f:ident),*) => { vec![$((stringify!($f), std::mem::offset_of!(Params, $f) as u32)),*] };
    }
    let rust = rust_fields!(rows, row0, idx_base, chains, dim, fan_in, fan_out, w_off, b_off, has_bias, gather, hidden, split_rows, splits, d_out);
    for k in Kernel::ALL.into_iter().flat_map(|k| PRECISIONS.map(|p| (k, p))) {
        let (k, precision) = k;
        let module = naga::front::wgsl::parse_str(&k.source(precision)).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).expect("struct Params");
        let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("Params is not a struct") };
        let wgsl: Vec<(&str, u32)> = members.iter().map(|m| (m.name.as_deref().unwrap(), m.offset)).collect();
        assert_eq!(wgsl, rust, "{}: Params members and offsets", k.name());
        assert_eq!(*span as usize, std::mem::size_of::<Params>(), "{}: Params size", k.name());
        assert_eq!(layouter[handle].size as usize, std::mem::size_of::<Params>());
        // Every member is a u32, as in Rust, in both precisions.
        for m in members {
            assert_eq!(module.types[m.ty].inner, naga::TypeInner::Scalar(naga::Scalar::U32), "{} ({precision}): {:?}", k.name(), m.name);
        }
    }
}

/// The shared GPU, opened once; `None` (the test skips) when there is no
/// adapter, unless `REQUIRE_GPU=1`, which turns that into a failure.
fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| GpuContext::open(AdapterPolicy::Any).expect("opening a wgpu device")).as_ref();
    if ctx.is_none() {
        assert!(std::env::var("REQUIRE_GPU").as_deref() != Ok("1"), "REQUIRE_GPU=1 but wgpu finds no adapter");
        eprintln!("skipped: wgpu finds no adapter (install mesa-vulkan-drivers for lavapipe; REQUIRE_GPU=1 makes this a failure)");
    }
    ctx
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if num.is_nan() {
        return f64::INFINITY;
    }
    num / den.max(1e-300)
}

/// One comparison of the wgpu backend against the CPU f64 reference.
struct Case {
    act: Activation,
    widths: Vec<usize>,
    d_in: usize,
    d_out: usize,
    bias: bool,
    n: usize,
    chains: usize,
    loss: LossKind,
    chunk: Option<usize>,
}

/// Relative L2 error of the f32 kernels, over the C losses and over all
/// C·D gradient entries, against the CPU f64 backend.
const TOL_F32: f64 = 1e-4;
/// The same for the f64 kernels.
const TOL_F64: f64 = 1e-12;

/// Compares the wgpu backend in f32 and, where the adapter has
/// `SHADER_F64`, in f64 with the CPU f64 backend (the f64 comparison is
/// skipped, with a message, on adapters without it).
fn check(ctx: &GpuContext, case: &Case, seed: u64) {
    check_in::<f32>(ctx, case, seed, TOL_F32);
    if ctx.shader_f64() {
        check_in::<f64>(ctx, case, seed, TOL_F64);
    } else {
        eprintln!("f64 skipped: adapter '{}' has no SHADER_F64", ctx.adapter_name());
    }
}

/// Loss and gradient in T within `tol` (relative L2 error over the C losses
/// and over all C·D gradient entries) of the CPU f64 backend, with the
/// GPU's buffers poisoned with NaN before each run. Checks the full batch
/// and two minibatches (with repeated rows).
fn check_in<T: Real + Pod>(ctx: &GpuContext, case: &Case, seed: u64, tol: f64) {
    let spec = MlpSpec { in_dim: case.d_in, widths: case.widths.clone(), out_dim: case.d_out, activation: case.act, bias: case.bias };
    let mut r = stream(seed, 0);
    let mut normal = |k: usize| (0..k).map(|_| StandardNormal.sample(&mut r)).collect::<Vec<f64>>();
    let data = Dataset::new(normal(case.n * case.d_in), normal(case.n * case.d_out), case.d_in, case.d_out).unwrap();
    // Wider inits than the default so that hidden units sit in every regime of the activation.
    let pos: Vec<f64> = (0..case.chains).flat_map(|c| spec.init(&mut stream(seed, 1 + c)).into_iter().map(|v| 1.5 * v)).collect();
    let mut cpu = CpuBackend::<f64>::new(&spec, &data, case.loss, case.chains, 1).unwrap();
    let mut gpu = WgpuBackend::<T>::new(ctx, &spec, &data, case.loss, case.chains, case.chunk).unwrap();
    let mut mb_rng = stream(seed, 99);
    let rows = rand_distr::Uniform::new(0, case.n as u32).unwrap();
    let minibatch: Vec<u32> = (0..case.n.div_ceil(2)).map(|_| rows.sample(&mut mb_rng)).collect();
    let repeated = vec![(case.n - 1) as u32; case.n.min(3)];
    let what = format!(
        "{} {:?} {}→{:?}→{} bias={} n={} C={} {:?} chunk={}",
        T::PRECISION,
        case.act,
        case.d_in,
        case.widths,
        case.d_out,
        case.bias,
        case.n,
        case.chains,
        case.loss,
        gpu.chunk_rows()
    );
    for (name, batch) in [("full", Batch::Full), ("minibatch", Batch::Rows(&minibatch)), ("repeated rows", Batch::Rows(&repeated))] {
        let (c, d) = (case.chains, spec.n_params());
        let (mut l64, mut g64) = (vec![0.0; c], vec![0.0; c * d]);
        cpu.loss_grad(&pos, batch, &mut l64, Some(&mut g64)).unwrap();
        let (mut l_gpu, mut g_gpu) = (vec![f64::NAN; c], vec![f64::NAN; c * d]);
        gpu.poison();
        gpu.loss_grad(&pos, batch, &mut l_gpu, Some(&mut g_gpu)).unwrap();
        let (el, eg) = (rel_l2(&l_gpu, &l64), rel_l2(&g_gpu, &g64));
        eprintln!("{what} {name}: loss rel err {el:.2e}, gradient rel L2 err {eg:.2e}");
        assert!(el < tol, "{what} {name}: loss rel err {el:e} ({l_gpu:?} vs {l64:?})");
        assert!(eg < tol, "{what} {name}: gradient rel L2 err {eg:e}");
        if c > 1 {
            // K < C chains per call: the last C − 1 chains alone give their part of the full call.
            let k = c - 1;
            let (mut l_k, mut g_k) = (vec![f64::NAN; k], vec![f64::NAN; k * d]);
            gpu.poison();
            gpu.loss_grad(&pos[d..], batch, &mut l_k, Some(&mut g_k)).unwrap();
            assert!(rel_l2(&l_k, &l64[1..]) < tol && rel_l2(&g_k, &g64[d..]) < tol, "{what} {name}: K = {k} of C = {c} chains");
        }
        // Loss alone (no backward pass) agrees too.
        let mut l_only = vec![f64::NAN; c];
        gpu.poison();
        gpu.loss_grad(&pos, batch, &mut l_only, None).unwrap();
        assert!(rel_l2(&l_only, &l64) < tol, "{what} {name}: loss without gradient");
    }
}

const ACTS: [Activation; 4] = [Activation::Relu, Activation::Tanh, Activation::Gelu, Activation::Identity];

fn case(act: Activation, widths: &[usize], n: usize, chains: usize) -> Case {
    Case { act, widths: widths.to_vec(), d_in: 3, d_out: 2, bias: true, n, chains, loss: LossKind::Mse, chunk: None }
}

/// Widths 1, 3, 17, 62, 65 (none a multiple of the 64-wide tile but 65's
/// overhang), n = 1, 7, 1000 and C = 1, 3, 8, for every activation.
#[test]
fn matches_cpu_f64_for_every_activation_and_shape() {
    let Some(ctx) = gpu() else { return };
    for (i, act) in ACTS.into_iter().enumerate() {
        let seed = 100 + i as u64;
        check(ctx, &case(act, &[17, 65], 1000, 3), seed);
        check(ctx, &case(act, &[62, 3], 7, 8), seed);
        check(ctx, &case(act, &[1], 1, 1), seed);
    }
}

/// Half-SSE, no biases, several outputs, a single input, deeper nets.
#[test]
fn matches_cpu_f64_for_losses_and_layouts() {
    let Some(ctx) = gpu() else { return };
    let mut c = case(Activation::Tanh, &[5, 4, 3], 300, 2);
    c.loss = LossKind::HalfSse;
    c.bias = false;
    check(ctx, &c, 7);
    let mut c = case(Activation::Gelu, &[62, 62, 62], 1000, 1);
    c.d_in = 32;
    c.d_out = 1;
    check(ctx, &c, 8);
    let mut c = case(Activation::Relu, &[], 50, 3);
    c.d_in = 1;
    c.d_out = 4;
    check(ctx, &c, 9);
}

/// Several chunks of rows, the last one partial, and several gradient
/// slices per chunk, give the same numbers as one pass.
#[test]
fn matches_cpu_f64_across_chunks() {
    let Some(ctx) = gpu() else { return };
    for (chunk, n) in [(64, 1000), (1, 7), (300, 1000)] {
        let mut c = case(Activation::Gelu, &[17, 3], n, 3);
        c.chunk = Some(chunk);
        check(ctx, &c, 11);
    }
}

/// The f64 activations agree value by value with f64 references (std's
/// tanh; Φ from libm's erfc) over z ∈ ±[0.25, 20.25], tails included, and
/// at tiny |z|: act(z) to a relative 1e-13, act′(z) to 1e-13 of the size
/// of its terms (1 for tanh′ = 1 − tanh², Φ + |z|φ for gelu′ = Φ + zφ).
/// Chain c evaluates the 1→1→1 net with W1 = z_c, W2 = 1 and zero biases
/// on the single row x = 1, y = 0 under half-SSE, so its loss is
/// act(z_c)²/2 and ∂L/∂b1 = act(z_c)·act′(z_c).
#[test]
fn f64_activations_match_references_value_by_value() {
    let Some(ctx) = gpu() else { return };
    if !ctx.shader_f64() {
        eprintln!("skipped: adapter '{}' has no SHADER_F64", ctx.adapter_name());
        return;
    }
    let mut zs: Vec<f64> = (0..82).map(|i| -20.25 + 0.5 * f64::from(i)).collect();
    zs.extend([1e-8, -1e-8, 1e-3, -1e-3]);
    let data = Dataset::new(vec![1.0], vec![0.0], 1, 1).unwrap();
    for act in [Activation::Tanh, Activation::Gelu] {
        let spec = MlpSpec { in_dim: 1, widths: vec![1], out_dim: 1, activation: act, bias: true };
        let (layout, d) = (spec.layout(), spec.n_params());
        let mut pos = vec![0.0; zs.len() * d];
        for (c, z) in zs.iter().enumerate() {
            pos[c * d + layout[0].w] = *z;
            pos[c * d + layout[1].w] = 1.0;
        }
        let mut b = WgpuBackend::<f64>::new(ctx, &spec, &data, LossKind::HalfSse, zs.len(), None).unwrap();
        let (mut loss, mut grad) = (vec![f64::NAN; zs.len()], vec![f64::NAN; zs.len() * d]);
        b.poison();
        b.loss_grad(&pos, Batch::Full, &mut loss, Some(&mut grad)).unwrap();
        let (mut worst_h, mut worst_dh) = (0.0f64, 0.0f64);
        for (c, &z) in zs.iter().enumerate() {
            let (h, dh, scale) = match act {
                Activation::Gelu => {
                    let cdf = 0.5 * libm::erfc(-z * std::f64::consts::FRAC_1_SQRT_2);
                    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                    (z * cdf, cdf + z * pdf, cdf + z.abs() * pdf)
                }
                _ => (z.tanh(), 1.0 - z.tanh() * z.tanh(), 1.0),
            };
            let h_gpu = h.signum() * (2.0 * loss[c]).sqrt();
            let dh_gpu = grad[c * d + layout[0].b.unwrap()] / h_gpu;
            assert!((h_gpu - h).abs() <= 1e-13 * h.abs(), "{act:?}({z}): {h_gpu:e} vs {h:e}");
            assert!((dh_gpu - dh).abs() <= 1e-13 * scale, "{act:?}'({z}): {dh_gpu:e} vs {dh:e}");
            worst_h = worst_h.max((h_gpu - h).abs() / h.abs());
            worst_dh = worst_dh.max((dh_gpu - dh).abs() / scale);
        }
        eprintln!("f64 {act:?}: act rel err ≤ {worst_h:.2e}, act′ err ≤ {worst_dh:.2e} (of its terms' size)");
    }
}

/// Shapes and rows are checked, with messages that say what is wrong.
#[test]
fn rejects_bad_arguments() {
    let Some(ctx) = gpu() else { return };
    let spec = MlpSpec { in_dim: 2, widths: vec![3], out_dim: 1, activation: Activation::Relu, bias: true };
    let data = Dataset::new(vec![0.5; 10], vec![1.0; 5], 2, 1).unwrap();
    let mut b = WgpuBackend::<f32>::new(ctx, &spec, &data, LossKind::Mse, 2, None).unwrap();
    let pos = vec![0.1; 2 * spec.n_params()];
    let mut l = vec![0.0; 2];
    let e = b.loss_grad(&pos, Batch::Rows(&[5]), &mut l, None).unwrap_err().to_string();
    assert!(e.contains("row 5 is out of range"), "{e}");
    let e = b.loss_grad(&pos, Batch::Rows(&[0; 6]), &mut l, None).unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
    assert!(b.loss_grad(&pos[1..], Batch::Full, &mut l, None).is_err());
    assert_eq!(b.info().precision, Precision::F32);
    let other = Dataset::new(vec![0.5; 9], vec![1.0; 3], 3, 1).unwrap();
    assert!(WgpuBackend::<f32>::new(ctx, &spec, &other, LossKind::Mse, 2, None).is_err());
}

/// `--backend wgpu` builds the f64 kernels where the adapter has
/// `SHADER_F64` (an error naming the adapter where it has not), and the
/// backend reports wgpu, the adapter and the precision it computes in.
#[test]
fn factory_builds_each_precision() {
    use crate::backend::{BackendFactory, BackendKind};
    let Some(ctx) = gpu() else { return };
    let factory = BackendFactory::new(BackendKind::Wgpu, 1).unwrap();
    let spec = MlpSpec { in_dim: 2, widths: vec![3], out_dim: 1, activation: Activation::Tanh, bias: true };
    let data = Dataset::new(vec![0.5; 10], vec![1.0; 5], 2, 1).unwrap();
    assert_eq!(factory.precisions().contains(&Precision::F64), ctx.shader_f64());
    assert_eq!(factory.fallback_note(Precision::F64), None, "only auto falls back");
    for precision in PRECISIONS {
        match factory.build(&spec, &data, LossKind::Mse, 2, precision) {
            Ok(b) => assert_eq!(b.info(), BackendInfo { backend: "wgpu".into(), adapter: ctx.adapter_name(), precision }),
            Err(e) => {
                assert!(precision == Precision::F64 && !ctx.shader_f64(), "{precision}: {e}");
                assert!(e.to_string().contains(&ctx.adapter_name()) && e.to_string().contains("--precision f32"), "{e}");
            }
        }
    }
}
