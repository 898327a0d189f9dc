//! `tgcnet train`, `tgcnet eval`, `tgcnet infer` and `tgcnet demo` (the main job).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::Device;
use clap::Args;
use tgcnet_data::{Dataset, SampleOptions, SideConvention, load_sample};
use tgcnet_model::CaptionEncoder;
use tgcnet_train::checkpoint::load_model;
use tgcnet_train::evaluate::{
    CaptionCondition, EvalOptions, denormalize, evaluate_conditions, heatmap, markdown, overlay,
    to_vec, write_png,
};
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
            (None, Some(name)) => {
                RunConfig::from_toml_str(&format!("preset = {name:?}\n"), Path::new("--preset"))?
            }
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
    #[command(flatten)]
    pub device: DeviceArg,
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
    tgcnet_clip::weights::write_atomic(&out.join("eval.json"), json.as_bytes())?;
    let md = markdown(
        &report,
        &format!("{} on {} ({})", ckpt.display(), a.data.display(), a.split),
    );
    tgcnet_clip::weights::write_atomic(&out.join("eval.md"), md.as_bytes())?;
    print!("{md}");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct InferArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// One image (with --text and --out) ...
    #[arg(long, requires_all = ["text", "out"])]
    pub image: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// VLCM's text-pixel similarity (finest VLCM scale), upsampled, over the image.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
    /// ... or every row of a manifest CSV (`image,text` or `image,mask,text`), written to --out-dir.
    #[arg(long, conflicts_with = "image", requires = "out_dir")]
    pub manifest: Option<PathBuf>,
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    #[arg(long)]
    pub no_normalize_captions: bool,
    /// What "left" in your text names: `patient` (the patient's left, as a radiologist writes) or
    /// `image` (the image's left half). Left and right are exchanged when it differs from the model's
    /// convention (`tgcnet info` shows it; QaTa-COV19 models use `image`). Default: the model's.
    #[arg(long)]
    pub laterality: Option<SideConvention>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// A prediction at the input image's own size (the model's logits and similarity map are resized back
/// bilinearly before thresholding), or at the model's size for inputs `image` cannot open (DICOM, NIfTI).
struct Prediction {
    gray: image::GrayImage,
    mask: Vec<bool>,
    sim: Option<Vec<f32>>,
}

impl Prediction {
    fn mask_png(&self) -> image::GrayImage {
        let w = self.gray.width();
        image::GrayImage::from_fn(w, self.gray.height(), |x, y| {
            image::Luma([if self.mask[(y * w + x) as usize] {
                255
            } else {
                0
            }])
        })
    }
}

/// Bilinear resize (half-pixel centres) of a [1, 1, h, w] map to `size` = [height, width].
fn resize_map(x: burn::tensor::Tensor<4>, size: [usize; 2]) -> burn::tensor::Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    burn::tensor::module::interpolate(
        x,
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(size),
    )
}

fn predict(
    model: &tgcnet_model::TgcNet,
    encoder: &CaptionEncoder,
    image: &Path,
    text: &str,
    normalize: bool,
    device: &Device,
) -> anyhow::Result<Prediction> {
    if text.trim().is_empty() && model.config().text {
        bail!(
            "{}: the caption is empty; tgcnet segments what the text describes",
            image.display()
        );
    }
    let size = model.config().image_size;
    let sample = tgcnet_data::Sample {
        id: image.display().to_string(),
        image_path: image.to_path_buf(),
        mask_path: None,
        slice: None,
        label: None,
        caption: text.to_string(),
        meta: tgcnet_data::CaptionMeta::parse(text),
        source: tgcnet_data::SourceRef {
            file: image.to_path_buf(),
            location: "--image".into(),
        },
    };
    let opts = SampleOptions {
        normalize_captions: normalize,
        ..SampleOptions::default()
    };
    let loaded = load_sample(&sample, size, &opts)?;
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(loaded.image.clone(), [1, 3, size, size]),
        device,
    );
    let batch = encoder.encode(&[loaded.caption.as_str()], device)?;
    let out = model.forward(images, &batch);
    // The original picture, for a mask, overlay and heatmap at its own size.
    let original = image::open(image).ok().map(|i| i.to_luma8());
    let (gray, hw) = match original {
        Some(g) => {
            let hw = [g.height() as usize, g.width() as usize];
            (g, hw)
        }
        None => (
            denormalize(&loaded.image[..size * size], size),
            [size, size],
        ),
    };
    let logits = to_vec(resize_map(out.logits, hw))?;
    let sim = match out.sim_maps.last() {
        Some(s) => Some(to_vec(resize_map(
            burn::tensor::activation::sigmoid(s.clone()),
            hw,
        ))?),
        None => None,
    };
    Ok(Prediction {
        gray,
        mask: logits.iter().map(|&l| l > 0.0).collect(),
        sim,
    })
}

