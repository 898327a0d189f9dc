//! Evaluation: Dice and IoU (per-image and global), precision, recall, HD95, by caption group; optional
//! predicted masks and overlays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use image::{GrayImage, Luma, Rgb, RgbImage};
use serde::Serialize;
use tgcnet_data::{LoaderConfig, Sample, loader};
use tgcnet_eval::{Accumulator, Confusion, Summary, hd95};
use tgcnet_model::{CaptionEncoder, TgcNet};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub batch_size: usize,
    pub workers: usize,
    pub normalize_captions: bool,
    /// HD95 per image (a distance transform per image; cheap at 224², skipped in per-epoch validation).
    pub hd95: bool,
    pub save_masks: Option<PathBuf>,
    /// At most this many samples (0: all).
    pub max_samples: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 8,
            workers: 0,
            normalize_captions: true,
            hd95: true,
            save_masks: None,
            max_samples: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub id: String,
    pub caption: String,
    pub dice: f64,
    pub iou: f64,
    pub hd95: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub summary: Summary,
    pub groups: BTreeMap<String, Summary>,
    /// Mean loss-free score only; the loss is not computed here.
    pub images: Vec<ImageResult>,
}

/// Runs `model` (a non-autodiff model: pass `model.valid()` during training) over `samples`.
pub fn evaluate(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    samples: &[Sample],
    opts: &EvalOptions,
    device: &Device,
) -> Result<EvalReport> {
    let size = model.config().image_size;
    let samples = if opts.max_samples > 0 && samples.len() > opts.max_samples {
        &samples[..opts.max_samples]
    } else {
        samples
    };
    let cfg = LoaderConfig {
        image_size: size,
        batch_size: opts.batch_size.max(1),
        shuffle: false,
        augment: false,
        workers: opts.workers,
        normalize_captions: opts.normalize_captions,
        require_masks: true,
        ..LoaderConfig::default()
    };
    if let Some(dir) = &opts.save_masks {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let mut acc = Accumulator::default();
    let mut images = Vec::with_capacity(samples.len());
    let n = size * size;
    for batch in loader(samples, &cfg) {
        let batch = batch?;
        let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
        let text = encoder.encode(&captions, device)?;
        let out = model.forward(batch.images_tensor(device), &text);
        let logits = to_vec(out.logits)?;
        for i in 0..batch.batch {
            let pred: Vec<bool> = logits[i * n..(i + 1) * n]
                .iter()
                .map(|&l| l > 0.0)
                .collect();
            let gt: Vec<bool> = batch.masks[i * n..(i + 1) * n]
                .iter()
                .map(|&m| m > 0.5)
                .collect();
            let c = Confusion::from_masks(&pred, &gt);
            let hd = if opts.hd95 {
                hd95(&pred, &gt, size, size)
            } else {
                None
            };
            acc.add(&c, hd, Some(&batch.captions[i]));
            if let Some(dir) = &opts.save_masks {
                let image = &batch.images[i * 3 * n..i * 3 * n + n];
                save_mask_and_overlay(dir, &batch.ids[i], &pred, Some(&gt), image, size)?;
            }
            images.push(ImageResult {
                id: batch.ids[i].clone(),
                caption: batch.captions[i].clone(),
                dice: c.dice(),
                iou: c.iou(),
                hd95: hd,
            });
        }
    }
    Ok(EvalReport {
        summary: acc.summary(),
        groups: acc.groups(),
        images,
    })
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Other(format!("reading a tensor: {e:?}")))
}

/// File-name-safe version of a sample id.
pub fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Grey image from the first channel of a CLIP-normalised image: [S, S].
pub fn denormalize(channel0: &[f32], size: usize) -> GrayImage {
    let (m, s) = (
        tgcnet_clip::image::CLIP_MEAN[0],
        tgcnet_clip::image::CLIP_STD[0],
    );
    GrayImage::from_fn(size as u32, size as u32, |x, y| {
        let v = channel0[y as usize * size + x as usize] * s + m;
        Luma([(v * 255.0).round().clamp(0.0, 255.0) as u8])
    })
}

