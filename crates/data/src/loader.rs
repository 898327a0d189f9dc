//! Loading samples into model-ready buffers, one at a time ([`load_sample`], for inference and
//! evaluation) or as shuffled, augmented batches decoded in parallel on a background thread pool
//! ([`loader`]), so that decoding never holds up a training step.
//!
//! Pipeline per sample: decode (PNG/JPEG/DICOM/NIfTI, see [`crate::imageio`]) → resize to S×S (image
//! bilinear or bicubic, mask nearest; no crop, the aspect ratio is not kept, as LViT/GuideDecoder do)
//! → augmentation (training) → gray → 3 channels, CLIP mean/std. Captions are normalised
//! ([`crate::caption::normalize_caption`]) unless turned off, and "left"/"right" are swapped when the
//! sample was flipped.
//!
//! Reproducibility: the shuffle order depends on (seed, epoch), and a sample's augmentation on (seed,
//! epoch, its index in the sample slice), never on thread scheduling or on which samples were skipped.
//!
//! Bad samples (missing, unreadable, size mismatch, no mask): with [`BadSamplePolicy::Fail`] the
//! iterator yields one `Err` naming the file and ends; with [`BadSamplePolicy::Skip`] the sample is
//! reported on stderr and in [`Loader::bad_samples`], and the batch is filled from the next samples.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::Serialize;

use crate::caption::swap_left_right;
use crate::dataset::Sample;
use crate::error::{DataError, Result};
use crate::imageio::{DecodeOptions, Plane, Window, read_image, read_mask};
use crate::rng::{Rng, mix64, sample_seed};
use crate::transform::{
    AugmentConfig, AugmentParams, Interpolation, augment_mask, augment_plane, resize_mask,
    resize_plane, to_clip,
};

/// What to do with a sample that cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BadSamplePolicy {
    /// Stop with an error naming the file (the default).
    #[default]
    Fail,
    /// Report it (stderr and [`Loader::bad_samples`]) and go on with the other samples.
    Skip,
}

impl FromStr for BadSamplePolicy {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fail" | "error" => Ok(BadSamplePolicy::Fail),
            "skip" => Ok(BadSamplePolicy::Skip),
            _ => Err(DataError::invalid(
                "bad-sample policy",
                format!("`{s}` (expected fail or skip)"),
            )),
        }
    }
}

/// How one sample is decoded (shared by [`load_sample`] and the batch loader).
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Image interpolation for resizing (masks: nearest).
    pub interpolation: Interpolation,
    /// CT window etc.
    pub decode: DecodeOptions,
    /// Apply [`crate::caption::normalize_caption`] (default true).
    pub normalize_captions: bool,
    /// A sample without a mask is an error (training); when false its mask is all zeros.
    pub require_mask: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            interpolation: Interpolation::Bilinear,
            decode: DecodeOptions::default(),
            normalize_captions: true,
            require_mask: false,
        }
    }
}

/// One decoded, resized, normalised sample.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedSample {
    /// Sample id.
    pub id: String,
    /// `[3, S, S]`, CLIP-normalised.
    pub image: Vec<f32>,
    /// `[1, S, S]` in {0, 1}; `None` when the sample has no mask.
    pub mask: Option<Vec<f32>>,
    /// The caption for the model (normalised if asked; left/right swapped if flipped).
    pub caption: String,
    /// (width, height) of the image before resizing (to map predictions back).
    pub original_size: (usize, usize),
    /// Whether the sample was flipped horizontally.
    pub flipped: bool,
}

/// The model's input for a decoded picture: resized to `size`×`size` and CLIP-normalised, `[3·S·S]`; the
/// same two steps [`load_sample`] takes (inference on uploads and files goes through here).
pub fn model_input(plane: &Plane, size: usize, interpolation: Interpolation) -> Vec<f32> {
    to_clip(&resize_plane(plane, size, size, interpolation))
}

/// Loads one sample without augmentation, resized to `size`×`size` (evaluation, inference).
pub fn load_sample(sample: &Sample, size: usize, opts: &SampleOptions) -> Result<LoadedSample> {
    load_sample_augmented(sample, size, opts, &AugmentParams::identity())
}

/// Loads one sample with the given augmentation parameters.
pub fn load_sample_augmented(
    sample: &Sample,
    size: usize,
    opts: &SampleOptions,
    aug: &AugmentParams,
) -> Result<LoadedSample> {
    if size == 0 {
        return Err(DataError::invalid("image size", "0"));
    }
    let plane = read_image(&sample.image_path, sample.slice, &opts.decode)?;
    let original_size = (plane.width, plane.height);
    let mask = match &sample.mask_path {
        Some(mp) => {
            let raw = read_mask(mp, sample.slice)?;
            if (raw.width, raw.height) != original_size {
                return Err(DataError::SizeMismatch {
                    image: sample.image_path.clone(),
                    mask: mp.clone(),
                    image_size: original_size,
                    mask_size: (raw.width, raw.height),
                });
            }
            let bin = raw.binarize(sample.label);
            Some(resize_mask(&bin, raw.width, raw.height, size, size))
        }
        None if opts.require_mask => {
            return Err(DataError::NoMask {
                id: sample.id.clone(),
                image: sample.image_path.clone(),
            });
        }
        None => None,
    };
    let plane = resize_plane(&plane, size, size, opts.interpolation);
    let plane = augment_plane(&plane, aug);
    let mask = mask.map(|m| {
        augment_mask(&m, size, size, aug)
            .into_iter()
            .map(f32::from)
            .collect()
    });
    let mut caption = sample.text(opts.normalize_captions);
    if aug.hflip {
        caption = swap_left_right(&caption);
    }
    Ok(LoadedSample {
        id: sample.id.clone(),
        image: to_clip(&plane),
        mask,
        caption,
        original_size,
        flipped: aug.hflip,
    })
}

