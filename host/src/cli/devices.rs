//! `lh-host devices`: the GPU adapters wgpu finds, and what `auto` picks.

use anyhow::Result;
use lh_host::backend::wgpu::list_adapters;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn exec(a: Args) -> Result<Exit> {
    let all = list_adapters();
    if a.json {
        for ad in &all {
            outln!("{}", serde_json::to_string(ad)?);
        }
        return Ok(Exit::Success);
    }
    if all.is_empty() {
        outln!("wgpu finds no adapter: --backend auto uses the CPU, --backend wgpu fails");
        return Ok(Exit::Success);
    }
    outln!("{:<40} {:<8} {:<14} {:<4} {:<7} driver", "adapter", "api", "type", "f64", "compute");
    for ad in &all {
        let yn = |b: bool| if b { "yes" } else { "no" };
        outln!("{:<40} {:<8} {:<14} {:<4} {:<7} {}", ad.name, ad.backend, ad.device_type, yn(ad.shader_f64), yn(ad.compute), ad.driver);
    }
    match all.iter().find(|ad| ad.hardware && ad.compute) {
        Some(ad) if ad.shader_f64 => outln!("--backend auto picks {} for f32 and f64", ad.name),
        Some(ad) => outln!("--backend auto picks {} for f32 (it has no f64 in shaders: f64 runs on the CPU)", ad.name),
        None => outln!("--backend auto picks the CPU (no hardware GPU adapter)"),
    }
    Ok(Exit::Success)
}