/// The image with the prediction in red and, where given, the ground truth's outline in green.
pub fn overlay(gray: &GrayImage, pred: &[bool], gt: Option<&[bool]>) -> RgbImage {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let g = gray.get_pixel(x, y).0[0] as f32;
        let mut px = [g, g, g];
        if pred[i] {
            px = [0.5 * g + 127.5, 0.5 * g, 0.5 * g];
        }
        if let Some(gt) = gt {
            let (x, y) = (x as usize, y as usize);
            let edge = gt[i]
                && (x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !gt[i - 1]
                    || !gt[i + 1]
                    || !gt[i - w]
                    || !gt[i + w]);
            if edge {
                px = [0.0, 255.0, 0.0];
            }
        }
        Rgb(px.map(|v| v.clamp(0.0, 255.0) as u8))
    })
}

pub fn write_png<P: image::Pixel<Subpixel = u8> + image::PixelWithColorType>(
    img: &image::ImageBuffer<P, Vec<u8>>,
    path: &Path,
) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| TrainError::Other(format!("{}: encoding PNG: {e}", path.display())))?;
    tgcnet_clip::weights::write_atomic(path, &bytes)?;
    Ok(())
}

pub fn mask_image(pred: &[bool], size: usize) -> GrayImage {
    GrayImage::from_fn(size as u32, size as u32, |x, y| {
        Luma([if pred[y as usize * size + x as usize] {
            255
        } else {
            0
        }])
    })
}

fn save_mask_and_overlay(
    dir: &Path,
    id: &str,
    pred: &[bool],
    gt: Option<&[bool]>,
    image: &[f32],
    size: usize,
) -> Result<()> {
    let name = safe_name(id);
    write_png(
        &mask_image(pred, size),
        &dir.join(format!("{name}_mask.png")),
    )?;
    write_png(
        &overlay(&denormalize(image, size), pred, gt),
        &dir.join(format!("{name}_overlay.png")),
    )
}

/// Jet-like colour map of values in [0, 1], blended over the image.
pub fn heatmap(gray: &GrayImage, values: &[f32]) -> RgbImage {
    let w = gray.width() as usize;
    RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
        let v = values[y as usize * w + x as usize].clamp(0.0, 1.0);
        let r = (1.5 - (4.0 * v - 3.0).abs()).clamp(0.0, 1.0);
        let g = (1.5 - (4.0 * v - 2.0).abs()).clamp(0.0, 1.0);
        let b = (1.5 - (4.0 * v - 1.0).abs()).clamp(0.0, 1.0);
        let base = gray.get_pixel(x, y).0[0] as f32 / 255.0;
        let mix = |c: f32| ((0.5 * base + 0.5 * c) * 255.0) as u8;
        Rgb([mix(r), mix(g), mix(b)])
    })
}

/// `eval.md`: the summary and the per-group table.
pub fn markdown(report: &EvalReport, title: &str) -> String {
    let row = |name: &str, s: &Summary| {
        format!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            s.images,
            100.0 * s.dice_per_image,
            100.0 * s.iou_per_image,
            100.0 * s.dice_global,
            100.0 * s.iou_global,
            100.0 * s.precision_per_image,
            100.0 * s.recall_per_image,
            s.hd95_mean.map_or("-".into(), |h| format!("{h:.2}")),
        )
    };
    let mut md = format!(
        "# {title}\n\nDice/IoU in % (per-image: mean over images; global: pixels pooled). HD95 in pixels, mean over images where both masks are non-empty.\n\n| group | images | Dice per-image | IoU per-image | Dice global | IoU global | precision | recall | HD95 |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    md.push_str(&row("all", &report.summary));
    for (k, s) in &report.groups {
        md.push_str(&row(k, s));
    }
    md
}
