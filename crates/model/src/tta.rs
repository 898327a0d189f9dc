//! Test-time augmentation (R; TGC-Net does not describe its inference beyond one forward pass): the
//! mask logits averaged over several views of the picture. A model trained with progressive resizing
//! has seen its pictures at more than one side, so a view at another side is in its training
//! distribution, and the mean of the views' logits is a cheap ensemble. A mirrored view (its caption's
//! sides swapped) is in distribution only for a model trained with mirrored pictures
//! (`augmentation.hflip_prob`); for others a mirrored chest (heart on the right) is new, so it is
//! measured before it is used (docs/RESULTS.md).

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};
use tgcnet_data::swap_left_right;

use crate::error::{ModelError, Result};
use crate::text::{CaptionEncoder, TextBatch};
use crate::tgcnet::{TgcNet, TgcNetOutput};

/// Which views [`TgcNet::forward_tta`] averages (`[model.tta]`, `infer --tta`, `eval --tta`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtaConfig {
    /// Input sides besides the model's own; each view is the batch resized (bilinear) to that side,
    /// its logits resized back. Empty: one view at the model's side.
    pub sides: Vec<usize>,
    /// Also the mirrored picture with "left" and "right" swapped in its caption (the caller provides
    /// that text), its logits mirrored back.
    pub hflip: bool,
}

impl TtaConfig {
    /// True when there is more than one view.
    pub fn is_active(&self) -> bool {
        !self.sides.is_empty() || self.hflip
    }

    /// True for the single plain view (what configs leave out).
    pub fn is_off(&self) -> bool {
        !self.is_active()
    }

    /// Every side must be a positive multiple of 16 and of `patch` (what the model accepts).
    pub fn validate(&self, patch: usize) -> Result<()> {
        match self
            .sides
            .iter()
            .find(|&&s| s == 0 || !s.is_multiple_of(16) || !s.is_multiple_of(patch.max(1)))
        {
            Some(s) => Err(ModelError::Config(format!(
                "test-time side {s} is not a positive multiple of 16 and of the patch size {patch}"
            ))),
            None => Ok(()),
        }
    }

    /// Parses `"160,256"` (sides) with an optional `flip` item: `"flip,160"`. `"none"` or `""`: no views.
    pub fn parse(s: &str) -> Result<Self> {
        let mut cfg = TtaConfig::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "none" => {}
                "flip" | "hflip" => cfg.hflip = true,
                _ => cfg.sides.push(item.parse().map_err(|_| {
                    ModelError::Config(format!(
                        "test-time view `{item}`: expected a side in pixels, `flip` or `none`"
                    ))
                })?),
            }
        }
        Ok(cfg)
    }
}

impl std::fmt::Display for TtaConfig {
    /// `model side + 160 px + mirrored`, as eval.md reports the views.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model side")?;
        for s in &self.sides {
            write!(f, " + {s} px")?;
        }
        if self.hflip {
            write!(f, " + mirrored")?;
        }
        Ok(())
    }
}

/// x: [B, C, H, W] bilinearly resized (half-pixel centres) to `hw`.
fn resize(x: Tensor<4>, hw: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == hw {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(hw),
    )
}

impl CaptionEncoder {
    /// The captions with "left" and "right" swapped, encoded, when `tta` has the mirrored view (what
    /// [`TgcNet::forward_tta`] takes as `flipped`); `None` otherwise.
    pub fn encode_mirrored(
        &self,
        captions: &[&str],
        tta: &TtaConfig,
        device: &burn::tensor::Device,
    ) -> Result<Option<TextBatch>> {
        if !tta.hflip {
            return Ok(None);
        }
        let swapped: Vec<String> = captions.iter().map(|c| swap_left_right(c)).collect();
        let refs: Vec<&str> = swapped.iter().map(String::as_str).collect();
        self.encode(&refs, device).map(Some)
    }
}