pub fn infer_cmd(a: InferArgs) -> anyhow::Result<i32> {
    let device = a.device.device()?;
    let model = load_model(&a.checkpoint, &device)?;
    let encoder = CaptionEncoder::new(model.config())?;
    let normalize = !a.no_normalize_captions;
    let model_sides = model.config().laterality;
    let user_sides = a.laterality.unwrap_or(model_sides);
    if user_sides != model_sides {
        eprintln!(
            "your text names sides in the `{user_sides}` convention, the model in `{model_sides}`: left and right are exchanged before segmenting"
        );
    }
    let to_model = |text: &str| user_sides.convert(text, model_sides);
    if let (Some(image), Some(text), Some(out)) = (&a.image, &a.text, &a.out) {
        let p = predict(&model, &encoder, image, &to_model(text), normalize, &device)?;
        write_png(&p.mask_png(), out)?;
        if let Some(o) = &a.overlay {
            write_png(&overlay(&p.gray, &p.mask, None), o)?;
        }
        if let Some(h) = &a.heatmap {
            match &p.sim {
                Some(sim) => write_png(&heatmap(&p.gray, sim), h)?,
                None => {
                    bail!("--heatmap: this model has no VLCM similarity map (text or VLCM is off)")
                }
            }
        }
        let fg = p.mask.iter().filter(|&&m| m).count();
        println!(
            "{}: {} foreground pixels of {}",
            out.display(),
            fg,
            p.mask.len()
        );
        return Ok(0);
    }
    let (Some(manifest), Some(dir)) = (&a.manifest, &a.out_dir) else {
        bail!("give --image IMG --text TEXT --out MASK, or --manifest CSV --out-dir DIR");
    };
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let dataset = Dataset::open(manifest, None)?;
    for sample in dataset.splits.values().flatten() {
        let image = &sample.image_path;
        let p = predict(
            &model,
            &encoder,
            image,
            &to_model(&sample.caption),
            normalize,
            &device,
        )?;
        let stem = image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        write_png(&p.mask_png(), &dir.join(format!("{stem}_mask.png")))?;
        write_png(
            &overlay(&p.gray, &p.mask, None),
            &dir.join(format!("{stem}_overlay.png")),
        )?;
        if let Some(sim) = &p.sim {
            write_png(
                &heatmap(&p.gray, sim),
                &dir.join(format!("{stem}_heatmap.png")),
            )?;
        }
        println!("{}", dir.join(format!("{stem}_mask.png")).display());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A parameter checkpoint (best.safetensors) or a training state (last.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The parameter file to write (what `eval --checkpoint` and `infer` read).
    #[arg(long)]
    pub out: PathBuf,
    /// Store float16 (half the size).
    #[arg(long)]
    pub f16: bool,
}

/// `tgcnet export`: a training state or parameter file → a parameter file (optionally float16), e.g. to
/// ship a model without its optimizer state.
pub fn export_cmd(a: ExportArgs) -> anyhow::Result<i32> {
    let device = burn::tensor::Device::flex();
    let model = load_model(&a.checkpoint, &device)
        .with_context(|| format!("loading {}", a.checkpoint.display()))?;
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
