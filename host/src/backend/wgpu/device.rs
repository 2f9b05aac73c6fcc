//! Finding and opening a GPU adapter, and turning wgpu's error scopes into
//! [`Error`]s.

use serde::Serialize;

use crate::error::{Error, Result};

/// Which adapters may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Hardware GPUs only (discrete, integrated or virtual): what `auto` takes.
    Hardware,
    /// The best adapter there is, a software rasteriser such as lavapipe included.
    Any,
}

/// One adapter, as `lh-host devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (…)`.
    pub name: String,
    /// Vulkan, Metal, Dx12, …
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version, as the adapter reports them.
    pub driver: String,
    /// Whether the adapter offers f64 in shaders (`SHADER_F64`).
    pub shader_f64: bool,
    /// Whether it can run compute shaders at all.
    pub compute: bool,
    /// Whether `--backend auto` may pick it.
    pub hardware: bool,
}

fn instance() -> ::wgpu::Instance {
    ::wgpu::Instance::new(::wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Preference order of device types; `None` for those `policy` excludes.
fn rank(t: ::wgpu::DeviceType, policy: AdapterPolicy) -> Option<u8> {
    use ::wgpu::DeviceType as T;
    match (t, policy) {
        (T::DiscreteGpu, _) => Some(0),
        (T::IntegratedGpu, _) => Some(1),
        (T::VirtualGpu, _) => Some(2),
        (T::Cpu, AdapterPolicy::Any) => Some(3),
        (T::Other, AdapterPolicy::Any) => Some(4),
        (T::Cpu | T::Other, AdapterPolicy::Hardware) => None,
    }
}

fn can_compute(a: &::wgpu::Adapter) -> bool {
    a.get_downlevel_capabilities().flags.contains(::wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

/// Every adapter wgpu finds, in the order [`GpuContext::open`] prefers them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut all: Vec<_> = pollster::block_on(instance().enumerate_adapters(::wgpu::Backends::all()))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let order = (!can_compute(&a), rank(info.device_type, AdapterPolicy::Any));
            let summary = AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
                shader_f64: a.features().contains(::wgpu::Features::SHADER_F64),
                compute: can_compute(&a),
                hardware: rank(info.device_type, AdapterPolicy::Hardware).is_some(),
            };
            (order, summary)
        })
        .collect();
    all.sort_by_key(|(order, _)| *order);
    all.into_iter().map(|(_, s)| s).collect()
}

/// An opened wgpu device and its queue. Cloning shares the device.
#[derive(Clone)]
pub struct GpuContext {
    pub(super) device: ::wgpu::Device,
    pub(super) queue: ::wgpu::Queue,
    pub(super) info: ::wgpu::AdapterInfo,
}

impl GpuContext {
    /// Opens the most preferred adapter `policy` allows (discrete before
    /// integrated before virtual before software), with the adapter's own
    /// limits and, where it has it, `SHADER_F64`. `Ok(None)` when there is no
    /// such adapter.
    pub fn open(policy: AdapterPolicy) -> Result<Option<Self>> {
        let adapters = pollster::block_on(instance().enumerate_adapters(::wgpu::Backends::all()));
        let Some(adapter) = adapters
            .into_iter()
            .filter(can_compute)
            .filter_map(|a| rank(a.get_info().device_type, policy).map(|r| (r, a)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, a)| a)
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&::wgpu::DeviceDescriptor {
            label: Some("lh-host"),
            required_features: adapter.features() & ::wgpu::Features::SHADER_F64,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::invalid(format!("wgpu: cannot open a device on adapter '{}': {e}", info.name)))?;
        Ok(Some(Self { device, queue, info }))
    }

    /// The adapter's name and wgpu back end, e.g. `NVIDIA H100 (Vulkan)`.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Whether the device runs f64 shaders (the adapter has `SHADER_F64`).
    pub fn shader_f64(&self) -> bool {
        self.device.features().contains(::wgpu::Features::SHADER_F64)
    }
}

/// Runs `f` inside a validation and an out-of-memory error scope, turning
/// wgpu errors into [`Error`]s that say what was being done.
pub(super) fn scoped<T>(device: &::wgpu::Device, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let oom = device.push_error_scope(::wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(::wgpu::ErrorFilter::Validation);
    let out = f();
    let errors = [pollster::block_on(validation.pop()), pollster::block_on(oom.pop())];
    if let Some(e) = errors.into_iter().flatten().next() {
        return Err(Error::invalid(format!("wgpu: {what}: {e}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` (Hardware) never takes a software adapter; both policies
    /// prefer discrete over integrated over virtual GPUs.
    #[test]
    fn adapter_preference() {
        use ::wgpu::DeviceType as T;
        for t in [T::Cpu, T::Other] {
            assert_eq!(rank(t, AdapterPolicy::Hardware), None, "{t:?}");
            assert!(rank(t, AdapterPolicy::Any).is_some());
        }
        for policy in [AdapterPolicy::Hardware, AdapterPolicy::Any] {
            let r = |t| rank(t, policy).unwrap();
            assert!(r(T::DiscreteGpu) < r(T::IntegratedGpu) && r(T::IntegratedGpu) < r(T::VirtualGpu));
        }
        assert!(rank(T::VirtualGpu, AdapterPolicy::Any) < rank(T::Cpu, AdapterPolicy::Any));
    }
}
