//! `tgcnet bench`: speed and memory of a configuration (see `tgcnet_train::bench`).

use tgcnet_model::TgcNetConfig;
use tgcnet_train::bench::{BenchOptions, bench};

use crate::args::{JsonOutput, ModelSource};
use crate::device::DeviceArg;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The configuration (default: the small preset).
    #[command(flatten)]
    pub source: ModelSource,
    #[command(flatten)]
    pub output: JsonOutput,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Override the configuration's image size.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Skip the training step.
    #[arg(long)]
    pub no_train: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let (name, mut cfg) = match a.source.resolve()? {
        Some(chosen) => chosen,
        None => ("small".to_string(), TgcNetConfig::preset("small")?),
    };
    if let Some(s) = a.image_size {
        cfg.image_size = s;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("--image-size {s}: {e}"))?;
    }
    let opts = BenchOptions {
        warmup: a.warmup,
        repeats: a.repeats.max(1),
        skip_train: a.no_train,
        ..BenchOptions::default()
    };
    let report = bench(&name, &cfg, &opts, &a.device.device()?)?;
    if a.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(0)
}
