//! Evaluation: Dice and IoU (per-image and global), precision, recall, HD95, by caption group; for
//! datasets of volume slices (sample ids `NAME#zK`) also per volume; optional predicted masks and
//! overlays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use image::{GrayImage, Luma, Rgb, RgbImage};
use serde::Serialize;
use tgcnet_data::{CaptionMeta, LoaderConfig, Sample, loader, swap_left_right};
use tgcnet_eval::{Accumulator, Confusion, Summary, hd95};
use tgcnet_model::{CaptionEncoder, TgcNet, TtaConfig};

use crate::error::{Result, TrainError};

/// How [`evaluate`] runs: batching, caption handling and what it writes besides the numbers.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Loader worker threads (0: decode on the calling thread).
    pub workers: usize,
    /// Normalise captions as training did ([`tgcnet_data::normalize_caption`]).
    pub normalize_captions: bool,
    /// HD95 per image (a distance transform per image; cheap at 224², skipped in per-epoch validation).
    pub hd95: bool,
    /// Directory for each image's predicted mask and overlay PNGs; `None`: write nothing.
    pub save_masks: Option<PathBuf>,
    /// At most this many samples (0: all).
    pub max_samples: usize,
    /// Input side (default: the model's own `image_size`); training validates the early stages of a
    /// progressive-resizing schedule at their own size.
    pub image_size: Option<usize>,
    /// Probability above which a pixel is lesion (what `infer --threshold` takes).
    pub threshold: f32,
    /// Further thresholds to score in the same pass ([`EvalReport::sweep`]), to choose one on a
    /// validation split.
    pub sweep: Vec<f32>,
    /// Test-time views whose logits are averaged ([`TgcNet::forward_tta`]); default: one view.
    pub tta: TtaConfig,
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
            image_size: None,
            threshold: 0.5,
            sweep: Vec::new(),
            tta: TtaConfig::default(),
        }
    }
}

/// The scores of one evaluated image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// Sample id.
    pub id: String,
    /// The caption the model was given.
    pub caption: String,
    /// Dice of the thresholded prediction against the mask (fraction).
    pub dice: f64,
    /// IoU of the thresholded prediction against the mask (fraction).
    pub iou: f64,
    /// HD95 in pixels; `None` when not asked for or when either mask is empty.
    pub hd95: Option<f64>,
}

/// The result of [`evaluate`]: overall and per-group summaries, each image's scores.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Scores over all evaluated images.
    pub summary: Summary,
    /// Scores per caption group (laterality, number of areas), keyed by the group's name.
    pub groups: BTreeMap<String, Summary>,
    /// Mean loss-free score only; the loss is not computed here.
    pub images: Vec<ImageResult>,
    /// The same images with altered captions ([`CaptionCondition`]), when asked for: how much the
    /// model relies on the text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionResult>,
    /// Per-volume numbers when the samples are slices of volumes (ids `NAME#zK`); `None` otherwise.
    /// The per-image numbers above are per slice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumeReport>,
    /// The probability threshold of every number above.
    pub threshold: f32,
    /// Dice at each threshold of [`EvalOptions::sweep`] (true captions), from the same forward passes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepRow>,
    /// The test-time views every number above averages (absent: one view).
    #[serde(skip_serializing_if = "TtaConfig::is_off")]
    pub tta: TtaConfig,
}

/// Dice of the same probabilities cut at one threshold.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SweepRow {
    /// Probability threshold.
    pub threshold: f32,
    /// Mean over images of each image's Dice.
    pub dice_per_image: f64,
    /// Dice of all pixels pooled.
    pub dice_global: f64,
}

/// Accumulates [`SweepRow`]s over images.
struct Sweep {
    /// (threshold, logit it corresponds to, sum of per-image Dice, pooled counts).
    rows: Vec<(f32, f32, f64, Confusion)>,
    images: usize,
}

impl Sweep {
    fn new(thresholds: &[f32]) -> Self {
        let rows = thresholds
            .iter()
            .map(|&t| (t, logit_of(t), 0.0, Confusion::default()))
            .collect();
        Self { rows, images: 0 }
    }

    fn add(&mut self, logits: &[f32], gt: &[bool]) {
        for (_, cut, dice, pooled) in &mut self.rows {
            let c: Confusion = logits
                .iter()
                .zip(gt)
                .map(|(&l, &g)| (l > *cut, g))
                .collect();
            *dice += c.dice();
            pooled.add(&c);
        }
        self.images += 1;
    }

    fn finish(self) -> Vec<SweepRow> {
        let n = self.images.max(1) as f64;
        self.rows
            .into_iter()
            .map(|(threshold, _, dice, pooled)| SweepRow {
                threshold,
                dice_per_image: dice / n,
                dice_global: pooled.dice(),
            })
            .collect()
    }
}