/// Batch loader settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// S: images and masks are S×S.
    pub image_size: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle the order each epoch (seeded by `seed` and `epoch`).
    pub shuffle: bool,
    /// Apply random augmentation.
    pub augment: bool,
    /// Ranges of the augmentation.
    pub augment_config: AugmentConfig,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// The epoch number: changes the shuffle order and the augmentation draws.
    pub epoch: u64,
    /// Decoding threads (0: all available cores).
    pub workers: usize,
    /// Batches decoded ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Normalise captions ([`crate::normalize_caption`]).
    pub normalize_captions: bool,
    /// What to do with a sample that cannot be loaded.
    pub on_bad_sample: BadSamplePolicy,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Image interpolation for resizing to S×S (masks: nearest).
    pub interpolation: Interpolation,
    /// CT window (`None`: per-slice min–max).
    pub window: Option<Window>,
    /// A sample without a mask is a bad sample (true for training).
    pub require_masks: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            image_size: 224,
            batch_size: 16,
            shuffle: true,
            augment: false,
            augment_config: AugmentConfig::default(),
            seed: 0,
            epoch: 0,
            workers: 0,
            prefetch: 4,
            normalize_captions: true,
            on_bad_sample: BadSamplePolicy::Fail,
            drop_last: false,
            interpolation: Interpolation::Bilinear,
            window: Some(Window::LUNG),
            require_masks: true,
        }
    }
}

impl LoaderConfig {
    /// The per-sample decoding options implied by this configuration.
    pub fn sample_options(&self) -> SampleOptions {
        SampleOptions {
            interpolation: self.interpolation,
            decode: DecodeOptions {
                window: self.window,
            },
            normalize_captions: self.normalize_captions,
            require_mask: self.require_masks,
        }
    }

    /// The augmentation of the sample at `index` (identity when `augment` is off).
    pub fn augment_params(&self, index: usize) -> AugmentParams {
        if self.augment {
            let mut rng = Rng::new(sample_seed(self.seed, self.epoch, index as u64));
            AugmentParams::sample(&self.augment_config, &mut rng)
        } else {
            AugmentParams::identity()
        }
    }

    /// The order in which sample indices are visited.
    pub fn order(&self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if self.shuffle {
            Rng::new(mix64(self.seed) ^ mix64(self.epoch.wrapping_add(1))).shuffle(&mut order);
        }
        order
    }
}

/// A batch of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[B, 3, S, S]`, CLIP-normalised.
    pub images: Vec<f32>,
    /// `[B, 1, S, S]` in {0, 1} (zeros where `has_mask` is false).
    pub masks: Vec<f32>,
    /// Whether each sample has a mask.
    pub has_mask: Vec<bool>,
    /// B captions as given to the model.
    pub captions: Vec<String>,
    /// B sample ids.
    pub ids: Vec<String>,
    /// Indices of the samples in the slice given to [`loader`].
    pub indices: Vec<usize>,
    /// Whether each sample was flipped horizontally (its caption's sides swapped with it).
    pub flipped: Vec<bool>,
    /// S.
    pub size: usize,
    /// B (the last batch may be smaller than the batch size).
    pub batch: usize,
}

impl Batch {
    /// The images as a `[B, 3, S, S]` tensor.
    pub fn images_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.images.clone(), [self.batch, 3, self.size, self.size]),
            device,
        )
    }

    /// The masks as a `[B, 1, S, S]` tensor.
    pub fn masks_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.masks.clone(), [self.batch, 1, self.size, self.size]),
            device,
        )
    }

    fn assemble(items: Vec<(usize, LoadedSample)>, size: usize) -> Batch {
        let b = items.len();
        let n = size * size;
        let mut batch = Batch {
            images: Vec::with_capacity(b * 3 * n),
            masks: Vec::with_capacity(b * n),
            has_mask: Vec::with_capacity(b),
            captions: Vec::with_capacity(b),
            ids: Vec::with_capacity(b),
            indices: Vec::with_capacity(b),
            flipped: Vec::with_capacity(b),
            size,
            batch: b,
        };
        for (i, s) in items {
            batch.images.extend_from_slice(&s.image);
            match &s.mask {
                Some(m) => batch.masks.extend_from_slice(m),
                None => batch.masks.extend(std::iter::repeat_n(0.0, n)),
            }
            batch.has_mask.push(s.mask.is_some());
            batch.captions.push(s.caption);
            batch.ids.push(s.id);
            batch.indices.push(i);
            batch.flipped.push(s.flipped);
        }
        batch
    }
}

