//! Inference as a library: load a TGC-Net checkpoint (Lin et al., 2025, arXiv 2512.21135) once, then
//! segment pictures from their text. `tgcnet infer`, `tgcnet serve` and the demo's report all go
//! through [`Segmenter`]; its preprocessing is the data crate's ([`tgcnet_data::model_input`]), the one
//! evaluation uses.
//!
//! ```no_run
//! use std::path::Path;
//! use tgcnet_infer::{Segmenter, SegmentOptions};
//!
//! # fn main() -> Result<(), tgcnet_infer::InferError> {
//! let device = burn::tensor::Device::flex();
//! let segmenter = Segmenter::load(Path::new("checkpoints/qata-small.safetensors"), &device)?;
//! let options = SegmentOptions::default();
//! let (picture, result) = segmenter.segment_file(
//!     Path::new("chest.png"),
//!     "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
//!     &options,
//! )?;
//! println!("{:.1} % of the picture is lesion", 100.0 * result.foreground_fraction(0.5));
//! result.overlay(&tgcnet_infer::gray(&picture), 0.5).save("overlay.png").ok();
//! # Ok(())
//! # }
//! ```
//!
//! A CT volume (a NIfTI file or a DICOM series folder, [`tgcnet_data::ScanVolume`]) is segmented slice
//! by slice with [`Segmenter::segment_volume`] ([`volume`]), into a mask volume with the input's geometry.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::sigmoid;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, Luma, RgbImage};
use tgcnet_data::{
    DecodeOptions, Interpolation, Plane, SideConvention, model_input, normalize_caption,
};
use tgcnet_model::{CaptionEncoder, TgcNet, TgcNetConfig, TtaConfig};

pub use tgcnet_train::evaluate::{heatmap, overlay};
pub use volume::{VolumeOptions, VolumeSegmentation, overlay_strip};

pub mod volume;

/// Errors of inference; each names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// An item without caption text (names the item).
    #[error("{0}: the caption is empty; tgcnet segments what the text describes")]
    EmptyCaption(String),
    /// A picture or caption could not be read.
    #[error(transparent)]
    Data(#[from] tgcnet_data::DataError),
    /// The model failed to build or run.
    #[error(transparent)]
    Model(#[from] tgcnet_model::ModelError),
    /// The checkpoint could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] tgcnet_train::TrainError),
    /// The model's output could not be read back from the device.
    #[error("reading the model's output: {0}")]
    Output(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, InferError>;

/// How captions and pictures are read.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Clean noisy caption text as training did ([`normalize_caption`]).
    pub normalize_captions: bool,
    /// What "left" in the caller's text names; converted to the model's convention when they differ.
    /// `None`: the model's own.
    pub laterality: Option<SideConvention>,
    /// CT window and other decoding settings for files.
    pub decode: DecodeOptions,
    /// Test-time views averaged ([`TgcNet::forward_tta`]). `None`: the model's `[model.tta]`.
    pub tta: Option<TtaConfig>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            normalize_captions: true,
            laterality: None,
            decode: DecodeOptions::default(),
            tta: None,
        }
    }
}

/// Wall time of the stages of one call, in milliseconds (a batch's model time is shared by its items).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Decoding, resizing and normalising the picture, tokenising the caption.
    pub preprocess_ms: f64,
    /// The model's forward pass.
    pub model_ms: f64,
    /// Probabilities and similarity back to the picture's size.
    pub postprocess_ms: f64,
}

/// One picture's result, at the picture's own size (`width` × `height`, row-major).
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Width of the picture in pixels.
    pub width: usize,
    /// Height of the picture in pixels.
    pub height: usize,
    /// Lesion probability per pixel (σ of the logits, bilinearly resized from the model's size).
    pub probabilities: Vec<f32>,
    /// σ of VLCM's finest text-pixel similarity map, resized likewise (None with text or VLCM off).
    pub similarity: Option<Vec<f32>>,
    /// The caption as the model read it (normalised, sides converted).
    pub caption: String,
    /// Where the time went (this item's share of its batch).
    pub timings: Timings,
}

impl Segmentation {
    /// The mask: probability above `threshold`.
    pub fn mask(&self, threshold: f32) -> Vec<bool> {
        self.probabilities.iter().map(|&p| p > threshold).collect()
    }

    /// The share of pixels in the mask.
    pub fn foreground_fraction(&self, threshold: f32) -> f64 {
        let n = self
            .probabilities
            .iter()
            .filter(|&&p| p > threshold)
            .count();
        n as f64 / self.probabilities.len().max(1) as f64
    }