/// The logit whose sigmoid is `p` (a probability threshold compared on logits; ±∞ at 0 and 1).
pub fn logit_of(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// Per-volume Dice and IoU: each volume's pixels pooled over its evaluated slices (the dataset's
/// slices of that volume, e.g. those with a non-empty mask when the manifest names none), then the
/// mean over volumes. Computed at the evaluation's input size, like the per-slice numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeReport {
    /// Number of volumes.
    pub volumes: usize,
    /// Mean over volumes of each volume's pooled Dice.
    pub dice_per_volume: f64,
    /// Mean over volumes of each volume's pooled IoU.
    pub iou_per_volume: f64,
    /// One row per volume, in order of first appearance.
    pub per_volume: Vec<VolumeResult>,
}

/// One volume's pooled numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeResult {
    /// The sample id without `#zK`.
    pub volume: String,
    /// Slices of this volume that were evaluated.
    pub slices: usize,
    /// Dice pooled over the volume's slices.
    pub dice: f64,
    /// IoU pooled over the volume's slices.
    pub iou: f64,
}

/// The volume a sample id names: `NAME` of `NAME#zK` (K digits), else `None` (a 2-D picture).
pub fn volume_of(id: &str) -> Option<&str> {
    let (name, k) = id.rsplit_once("#z")?;
    (!k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

/// Pools per-slice confusions by volume; `None` when no id names a volume slice.
pub fn volume_report(slices: &[(String, Confusion)]) -> Option<VolumeReport> {
    let mut order: Vec<&str> = Vec::new();
    let mut pooled: BTreeMap<&str, (Confusion, usize)> = BTreeMap::new();
    for (id, c) in slices {
        let Some(v) = volume_of(id) else { continue };
        let e = pooled.entry(v).or_insert_with(|| {
            order.push(v);
            (Confusion::default(), 0)
        });
        e.0.add(c);
        e.1 += 1;
    }
    if order.is_empty() {
        return None;
    }
    let per_volume: Vec<VolumeResult> = order
        .iter()
        .map(|v| {
            let (c, n) = &pooled[v];
            VolumeResult {
                volume: v.to_string(),
                slices: *n,
                dice: c.dice(),
                iou: c.iou(),
            }
        })
        .collect();
    let n = per_volume.len() as f64;
    Some(VolumeReport {
        volumes: per_volume.len(),
        dice_per_volume: per_volume.iter().map(|r| r.dice).sum::<f64>() / n,
        iou_per_volume: per_volume.iter().map(|r| r.iou).sum::<f64>() / n,
        per_volume,
    })
}

/// Which captions an evaluation gives the model: a probe of text reliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionCondition {
    /// Each image with its own caption.
    True,
    /// Captions permuted among the evaluated samples (seeded by [`SHUFFLE_SEED`]): right images,
    /// wrong reports.
    Shuffled,
    /// "Left" and "right" exchanged in every caption: the report names the other lung.
    Swapped,
}

/// The seed of [`CaptionCondition::Shuffled`]'s permutation (fixed, so runs compare).
pub const SHUFFLE_SEED: u64 = 0x5eed_ca97;

impl CaptionCondition {
    /// The condition's name, as written in reports and accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            CaptionCondition::True => "true",
            CaptionCondition::Shuffled => "shuffled",
            CaptionCondition::Swapped => "swapped",
        }
    }

    /// `samples` with their captions altered by this condition (masks and images unchanged).
    pub fn apply(self, samples: &[Sample]) -> Vec<Sample> {
        let mut out = samples.to_vec();
        match self {
            CaptionCondition::True => {}
            CaptionCondition::Shuffled => {
                let mut order: Vec<usize> = (0..samples.len()).collect();
                tgcnet_data::rng::Rng::new(SHUFFLE_SEED).shuffle(&mut order);
                for (s, &from) in out.iter_mut().zip(&order) {
                    s.caption = samples[from].caption.clone();
                    s.meta = samples[from].meta.clone();
                }
            }
            CaptionCondition::Swapped => {
                for s in &mut out {
                    s.caption = swap_left_right(&s.caption);
                    s.meta = CaptionMeta::parse(&s.caption);
                }
            }
        }
        out
    }
}

impl std::str::FromStr for CaptionCondition {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(CaptionCondition::True),
            "shuffled" => Ok(CaptionCondition::Shuffled),
            "swapped" => Ok(CaptionCondition::Swapped),
            _ => Err(TrainError::Other(format!(
                "unknown caption condition `{s}` (expected true, shuffled or swapped)"
            ))),
        }
    }
}

