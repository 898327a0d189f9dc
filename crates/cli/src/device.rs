//! Which burn device runs the job: the CPU (burn-flex) by default; GPUs when built with their feature.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// NVIDIA GPU (build with `--features cuda`).
    Cuda,
    /// Any GPU through WGPU (build with `--features wgpu`).
    Wgpu,
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

impl DeviceArg {
    pub fn device(&self) -> anyhow::Result<burn::tensor::Device> {
        match self.device {
            DeviceKind::Cpu => Ok(burn::tensor::Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Ok(burn::tensor::Device::cuda(0)),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => Ok(burn::tensor::Device::wgpu(
                burn::tensor::DeviceKind::default(),
            )),
            #[allow(unreachable_patterns)]
            other => anyhow::bail!(
                "--device {other:?}: this binary was built without that backend (rebuild with --features {})",
                format!("{other:?}").to_lowercase()
            ),
        }
    }
}
