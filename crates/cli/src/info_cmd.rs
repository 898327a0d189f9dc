//! `tgcnet info`: parameters (total and trainable) and FLOPs per image of a TGC-Net configuration, per module.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::Device;
use tgcnet_model::{TgcNetConfig, model_info};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["preset", "config", "checkpoint"])))]
pub struct InfoArgs {
    /// Built-in configuration: paper, small or tiny.
    #[arg(long)]
    pub preset: Option<String>,
    /// TGC-Net TOML config file (starts from its `preset` key, `paper` when absent), or a training config
    /// (`[model]` and `[train]` tables, as given to `tgcnet train`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A checkpoint (its recorded model config).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
    let cfg = match (&a.preset, &a.config, &a.checkpoint) {
        (_, _, Some(path)) => tgcnet_train::checkpoint::model_config(path)?,
        (_, Some(path), None) => model_config(path)?,
        (Some(name), None, None) => TgcNetConfig::preset(name)?,
        (None, None, None) => {
            anyhow::bail!("give --preset NAME, --config FILE or --checkpoint FILE")
        }
    };
    // Parameters are lazy: counting builds the modules without allocating their weights.
    let info =
        model_info(&cfg, &Device::flex()).context("building the model to count its parameters")?;
    if a.json {
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
        if a.show_config {
            println!("\n{}", cfg.to_toml()?);
        }
    }
    Ok(0)
}