impl TgcNet {
    /// The model's output with its mask logits [B, 1, S, S] averaged over `tta`'s views (the
    /// similarity maps are the model-side view's). images: [B, 3, S, S] as for [`TgcNet::forward`];
    /// `flipped`: the captions with sides swapped, read only when `tta.hflip` (without it the mirrored
    /// view is left out).
    pub fn forward_tta(
        &self,
        images: Tensor<4>,
        text: &TextBatch,
        flipped: Option<&TextBatch>,
        tta: &TtaConfig,
    ) -> TgcNetOutput {
        let [_, _, h, w] = images.dims();
        let mut out = self.forward(images.clone(), text);
        let mut views = 1usize;
        for &side in &tta.sides {
            let logits = self
                .forward(resize(images.clone(), [side, side]), text)
                .logits;
            out.logits = out.logits + resize(logits, [h, w]);
            views += 1;
        }
        if let (true, Some(flipped)) = (tta.hflip, flipped) {
            let mirrored = self.forward(images.flip([3]), flipped).logits;
            out.logits = out.logits + mirrored.flip([3]);
            views += 1;
        }
        if views > 1 {
            out.logits = out.logits / views as f64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TgcNetConfig;
    use crate::testutil::rand;
    use burn::tensor::Device;

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn setup() -> (TgcNet, TextBatch, Device) {
        let dev = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let enc = CaptionEncoder::new(&cfg).expect("encoder");
        let model = TgcNet::new_with(&cfg, &enc, &dev).expect("model");
        let text = enc
            .encode(&["left lung infected", "bilateral infection"], &dev)
            .expect("text");
        (model, text, dev)
    }

    /// No views is the plain forward pass; a view at the model's own side is that pass again, so the
    /// mean changes nothing; a view at another side does change it.
    #[test]
    fn views_average_the_forward_passes() {
        let (model, text, dev) = setup();
        let images = rand([2, 3, 32, 32], &dev);
        let plain = model.forward(images.clone(), &text).logits;
        let none = model
            .forward_tta(images.clone(), &text, None, &TtaConfig::default())
            .logits;
        assert!(max_diff(plain.clone(), none) == 0.0);
        let same = TtaConfig {
            sides: vec![32],
            hflip: false,
        };
        let twice = model.forward_tta(images.clone(), &text, None, &same).logits;
        assert!(max_diff(plain.clone(), twice) < 1e-5);
        let other = TtaConfig {
            sides: vec![48],
            hflip: false,
        };
        let scaled = model
            .forward_tta(images.clone(), &text, None, &other)
            .logits;
        assert_eq!(scaled.dims(), [2, 1, 32, 32]);
        let at48 = model.forward(resize(images, [48, 48]), &text).logits;
        let expected = (plain + resize(at48, [32, 32])) / 2.0;
        assert!(max_diff(scaled, expected) < 1e-5);
    }

    /// With the mirrored view (and the same text for both, so that only the picture is mirrored), the
    /// result is mirror-symmetric: segmenting the mirrored picture gives the mirrored mask.
    #[test]
    fn the_mirrored_view_makes_the_result_mirror_equivariant() {
        let (model, text, dev) = setup();
        let images = rand([2, 3, 32, 32], &dev);
        let flip = TtaConfig {
            sides: Vec::new(),
            hflip: true,
        };
        let a = model
            .forward_tta(images.clone(), &text, Some(&text), &flip)
            .logits;
        let b = model
            .forward_tta(images.clone().flip([3]), &text, Some(&text), &flip)
            .logits;
        assert!(max_diff(a.clone(), b.flip([3])) < 1e-5);
        let plain = model.forward(images, &text).logits;
        assert!(max_diff(a, plain) > 1e-4, "the mirrored view must count");
    }

    #[test]
    fn parses_sides_and_flip() {
        let t = TtaConfig::parse("160, flip,256").unwrap();
        assert_eq!(t.sides, vec![160, 256]);
        assert!(t.hflip && t.is_active());
        assert!(!TtaConfig::parse("none").unwrap().is_active());
        assert!(TtaConfig::parse("16x").is_err());
        assert!(t.validate(16).is_ok());
        assert!(TtaConfig::parse("100").unwrap().validate(16).is_err());
    }
}
