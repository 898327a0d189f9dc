//! `tgcnet-data`: everything between the files users have and the model's input buffers, for TGC-Net
//! (Lin et al., 2025, arXiv 2512.21135).
//!
//! - [`dataset`]: the four layouts (SGSeg JSON, LViT xlsx, GuideDecoder CSV, manifest CSV), detected or
//!   forced, read into [`Dataset`] → splits of [`Sample`]s.
//! - [`imageio`], [`dicom`], [`codecs`], [`nifti`]: decoding PNG/JPEG (8/16-bit, gray/RGB), DICOM
//!   (uncompressed, RLE, JPEG, JPEG 2000) and NIfTI-1 volumes, CT windows, mask binarisation rules.
//! - [`volume`]: a CT volume (a NIfTI file or a DICOM series folder) as display-oriented axial slices
//!   with the geometry a mask volume needs.
//! - [`caption`]: [`normalize_caption`], [`swap_left_right`], the structured content of captions.
//! - [`transform`]: resize, augmentation (seeded), CLIP normalisation.
//! - [`loader`]: [`load_sample`] and the parallel, prefetching batch [`loader()`].
//! - [`check`]: the `tgcnet data check` report.
//! - [`phantom`]: the procedural chest X-ray phantom dataset.
//!
//! Buffers are plain `Vec<f32>` in row-major NCHW order (shapes are documented on each field); see
//! [`Batch::images_tensor`] for burn tensors.

pub mod caption;
pub mod check;
pub mod codecs;
pub mod dataset;
pub mod dicom;
pub mod error;
pub mod imageio;
pub mod loader;
pub mod nifti;
pub mod phantom;
pub mod rng;
pub mod transform;
pub mod volume;

pub use caption::{
    CaptionMeta, Laterality, SideConvention, describe_zones, normalize_caption, swap_left_right,
};
pub use check::{CheckOptions, CheckReport, Issue, IssueKind, Severity, check, check_dataset};
pub use dataset::{Dataset, Format, Sample, SourceRef, canonical_split};
pub use error::{DataError, Result};
pub use imageio::{DecodeOptions, Plane, SliceRef, Window};
pub use loader::{
    BadSample, BadSamplePolicy, Batch, LoadedSample, Loader, LoaderConfig, SampleOptions,
    load_sample, load_sample_augmented, loader, model_input,
};
pub use phantom::{PhantomConfig, generate as generate_phantom};
pub use transform::{AugmentConfig, AugmentParams, Interpolation};
pub use volume::ScanVolume;
