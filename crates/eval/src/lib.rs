//! Segmentation metrics for TGC-Net (Lin et al., 2025, arXiv 2512.21135) and its peers.
//!
//! Two conventions exist in the text-guided segmentation literature and we report both:
//! *per-image* (mean over images of Dice(image); LViT, RecLMIS) and *global* (Dice over all pixels pooled;
//! GuideDecoder, MMI-UNet). Predictions are thresholded at 0.5 on the sigmoid, i.e. logit > 0.

pub mod hd95;
pub mod metrics;

pub use hd95::hd95;
pub use metrics::{Accumulator, CaptionGroup, Confusion, Summary};
