//! `tgcnet tokenize` and `tgcnet embed`.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Maximum number of ids per line (start and end tokens included); longer inputs are truncated with the
    /// end token kept last.
    #[arg(long, default_value_t = 77)]
    pub context_length: usize,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// HF CLIP model directory (config.json + model.safetensors) or an OpenCLIP .safetensors file.
    #[arg(long)]
    pub clip: PathBuf,
    /// Model config (HF or OpenCLIP JSON) when it is not beside the weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Image files (PNG/JPEG, gray or RGB).
    #[arg(long, num_args = 0..)]
    pub image: Vec<PathBuf>,
    /// Texts (an empty string is valid).
    #[arg(long, num_args = 0.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

pub fn tokenize(_a: TokenizeArgs) -> anyhow::Result<i32> {
    anyhow::bail!("tokenize: not built yet")
}

pub fn embed(_a: EmbedArgs) -> anyhow::Result<i32> {
    anyhow::bail!("embed: not built yet")
}
