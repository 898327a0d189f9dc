//! `tgcnet tokenize` and `tgcnet embed`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use tgcnet_clip::Tokenizer;

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
    /// An image file (PNG/JPEG, gray or RGB); repeat the flag for more.
    #[arg(long, action = clap::ArgAction::Append)]
    pub image: Vec<PathBuf>,
    /// A text (an empty string is valid); repeat the flag for more. A text that starts with a hyphen is
    /// given as `--text=-x`.
    #[arg(long, action = clap::ArgAction::Append)]
    pub text: Vec<String>,
}

pub fn tokenize(a: TokenizeArgs) -> anyhow::Result<i32> {
    let tok = Tokenizer::new()?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.with_context(|| format!("stdin line {}: not UTF-8 text", i + 1))?;
        let ids = tok.tokenize(&line, a.context_length)?;
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    }
    out.flush()?;
    Ok(0)
}

pub fn embed(a: EmbedArgs) -> anyhow::Result<i32> {
    let device = Device::flex();
    let (clip, cfg) = tgcnet_clip::load_clip(&a.clip, a.config.as_deref(), &device)?;
    let image_embeds = if a.image.is_empty() {
        Vec::new()
    } else {
        let pixels = tgcnet_clip::image::load_batch(&a.image, cfg.vision.image_size, &device)?;
        rows(clip.image_embeds(pixels))?
    };
    let text_embeds = if a.text.is_empty() {
        Vec::new()
    } else {
        let tok = Tokenizer::new()?;
        let ctx = cfg.text.context_length;
        let texts: Vec<&str> = a.text.iter().map(String::as_str).collect();
        let flat = tok.tokenize_padded_flat(&texts, ctx)?;
        let ids: Vec<i64> = flat.into_iter().map(i64::from).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [texts.len(), ctx]), &device);
        rows(clip.text_embeds(ids))?
    };
    let json = serde_json::json!({"image_embeds": image_embeds, "text_embeds": text_embeds});
    println!("{json}");
    Ok(0)
}

fn rows(t: Tensor<2>) -> anyhow::Result<Vec<Vec<f32>>> {
    let [_, e] = t.dims();
    let v = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading embeddings: {e:?}"))?;
    Ok(v.chunks(e).map(<[f32]>::to_vec).collect())
}
