//! Argument groups that several subcommands share, so that `--preset`, `--config` and `--json` read and
//! behave the same everywhere.

use std::path::PathBuf;

use tgcnet_model::TgcNetConfig;

use crate::info_cmd::model_config;

/// Which model configuration a command describes: a built-in preset or a config file.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelSource {
    /// Built-in configuration: paper, small or tiny.
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// A model config (TOML; starts from its `preset` key, `paper` when absent), or a training config
    /// (`[model]` and `[train]` tables, as given to `tgcnet train`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ModelSource {
    /// The chosen configuration and a name for reports; `None` when neither flag was given.
    pub fn resolve(&self) -> anyhow::Result<Option<(String, TgcNetConfig)>> {
        Ok(match (&self.preset, &self.config) {
            (_, Some(path)) => Some((path.display().to_string(), model_config(path)?)),
            (Some(name), None) => Some((name.clone(), TgcNetConfig::preset(name)?)),
            (None, None) => None,
        })
    }
}

/// Machine-readable output.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct JsonOutput {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