    /// The mask as an 8-bit picture (0 / 255).
    pub fn mask_image(&self, threshold: f32) -> GrayImage {
        let m = self.mask(threshold);
        GrayImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            Luma([if m[y as usize * self.width + x as usize] {
                255
            } else {
                0
            }])
        })
    }

    /// The probabilities as an 8-bit picture (0-255), for thresholding elsewhere.
    pub fn probability_image(&self) -> GrayImage {
        GrayImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let p = self.probabilities[y as usize * self.width + x as usize];
            Luma([(p * 255.0).round().clamp(0.0, 255.0) as u8])
        })
    }

    /// `picture` (the input, as [`gray`] gives it) with the mask in red.
    pub fn overlay(&self, picture: &GrayImage, threshold: f32) -> RgbImage {
        overlay(picture, &self.mask(threshold), None)
    }

    /// `picture` under a colour map of the similarity map (blue low, red high).
    pub fn heatmap(&self, picture: &GrayImage) -> Option<RgbImage> {
        self.similarity.as_ref().map(|s| heatmap(picture, s))
    }
}

/// A decoded picture as 8-bit gray (the first channel of colour pictures' luminance), for overlays.
pub fn gray(plane: &Plane) -> GrayImage {
    let n = plane.width * plane.height;
    GrayImage::from_fn(plane.width as u32, plane.height as u32, |x, y| {
        let i = y as usize * plane.width + x as usize;
        let v = if plane.channels == 3 {
            0.299 * plane.data[i] + 0.587 * plane.data[n + i] + 0.114 * plane.data[2 * n + i]
        } else {
            plane.data[i]
        };
        Luma([(v * 255.0).round().clamp(0.0, 255.0) as u8])
    })
}

/// A loaded model with its caption encoder, ready to segment.
pub struct Segmenter {
    model: TgcNet,
    encoder: CaptionEncoder,
    device: Device,
    checkpoint: Option<PathBuf>,
}

impl Segmenter {
    /// Loads a checkpoint (a parameter file or a training state) with the config recorded in it.
    pub fn load(checkpoint: &Path, device: &Device) -> Result<Self> {
        let model = tgcnet_train::checkpoint::load_model(checkpoint, device)?;
        let mut s = Self::new(model, device)?;
        s.checkpoint = Some(checkpoint.to_path_buf());
        Ok(s)
    }

    /// Wraps a model already in memory (for inference: a `valid()` model on a plain device).
    pub fn new(model: TgcNet, device: &Device) -> Result<Self> {
        let encoder = CaptionEncoder::new(model.config())?;
        Ok(Self {
            model,
            encoder,
            device: device.clone(),
            checkpoint: None,
        })
    }

    /// The loaded model's configuration.
    pub fn config(&self) -> &TgcNetConfig {
        self.model.config()
    }

    /// The checkpoint this segmenter was loaded from, if any.
    pub fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// Parameters of the model (all, trainable included).
    pub fn num_params(&self) -> usize {
        burn::module::Module::num_params(&self.model)
    }

    /// The caption the model reads for `text` in the caller's convention.
    pub fn prepare_caption(&self, text: &str, options: &SegmentOptions) -> String {
        let model_sides = self.config().laterality;
        let text = if options.normalize_captions {
            normalize_caption(text)
        } else {
            text.to_string()
        };
        options
            .laterality
            .unwrap_or(model_sides)
            .convert(&text, model_sides)
    }

    /// Decodes a file (PNG, JPEG, DICOM, a single-slice NIfTI) and segments it.
    pub fn segment_file(
        &self,
        path: &Path,
        caption: &str,
        options: &SegmentOptions,
    ) -> Result<(Plane, Segmentation)> {
        let plane = tgcnet_data::imageio::read_image(path, None, &options.decode)?;
        let mut out = self.segment_batch(&[(&plane, caption)], options)?;
        match out.pop() {
            Some(s) => Ok((plane, s)),
            None => Err(InferError::Output("no result".into())),
        }
    }

    /// Segments one picture.
    pub fn segment(
        &self,
        picture: &Plane,
        caption: &str,
        options: &SegmentOptions,
    ) -> Result<Segmentation> {
        self.segment_batch(&[(picture, caption)], options)?
            .pop()
            .ok_or_else(|| InferError::Output("no result".into()))
    }