/// The summary of one [`CaptionCondition`] and its difference to the true captions.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionResult {
    /// Which captions the model was given.
    pub condition: CaptionCondition,
    /// Scores under this condition.
    pub summary: Summary,
    /// This condition's Dice minus the true captions' (fractions; negative: the model lost).
    pub delta_dice_per_image: f64,
    /// This condition's pooled Dice minus the true captions' (fractions).
    pub delta_dice_global: f64,
}

/// [`evaluate`] with the true captions, then once per further condition in `conditions` (`true` in it
/// is ignored: it is the main report), each summarised beside the true captions' numbers.
pub fn evaluate_conditions(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    samples: &[Sample],
    conditions: &[CaptionCondition],
    opts: &EvalOptions,
    device: &Device,
) -> Result<EvalReport> {
    let mut report = evaluate(model, encoder, samples, opts, device)?;
    let quiet = EvalOptions {
        save_masks: None,
        sweep: Vec::new(),
        ..opts.clone()
    };
    for &c in conditions {
        if c == CaptionCondition::True || report.conditions.iter().any(|r| r.condition == c) {
            continue;
        }
        let altered = c.apply(samples);
        let summary = evaluate(model, encoder, &altered, &quiet, device)?.summary;
        report.conditions.push(ConditionResult {
            condition: c,
            delta_dice_per_image: summary.dice_per_image - report.summary.dice_per_image,
            delta_dice_global: summary.dice_global - report.summary.dice_global,
            summary,
        });
    }
    Ok(report)
}

/// Runs `model` (a non-autodiff model: pass `model.valid()` during training) over `samples`.
pub fn evaluate(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    samples: &[Sample],
    opts: &EvalOptions,
    device: &Device,
) -> Result<EvalReport> {
    let size = opts.image_size.unwrap_or(model.config().image_size);
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
    let mut confusions = Vec::with_capacity(samples.len());
    let mut sweep = Sweep::new(&opts.sweep);
    let cut = logit_of(opts.threshold);
    let n = size * size;
    for batch in loader(samples, &cfg) {
        let batch = batch?;
        let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
        let text = encoder.encode(&captions, device)?;
        let flipped = encoder.encode_mirrored(&captions, &opts.tta, device)?;
        let logits = model.forward_tta(
            batch.images_tensor(device),
            &text,
            flipped.as_ref(),
            &opts.tta,
        );
        let logits = to_vec(logits.logits)?;
        for i in 0..batch.batch {
            let image_logits = &logits[i * n..(i + 1) * n];
            let pred: Vec<bool> = image_logits.iter().map(|&l| l > cut).collect();
            let gt: Vec<bool> = batch.masks[i * n..(i + 1) * n]
                .iter()
                .map(|&m| m > 0.5)
                .collect();
            sweep.add(image_logits, &gt);
            let c = Confusion::from_masks(&pred, &gt);
            let hd = if opts.hd95 {
                hd95(&pred, &gt, size, size)
            } else {
                None
            };
            acc.add(&c, hd, Some(&batch.captions[i]));
            confusions.push((batch.ids[i].clone(), c));
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
        conditions: Vec::new(),
        volumes: volume_report(&confusions),
        threshold: opts.threshold,
        sweep: sweep.finish(),
        tta: opts.tta.clone(),
    })
}

/// A tensor's values as `f32`, in row-major order.
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

/// Writes an image as PNG, atomically (temp file + rename).
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
    tgcnet_io::write_atomic(path, &bytes)?;
    Ok(())
}

/// A binary mask as a gray image: 255 inside, 0 outside; `pred` is row-major `size`×`size`.
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

