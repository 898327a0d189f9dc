//! `tgcnet train`, `tgcnet eval` and `tgcnet export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use tgcnet_data::{Dataset, SideConvention};
use tgcnet_model::{CaptionEncoder, TgcNet, TtaConfig};
use tgcnet_train::checkpoint::{average_params, load_model, load_params, model_config};
use tgcnet_train::evaluate::{CaptionCondition, EvalOptions, evaluate_conditions, markdown};
use tgcnet_train::trainer::TrainOptions;
use tgcnet_train::{RunConfig, train};

use crate::device::DeviceArg;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run config (TOML: `preset = "small"`, `[model]`, `[train]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model preset when no config is given.
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Dataset directory or manifest CSV (format detected); overrides `train.data`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override train.seed (initialisation, data order and augmentation), e.g. to measure seed noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start from this checkpoint's parameters (same architecture) instead of a random initialisation;
    /// overrides train.init.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// `fail` (default) or `skip` samples that cannot be read.
    #[arg(long)]
    pub on_bad_sample: Option<String>,
    /// Do not normalise captions (double full stops, "one infected areas", stray spaces).
    #[arg(long)]
    pub no_normalize_captions: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn train_cmd(a: TrainArgs) -> anyhow::Result<i32> {
    let mut cfg = if a.resume {
        let p = a.out.join("config.toml");
        RunConfig::from_file(&p).with_context(|| format!("resuming {}", a.out.display()))?
    } else {
        match (&a.config, &a.preset) {
            (Some(p), _) => RunConfig::from_file(p)?,
            (None, Some(name)) => RunConfig::from_preset(name)?,
            (None, None) => bail!("give --config FILE or --preset NAME (paper, small, tiny)"),
        }
    };
    if !a.resume {
        if let Some(e) = a.epochs {
            cfg.train.epochs = e;
        }
        if let Some(s) = a.seed {
            cfg.train.seed = s;
        }
        if let Some(p) = &a.init {
            cfg.train.init = Some(p.clone());
        }
        if let Some(p) = &a.on_bad_sample {
            cfg.train.on_bad_sample = p.clone();
        }
        if a.no_normalize_captions {
            cfg.train.normalize_captions = false;
        }
        if let Some(d) = &a.data {
            cfg.train.data = Some(d.clone());
        }
    }
    let data = a
        .data
        .clone()
        .or_else(|| cfg.train.data.clone())
        .context("no dataset: pass --data PATH or set train.data")?;
    let device = a.device.device()?.autodiff();
    let outcome = train(
        &cfg,
        &TrainOptions {
            data: &data,
            out: &a.out,
            resume: a.resume,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
        &device,
    )?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory (uses its best.safetensors).
    #[arg(long, conflicts_with = "checkpoint")]
    pub run: Option<PathBuf>,
    /// A parameter or training-state checkpoint.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Where eval.json and eval.md go (default: the run directory, or beside the checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write predicted masks and overlays here.
    #[arg(long)]
    pub save_masks: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Evaluate at most N samples (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    #[arg(long)]
    pub no_normalize_captions: bool,
    /// Also evaluate with altered captions, to measure text reliance: `shuffled` (captions permuted
    /// among the images, fixed seed), `swapped` (left and right exchanged); comma-separated or repeated.
    /// The numbers go beside the true captions' in eval.json / eval.md.
    #[arg(long, value_delimiter = ',')]
    pub captions: Vec<CaptionCondition>,
    /// What "left" in the dataset's captions names: `image` (the image's left half, as QaTa-COV19) or
    /// `patient` (the patient's left). Captions are converted when it differs from the model's
    /// convention. Default: the model's.
    #[arg(long)]
    pub laterality: Option<SideConvention>,
    /// Probability above which a pixel is lesion. Default: the model's (`[model] threshold`, else 0.5).
    #[arg(long, value_parser = probability)]
    pub threshold: Option<f32>,
    /// Also score these thresholds (comma-separated) in the same pass, to choose one on a validation
    /// split; the table goes into eval.json / eval.md.
    #[arg(long, value_delimiter = ',', value_parser = probability)]
    pub sweep: Vec<f32>,
    /// Test-time views whose logits are averaged with the model's own: input sides in pixels and/or
    /// `flip` (the mirrored picture with its caption's sides swapped), comma-separated, e.g.
    /// `--tta 160,256`; `none`: the plain forward pass. Default: the model's `[model.tta]`.
    #[arg(long, value_parser = tta_views)]
    pub tta: Option<TtaConfig>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// `--tta`'s views.
pub(crate) fn tta_views(s: &str) -> Result<TtaConfig, String> {
    TtaConfig::parse(s).map_err(|e| e.to_string())
}

/// A probability strictly between 0 and 1.
pub(crate) fn probability(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        Ok(p) => Err(format!("{p} is not strictly between 0 and 1")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

/// Rewrites captions written in `from` for a model trained on `to`'s convention, saying so once.
fn convert_sides(samples: &mut [tgcnet_data::Sample], from: SideConvention, to: SideConvention) {
    if from == to {
        return;
    }
    eprintln!(
        "captions name sides in the `{from}` convention, the model in `{to}`: left and right are exchanged before segmenting"
    );
    for s in samples {
        s.caption = from.convert(&s.caption, to);
        s.meta = tgcnet_data::CaptionMeta::parse(&s.caption);
    }
}

fn checkpoint_path(run: &Option<PathBuf>, checkpoint: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match (run, checkpoint) {
        (Some(r), _) => Ok(r.join("best.safetensors")),
        (None, Some(c)) => Ok(c.clone()),
        (None, None) => bail!("give --run RUN_DIR or --checkpoint FILE"),
    }
}

pub fn eval_cmd(a: EvalArgs) -> anyhow::Result<i32> {
    let ckpt = checkpoint_path(&a.run, &a.checkpoint)?;
    let device = a.device.device()?;
    let model = load_model(&ckpt, &device)?;
    let encoder = CaptionEncoder::new(model.config())?;
    let dataset = Dataset::open(&a.data, None)?;
    let mut samples = dataset.split(&a.split)?.to_vec();
    let model_sides = model.config().laterality;
    convert_sides(
        &mut samples,
        a.laterality.unwrap_or(model_sides),
        model_sides,
    );
    let report = evaluate_conditions(
        &model,
        &encoder,
        &samples,
        &a.captions,
        &EvalOptions {
            batch_size: a.batch_size,
            workers: 0,
            normalize_captions: !a.no_normalize_captions,
            hd95: true,
            save_masks: a.save_masks.clone(),
            max_samples: a.limit,
            threshold: a.threshold.unwrap_or(model.config().mask_threshold()),
            sweep: a.sweep.clone(),
            tta: match &a.tta {
                Some(t) => {
                    t.validate(model.config().clip.model.vision.patch_size)?;
                    t.clone()
                }
                None => model.config().tta.clone(),
            },
            ..EvalOptions::default()
        },
        &device,
    )?;
    let out = a.out.clone().unwrap_or_else(|| match &a.run {
        Some(r) => r.clone(),
        None => ckpt
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    });
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let json = serde_json::to_string_pretty(&report)?;
    tgcnet_io::write_atomic(&out.join("eval.json"), json.as_bytes())?;
    let md = markdown(
        &report,
        &format!("{} on {} ({})", ckpt.display(), a.data.display(), a.split),
    );
    tgcnet_io::write_atomic(&out.join("eval.md"), md.as_bytes())?;
    print!("{md}");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A parameter checkpoint (best.safetensors) or a training state (last.safetensors). Given more
    /// than once, the checkpoints' parameters are averaged (e.g. a run's last `epoch-NNN.safetensors`
    /// snapshots; they must share one architecture) and the first one's config is kept.
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// The parameter file to write (what `eval --checkpoint` and `infer` read).
    #[arg(long)]
    pub out: PathBuf,
    /// Store float16 (half the size).
    #[arg(long)]
    pub f16: bool,
    /// Set the model's default test-time views (`[model.tta]`, what `infer`, `serve` and `eval` use
    /// unless told otherwise): sides and/or `flip`, comma-separated; `none` clears them.
    #[arg(long, value_parser = tta_views)]
    pub tta: Option<TtaConfig>,
    /// Set the model's default threshold (`[model] threshold`, what `infer`, `serve` and `eval` use
    /// unless told otherwise), e.g. one chosen on a validation split with `eval --sweep`.
    #[arg(long, value_parser = probability)]
    pub threshold: Option<f32>,
}

/// `tgcnet export`: a training state or parameter file → a parameter file (optionally float16), e.g. to
/// ship a model without its optimizer state.
pub fn export_cmd(a: ExportArgs) -> anyhow::Result<i32> {
    let device = burn::tensor::Device::flex();
    let first = &a.checkpoint[0];
    let params = if a.checkpoint.len() > 1 {
        let paths: Vec<&Path> = a.checkpoint.iter().map(PathBuf::as_path).collect();
        eprintln!("averaging the parameters of {} checkpoints", paths.len());
        average_params(&paths)?
    } else {
        load_params(first)?
    };
    let mut cfg = model_config(first)?;
    if let Some(t) = &a.tta {
        t.validate(cfg.clip.model.vision.patch_size)?;
        cfg.tta = t.clone();
    }
    if let Some(th) = a.threshold {
        cfg.threshold = Some(th);
    }
    let model = TgcNet::new(&cfg, &device)?
        .load_params_map(params)
        .with_context(|| format!("loading {}", first.display()))?;
    model.save_params_with(&a.out, a.f16)?;
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({:.1} MB, {})",
        a.out.display(),
        bytes as f64 / 1e6,
        if a.f16 { "float16" } else { "float32" }
    );
    Ok(0)
}
