//! Segmentation of dataset samples at the model's input size, keeping what a report shows: the input
//! picture, the mask probabilities, the ground truth and VLCM's text-pixel similarity map.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use image::GrayImage;
use tgcnet_data::{LoaderConfig, Sample, loader};
use tgcnet_model::{CaptionEncoder, TgcNet};

use crate::error::Result;
use crate::evaluate::{denormalize, to_vec};

/// One sample's prediction at the model's input size S.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub id: String,
    /// The caption as the model read it (normalised).
    pub caption: String,
    /// The input picture, S×S gray.
    pub gray: GrayImage,
    /// Foreground probability per pixel, [S·S] row-major.
    pub probs: Vec<f32>,
    /// The sample's mask, [S·S], when it has one.
    pub truth: Option<Vec<bool>>,
    /// σ of the finest VLCM similarity map, bilinearly upsampled to S×S (none with text or VLCM off).
    pub similarity: Option<Vec<f32>>,
    pub size: usize,
}

impl Segmentation {
    /// The mask at threshold 0.5.
    pub fn mask(&self) -> Vec<bool> {
        self.probs.iter().map(|&p| p > 0.5).collect()
    }
}

/// Runs `model` over `samples` (no augmentation, captions normalised) and keeps every output.
pub fn segment_samples(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    samples: &[Sample],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Segmentation>> {
    let size = model.config().image_size;
    let cfg = LoaderConfig {
        image_size: size,
        batch_size: batch_size.max(1),
        shuffle: false,
        augment: false,
        require_masks: false,
        ..LoaderConfig::default()
    };
    let n = size * size;
    let mut out = Vec::with_capacity(samples.len());
    for batch in loader(samples, &cfg) {
        let batch = batch?;
        let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
        let text = encoder.encode(&captions, device)?;
        let result = model.forward(batch.images_tensor(device), &text);
        let probs = to_vec(sigmoid(result.logits))?;
        let sims = match result.sim_maps.last() {
            Some(s) => Some(to_vec(upsample(sigmoid(s.clone()), size))?),
            None => None,
        };
        for i in 0..batch.batch {
            out.push(Segmentation {
                id: batch.ids[i].clone(),
                caption: batch.captions[i].clone(),
                gray: denormalize(&batch.images[i * 3 * n..i * 3 * n + n], size),
                probs: probs[i * n..(i + 1) * n].to_vec(),
                truth: batch.has_mask[i].then(|| {
                    batch.masks[i * n..(i + 1) * n]
                        .iter()
                        .map(|&m| m > 0.5)
                        .collect()
                }),
                similarity: sims.as_ref().map(|s| s[i * n..(i + 1) * n].to_vec()),
                size,
            });
        }
    }
    Ok(out)
}

/// Bilinear (half-pixel centres) resize of [B, 1, h, w] to [B, 1, size, size].
fn upsample(x: Tensor<4>, size: usize) -> Tensor<4> {
    burn::tensor::module::interpolate(
        x,
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([size, size]),
    )
}