/// A sample that was skipped.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadSample {
    /// Index in the slice given to [`loader`].
    pub index: usize,
    /// Sample id.
    pub id: String,
    /// The file the error is about, when known.
    pub path: Option<PathBuf>,
    /// The error, naming the file and the problem.
    pub error: String,
}

/// The batch iterator returned by [`loader`]. Dropping it stops the background work.
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    bad: Arc<Mutex<Vec<BadSample>>>,
    n_samples: usize,
    batch_size: usize,
    drop_last: bool,
}

impl Loader {
    /// Samples skipped so far (policy [`BadSamplePolicy::Skip`]).
    pub fn bad_samples(&self) -> Vec<BadSample> {
        self.bad.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The shared list of skipped samples (to read after the loader is consumed or dropped).
    pub fn bad_samples_handle(&self) -> Arc<Mutex<Vec<BadSample>>> {
        self.bad.clone()
    }

    /// The number of batches when no sample is skipped.
    pub fn expected_batches(&self) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.drop_last {
            self.n_samples / self.batch_size
        } else {
            self.n_samples.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts loading `samples` in batches on a background thread pool of `cfg.workers` threads, keeping
/// up to `cfg.prefetch` batches ready. See the module header for ordering, augmentation and bad-sample
/// handling.
pub fn loader(samples: &[Sample], cfg: &LoaderConfig) -> Loader {
    let (tx, rx) = sync_channel(cfg.prefetch.max(1));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let samples: Arc<Vec<Sample>> = Arc::new(samples.to_vec());
    let n_samples = samples.len();
    let cfg2 = cfg.clone();
    let bad2 = bad.clone();
    let handle = std::thread::Builder::new()
        .name("tgcnet-loader".into())
        .spawn(move || produce(samples, cfg2, tx, bad2));
    let handle = match handle {
        Ok(h) => Some(h),
        Err(e) => {
            // Could not start the thread: yield the error once.
            let (tx, rx2) = sync_channel(1);
            let _ = tx.send(Err(DataError::invalid(
                "loader",
                format!("cannot start the loader thread: {e}"),
            )));
            return Loader {
                rx: Some(rx2),
                handle: None,
                bad,
                n_samples,
                batch_size: cfg.batch_size,
                drop_last: cfg.drop_last,
            };
        }
    };
    Loader {
        rx: Some(rx),
        handle,
        bad,
        n_samples,
        batch_size: cfg.batch_size,
        drop_last: cfg.drop_last,
    }
}

fn produce(
    samples: Arc<Vec<Sample>>,
    cfg: LoaderConfig,
    tx: SyncSender<Result<Batch>>,
    bad: Arc<Mutex<Vec<BadSample>>>,
) {
    if cfg.batch_size == 0 || cfg.image_size == 0 {
        let _ = tx.send(Err(DataError::invalid(
            "loader config",
            "batch_size and image_size must be positive",
        )));
        return;
    }
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.workers)
        .thread_name(|i| format!("tgcnet-decode-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(DataError::invalid(
                "loader",
                format!("cannot start the decoding threads: {e}"),
            )));
            return;
        }
    };
    let opts = cfg.sample_options();
    let order = cfg.order(samples.len());
    let b = cfg.batch_size;
    let mut cursor = 0;
    let load = |i: usize| -> Result<LoadedSample> {
        load_sample_augmented(&samples[i], cfg.image_size, &opts, &cfg.augment_params(i))
    };
    while cursor < order.len() {
        let mut items: Vec<(usize, LoadedSample)> = Vec::with_capacity(b);
        while items.len() < b && cursor < order.len() {
            let take = (b - items.len()).min(order.len() - cursor);
            let idx = &order[cursor..cursor + take];
            cursor += take;
            let results: Vec<(usize, Result<LoadedSample>)> =
                pool.install(|| idx.par_iter().map(|&i| (i, load(i))).collect());
            for (i, r) in results {
                match r {
                    Ok(s) => items.push((i, s)),
                    Err(e) => match cfg.on_bad_sample {
                        BadSamplePolicy::Fail => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                        BadSamplePolicy::Skip => {
                            eprintln!("warning: skipping sample `{}`: {e}", samples[i].id);
                            if let Ok(mut v) = bad.lock() {
                                v.push(BadSample {
                                    index: i,
                                    id: samples[i].id.clone(),
                                    path: e.path().map(|p| p.to_path_buf()),
                                    error: e.to_string(),
                                });
                            }
                        }
                    },
                }
            }
        }
        if items.is_empty() || (items.len() < b && cfg.drop_last) {
            break;
        }
        if tx.send(Ok(Batch::assemble(items, cfg.image_size))).is_err() {
            return; // the consumer is gone
        }
    }
}