/// The per-volume section of `eval.md` (at most 100 volumes listed; eval.json has all).
fn volumes_markdown(v: &VolumeReport) -> String {
    let mut md = format!(
        "\n## Per volume\n\nThe rows above are per slice. Per volume: each volume's pixels pooled over its \
         evaluated slices, then the mean over volumes.\n\n\
         | volumes | Dice per-volume | IoU per-volume |\n|---|---|---|\n| {} | {:.2} | {:.2} |\n\n\
         | volume | slices | Dice | IoU |\n|---|---|---|---|\n",
        v.volumes,
        100.0 * v.dice_per_volume,
        100.0 * v.iou_per_volume
    );
    for r in v.per_volume.iter().take(100) {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} |\n",
            r.volume,
            r.slices,
            100.0 * r.dice,
            100.0 * r.iou
        ));
    }
    if v.per_volume.len() > 100 {
        md.push_str(&format!(
            "\n{} more volumes in eval.json.\n",
            v.per_volume.len() - 100
        ));
    }
    md
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
    if report.threshold != 0.5 {
        md.push_str(&format!("\nProbability threshold: {}.\n", report.threshold));
    }
    if report.tta.is_active() {
        md.push_str(&format!("\nTest-time views averaged: {}.\n", report.tta));
    }
    if let Some(v) = &report.volumes {
        md.push_str(&volumes_markdown(v));
    }
    if !report.sweep.is_empty() {
        md.push_str(
            "\n## Threshold sweep (true captions, same forward passes)\n\n| threshold | Dice per-image | Dice global |\n|---|---|---|\n",
        );
        for r in &report.sweep {
            md.push_str(&format!(
                "| {} | {:.2} | {:.2} |\n",
                r.threshold,
                100.0 * r.dice_per_image,
                100.0 * r.dice_global
            ));
        }
    }
    if !report.conditions.is_empty() {
        md.push_str(
            "\n## Text reliance: the same images with altered captions\n\n\
             `shuffled`: captions permuted among the images (fixed seed); `swapped`: left and right exchanged \
             in every caption. Δ: the change against the true captions, in Dice points.\n\n\
             | captions | Dice per-image | Δ per-image | Dice global | Δ global | IoU per-image | IoU global |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let s = &report.summary;
        md.push_str(&format!(
            "| true | {:.2} | - | {:.2} | - | {:.2} | {:.2} |\n",
            100.0 * s.dice_per_image,
            100.0 * s.dice_global,
            100.0 * s.iou_per_image,
            100.0 * s.iou_global
        ));
        for c in &report.conditions {
            let s = &c.summary;
            md.push_str(&format!(
                "| {} | {:.2} | {:+.2} | {:.2} | {:+.2} | {:.2} | {:.2} |\n",
                c.condition.name(),
                100.0 * s.dice_per_image,
                100.0 * c.delta_dice_per_image,
                100.0 * s.dice_global,
                100.0 * c.delta_dice_global,
                100.0 * s.iou_per_image,
                100.0 * s.iou_global
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tp: u64, fp: u64, fn_: u64) -> Confusion {
        Confusion {
            tp,
            fp,
            fn_,
            ..Confusion::default()
        }
    }

    #[test]
    fn volume_ids() {
        assert_eq!(volume_of("case_1#z12"), Some("case_1"));
        assert_eq!(volume_of("a#z1#z3"), Some("a#z1"));
        assert_eq!(volume_of("case_1"), None);
        assert_eq!(volume_of("case#zx"), None);
        assert_eq!(volume_of("case#z"), None);
    }

    #[test]
    fn per_volume_dice_pools_each_volumes_slices() {
        let slices = vec![
            ("b#z0".to_string(), c(10, 0, 10)), // Dice 2·10/(20+10) = 0.667
            ("a#z3".to_string(), c(0, 5, 0)),   // an empty slice with a false positive: Dice 0
            ("a#z4".to_string(), c(30, 0, 0)),  // perfect
            ("x.png".to_string(), c(1, 1, 1)),  // a 2-D picture: not a volume
            ("b#z1".to_string(), c(10, 0, 0)),
        ];
        let r = volume_report(&slices).expect("volumes");
        assert_eq!(r.volumes, 2);
        assert_eq!(r.per_volume[0].volume, "b");
        assert_eq!(r.per_volume[0].slices, 2);
        // b pooled: tp 20, fp 0, fn 10: 40 / 50. a pooled: tp 30, fp 5: 60 / 65.
        assert!((r.per_volume[0].dice - 0.8).abs() < 1e-12);
        assert!((r.per_volume[1].dice - 60.0 / 65.0).abs() < 1e-12);
        assert!((r.dice_per_volume - (0.8 + 60.0 / 65.0) / 2.0).abs() < 1e-12);
        // Not the mean of the per-slice Dice (0.667, 0, 1, 1 → 0.667): pooling is per volume.
        assert!((r.iou_per_volume - (20.0 / 30.0 + 30.0 / 35.0) / 2.0).abs() < 1e-12);
        assert_eq!(volume_report(&slices[3..4]), None);
        let report = EvalReport {
            summary: Summary::default(),
            groups: BTreeMap::new(),
            images: Vec::new(),
            conditions: Vec::new(),
            volumes: Some(r),
            threshold: 0.5,
            sweep: Vec::new(),
            tta: TtaConfig::default(),
        };
        let md = markdown(&report, "t");
        assert!(
            md.contains("## Per volume") && md.contains("| b | 2 | 80.00 |"),
            "{md}"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["volumes"]["volumes"], 2);
    }
}
