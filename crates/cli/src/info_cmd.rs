//! `tgcnet info`: parameters (total and trainable) and FLOPs per image of a TGC-Net configuration, per module.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::Device;
use tgcnet_model::{TgcNetConfig, model_info};

use crate::args::{JsonOutput, ModelSource};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["preset", "config", "checkpoint"])))]
pub struct InfoArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// A checkpoint (its recorded model config).
    #[arg(long, conflicts_with_all = ["preset", "config"])]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub output: JsonOutput,
    /// Also print the full resolved config as TOML.
    #[arg(long)]
    pub show_config: bool,
}

/// A model config file, or the `[model]` part of a training config.
pub fn model_config(path: &std::path::Path) -> anyhow::Result<TgcNetConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    if table.contains_key("model") || table.contains_key("train") {
        Ok(tgcnet_train::RunConfig::from_toml_str(&text, path)?.model)
    } else {
        Ok(TgcNetConfig::from_toml_file(path)?)
    }
}

pub fn run(a: InfoArgs) -> anyhow::Result<i32> {
    let cfg = match (&a.checkpoint, a.source.resolve()?) {
        (Some(path), _) => tgcnet_train::checkpoint::model_config(path)?,
        (None, Some((_, cfg))) => cfg,
        (None, None) => anyhow::bail!("give --preset NAME, --config FILE or --checkpoint FILE"),
    };
    // Parameters are lazy: counting builds the modules without allocating their weights.
    let info =
        model_info(&cfg, &Device::flex()).context("building the model to count its parameters")?;
    if a.output.json {
        let mut value = serde_json::to_value(&info)?;
        if a.show_config {
            value["config"] = serde_json::to_value(&cfg)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{info}");
        println!(
            "captions name sides in the `{}` convention (\"left\" = {}); infer/eval --laterality converts",
            cfg.laterality,
            match cfg.laterality {
                tgcnet_data::SideConvention::Image => "the image's left half",
                tgcnet_data::SideConvention::Patient => "the patient's left, on the image's right",
            }
        );
        println!(
            "infer/serve/eval default to threshold {} and test-time views: {}",
            cfg.mask_threshold(),
            if cfg.tta.is_active() {
                cfg.tta.to_string()
            } else {
                "none".to_string()
            }
        );
        if a.show_config {
            println!("\n{}", cfg.to_toml()?);
        }
    }
    Ok(0)
}