    /// Segments pictures of any sizes in one forward pass; results in the input order.
    pub fn segment_batch(
        &self,
        items: &[(&Plane, &str)],
        options: &SegmentOptions,
    ) -> Result<Vec<Segmentation>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let t0 = Instant::now();
        let size = self.config().image_size;
        let mut pixels = Vec::with_capacity(items.len() * 3 * size * size);
        let mut captions = Vec::with_capacity(items.len());
        for (i, (plane, text)) in items.iter().enumerate() {
            if self.config().text && text.trim().is_empty() {
                return Err(InferError::EmptyCaption(format!("item {}", i + 1)));
            }
            pixels.extend(model_input(plane, size, Interpolation::Bilinear));
            captions.push(self.prepare_caption(text, options));
        }
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [items.len(), 3, size, size]),
            &self.device,
        );
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let text = self.encoder.encode(&refs, &self.device)?;
        let tta = options.tta.as_ref().unwrap_or(&self.config().tta);
        let flipped = self.encoder.encode_mirrored(&refs, tta, &self.device)?;
        let t1 = Instant::now();
        let out = self.model.forward_tta(images, &text, flipped.as_ref(), tta);
        let probs = sigmoid(out.logits);
        let sims = out.sim_maps.last().map(|s| sigmoid(s.clone()));
        // Reading the first result waits for the device: the model's time ends there.
        let mut results = Vec::with_capacity(items.len());
        let mut t2 = None;
        for (i, ((plane, _), caption)) in items.iter().zip(captions).enumerate() {
            let hw = [plane.height, plane.width];
            let p = resized(probs.clone().narrow(0, i, 1), hw)?;
            let t2 = *t2.get_or_insert_with(Instant::now);
            let s = match &sims {
                Some(s) => Some(resized(s.clone().narrow(0, i, 1), hw)?),
                None => None,
            };
            let n = items.len() as f64;
            results.push(Segmentation {
                width: plane.width,
                height: plane.height,
                probabilities: p,
                similarity: s,
                caption,
                timings: Timings {
                    preprocess_ms: ms(t1 - t0) / n,
                    model_ms: ms(t2 - t1) / n,
                    postprocess_ms: ms(t2.elapsed()) / n,
                },
            });
        }
        Ok(results)
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A [1, 1, h, w] map bilinearly resized (half-pixel centres) to `hw`, as a host vector.
fn resized(x: Tensor<4>, hw: [usize; 2]) -> Result<Vec<f32>> {
    let [_, _, h, w] = x.dims();
    let x = if [h, w] == hw {
        x
    } else {
        interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size(hw),
        )
    };
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| InferError::Output(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize) -> Plane {
        Plane {
            channels: 1,
            width: w,
            height: h,
            data: (0..w * h).map(|i| (i % 17) as f32 / 16.0).collect(),
        }
    }

    fn segmenter() -> Segmenter {
        let device = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let model = TgcNet::new(&cfg, &device).expect("model");
        Segmenter::new(model, &device).expect("segmenter")
    }

    const CAPTION: &str = "Unilateral pulmonary infection, one infected area, upper left lung.";

    #[test]
    fn results_come_back_at_each_input_size_and_match_single_calls() {
        let s = segmenter();
        let opts = SegmentOptions::default();
        let (a, b) = (plane(40, 24), plane(32, 32));
        let batch = s
            .segment_batch(
                &[(&a, CAPTION), (&b, "Bilateral pulmonary infection.")],
                &opts,
            )
            .expect("batch");
        assert_eq!((batch[0].width, batch[0].height), (40, 24));
        assert_eq!(batch[0].probabilities.len(), 40 * 24);
        assert_eq!(batch[1].probabilities.len(), 32 * 32);
        assert!(
            batch[0]
                .similarity
                .as_ref()
                .is_some_and(|v| v.len() == 40 * 24)
        );
        let single = s.segment(&a, CAPTION, &opts).expect("one");
        let diff = single
            .probabilities
            .iter()
            .zip(&batch[0].probabilities)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "batch vs single: {diff}");
        assert_eq!(
            s.segment(&a, " ", &opts)
                .err()
                .map(|e| e.to_string().contains("empty")),
            Some(true)
        );
    }

    #[test]
    fn captions_are_normalised_and_converted_to_the_model_convention() {
        let s = segmenter();
        assert_eq!(s.config().laterality, SideConvention::Image);
        let patient = SegmentOptions {
            laterality: Some(SideConvention::Patient),
            ..SegmentOptions::default()
        };
        assert_eq!(
            s.prepare_caption("one infected areas, upper  left lung..", &patient),
            "one infected area, upper right lung."
        );
        let p = plane(32, 32);
        let as_patient = s.segment(&p, CAPTION, &patient).expect("patient");
        let as_image = s
            .segment(
                &p,
                &CAPTION.replace("left", "right"),
                &SegmentOptions::default(),
            )
            .expect("image");
        assert_eq!(as_patient.caption, as_image.caption);
        assert_eq!(as_patient.probabilities, as_image.probabilities);
    }

    #[test]
    fn pictures_and_masks_render_at_the_input_size() {
        let s = segmenter();
        let p = plane(30, 20);
        // 30 is not a multiple of the patch: the picture is resized for the model and back.
        let r = s
            .segment(&p, CAPTION, &SegmentOptions::default())
            .expect("segment");
        let g = gray(&p);
        assert_eq!(r.mask_image(0.5).dimensions(), (30, 20));
        assert_eq!(r.overlay(&g, 0.5).dimensions(), (30, 20));
        assert_eq!(r.heatmap(&g).map(|h| h.dimensions()), Some((30, 20)));
        let all = r.foreground_fraction(-1.0);
        assert_eq!(all, 1.0);
        assert_eq!(r.foreground_fraction(2.0), 0.0);
    }
}
