//! Training loss of TGC-Net (Lin et al., 2025, arXiv 2512.21135). The paper does not give it; ours (R)
//! follows its peers (LViT, GuideDecoder): `w_dice · Dice + w_bce · BCE` on the mask logits (0.5 / 0.5),
//! plus `λ · BCE(S_k, m_k)` for every VLCM similarity map S_k (λ = 0.1), the auxiliary alignment loss.
//!
//! - BCE with logits in the stable form `max(x, 0) − x·y + log(1 + exp(−|x|))`, mean over pixels.
//! - Dice is the soft Dice of σ(x) per image, `1 − (2Σpy + s)/(Σp + Σy + s)` with s = 1, mean over the
//!   batch; the smoothing makes an empty mask a valid target (loss → 0 as the prediction empties).
//! - The auxiliary target m_k is the mask average-pooled to S_k's grid, kept soft (the fraction of lesion
//!   pixels in each cell) (R): at 1/16 most lesion cells are partly covered, and a 0.5 threshold would erase
//!   small lesions from the target altogether.

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Weights of the loss terms (`[model.loss]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the soft Dice term.
    pub dice_weight: f64,
    /// Weight of the mask BCE term.
    pub bce_weight: f64,
    /// λ: weight of each similarity map's BCE.
    pub aux_weight: f64,
    /// Dice smoothing s.
    pub dice_smooth: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            dice_weight: 0.5,
            bce_weight: 0.5,
            aux_weight: 0.1,
            dice_smooth: 1.0,
        }
    }
}

/// The loss and its terms (each [1]); `total` is what to call `backward` on.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The weighted sum of all terms.
    pub total: Tensor<1>,
    /// Soft Dice loss of the mask (unweighted).
    pub dice: Tensor<1>,
    /// BCE of the mask (unweighted).
    pub bce: Tensor<1>,
    /// Unweighted BCE of each similarity map, in the model's VLCM order.
    pub aux: Vec<Tensor<1>>,
}

/// The terms read back to the host, for logging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossValues {
    /// The weighted sum of all terms.
    pub total: f64,
    /// Soft Dice loss of the mask (unweighted).
    pub dice: f64,
    /// BCE of the mask (unweighted).
    pub bce: f64,
    /// Unweighted BCE of each similarity map.
    pub aux: Vec<f64>,
}

impl LossValues {
    /// True when no term is NaN or infinite.
    pub fn is_finite(&self) -> bool {
        self.total.is_finite()
            && self.dice.is_finite()
            && self.bce.is_finite()
            && self.aux.iter().all(|a| a.is_finite())
    }
}

fn read(t: &Tensor<1>) -> Result<f64> {
    t.clone()
        .detach()
        .try_into_scalar::<f32>()
        .map(f64::from)
        .map_err(|e| ModelError::Read(format!("{e:?}")))
}

impl LossOutput {
    /// Reads the terms (this waits for the device).
    pub fn values(&self) -> Result<LossValues> {
        Ok(LossValues {
            total: read(&self.total)?,
            dice: read(&self.dice)?,
            bce: read(&self.bce)?,
            aux: self.aux.iter().map(read).collect::<Result<_>>()?,
        })
    }

    /// The terms, or [`ModelError::NonFiniteLoss`] when any is NaN or infinite.
    pub fn check_finite(&self) -> Result<LossValues> {
        let v = self.values()?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(ModelError::NonFiniteLoss {
                total: v.total,
                dice: v.dice,
                bce: v.bce,
                aux: v.aux,
            })
        }
    }
}

/// Mean binary cross-entropy of logits x against targets y ∈ [0, 1] (same shape).
pub fn bce_with_logits<const D: usize>(x: Tensor<D>, y: Tensor<D>) -> Tensor<1> {
    let softplus_neg_abs = x.clone().abs().neg().exp().log1p();
    (x.clone().clamp_min(0.0) - x * y + softplus_neg_abs).mean()
}

/// Mean over the batch of the per-image soft Dice loss. logits, mask: [B, 1, H, W].
pub fn soft_dice_loss(logits: Tensor<4>, mask: Tensor<4>, smooth: f64) -> Tensor<1> {
    let [b, _, _, _] = logits.dims();
    let p = sigmoid(logits).reshape([b as i32, -1]);
    let y = mask.reshape([b as i32, -1]);
    let inter = (p.clone() * y.clone()).sum_dim(1);
    let denom = p.sum_dim(1) + y.sum_dim(1);
    let dice = (inter * 2.0 + smooth) / (denom + smooth);
    (dice.neg() + 1.0).mean()
}

/// The auxiliary target: the mask's lesion fraction per cell of an h×w grid. mask: [B, 1, H, W].
pub fn aux_target(mask: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = mask.dims();
    if [h, w] == size {
        return mask;
    }
    adaptive_avg_pool2d(mask, size)
}

/// The TGC-Net loss with its weights.
#[derive(Debug, Clone)]
pub struct TgcLoss {
    /// The weights.
    pub cfg: LossConfig,
}

impl TgcLoss {
    /// The loss with `cfg`'s weights.
    pub fn new(cfg: &LossConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// logits: [B, 1, S, S]; sim_maps: [B, 1, h_k, w_k] each (may be empty); mask: [B, 1, S, S] in {0, 1}.
    pub fn forward(
        &self,
        logits: Tensor<4>,
        sim_maps: &[Tensor<4>],
        mask: Tensor<4>,
    ) -> LossOutput {
        let dice = soft_dice_loss(logits.clone(), mask.clone(), self.cfg.dice_smooth);
        let bce = bce_with_logits(logits, mask.clone());
        let aux: Vec<Tensor<1>> = sim_maps
            .iter()
            .map(|s| {
                let [_, _, h, w] = s.dims();
                bce_with_logits(s.clone(), aux_target(mask.clone(), [h, w]).detach())
            })
            .collect();
        let mut total = dice.clone() * self.cfg.dice_weight + bce.clone() * self.cfg.bce_weight;
        for a in &aux {
            total = total + a.clone() * self.cfg.aux_weight;
        }
        LossOutput {
            total,
            dice,
            bce,
            aux,
        }
    }
}

/// Hard Dice per image at σ(x) > 0.5 (logit > 0). An image whose mask and prediction are both empty
/// scores 1. logits, mask: [B, 1, H, W].
pub fn dice_per_image(logits: Tensor<4>, mask: Tensor<4>) -> Result<Vec<f64>> {
    let [b, _, _, _] = logits.dims();
    let p = logits.greater_elem(0.0).float().reshape([b as i32, -1]);
    let y = mask.greater_elem(0.5).float().reshape([b as i32, -1]);
    let inter = (p.clone() * y.clone()).sum_dim(1).reshape([b]);
    let denom = (p.sum_dim(1) + y.sum_dim(1)).reshape([b]);
    let rd = |t: Tensor<1>| {
        t.detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Read(format!("{e:?}")))
    };
    let (inter, denom) = (rd(inter)?, rd(denom)?);
    Ok(inter
        .iter()
        .zip(&denom)
        .map(|(&i, &d)| {
            if d == 0.0 {
                1.0
            } else {
                2.0 * f64::from(i) / f64::from(d)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand, values};
    use burn::tensor::{Device, TensorData};

    #[test]
    fn stable_bce_matches_the_definition_and_survives_large_logits() {
        let dev = Device::flex();
        let x = Tensor::<1>::from_data(
            TensorData::new(vec![-3.0f32, 0.0, 2.5, 80.0, -80.0], [5]),
            &dev,
        );
        let y =
            Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0, 0.3, 1.0, 0.0], [5]), &dev);
        let got = values(bce_with_logits(x, y))[0] as f64;
        let xs = [-3.0f64, 0.0, 2.5, 80.0, -80.0];
        let ys = [0.0f64, 1.0, 0.3, 1.0, 0.0];
        let want: f64 = xs
            .iter()
            .zip(ys)
            .map(|(&x, y)| {
                let p = 1.0 / (1.0 + (-x).exp());
                let p = p.clamp(1e-300, 1.0 - 1e-16);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum::<f64>()
            / 5.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn loss_terms_weights_and_finite_check() {
        let dev = Device::flex();
        let loss = TgcLoss::new(&LossConfig::default());
        let logits = rand([2, 1, 8, 8], &dev);
        let mask = rand([2, 1, 8, 8], &dev).greater_elem(0.5).float();
        let sims = vec![rand([2, 1, 2, 2], &dev), rand([2, 1, 4, 4], &dev)];
        let out = loss.forward(logits, &sims, mask);
        let v = out.check_finite().expect("finite");
        let want = 0.5 * v.dice + 0.5 * v.bce + 0.1 * (v.aux[0] + v.aux[1]);
        assert!((v.total - want).abs() < 1e-5);
        let bad = LossOutput {
            total: out.total.clone() * f32::NAN,
            ..out
        };
        let e = bad.check_finite().expect_err("NaN");
        assert!(e.to_string().contains("non-finite"), "{e}");
    }

    #[test]
    fn aux_target_is_the_lesion_fraction() {
        let dev = Device::flex();
        let mut m = vec![0.0f32; 16];
        for i in [0, 1, 4] {
            m[i] = 1.0;
        }
        let mask = Tensor::<4>::from_data(TensorData::new(m, [1, 1, 4, 4]), &dev);
        assert_eq!(values(aux_target(mask, [2, 2])), vec![0.75, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn finite_difference_loss() {
        let dev = Device::flex().autodiff();
        let loss = TgcLoss::new(&LossConfig::default());
        let mask = rand([2, 1, 8, 8], &dev).greater_elem(0.3).float();
        let s16 = rand([2, 1, 2, 2], &dev);
        let f = |x: Tensor<4>| {
            loss.forward(x, std::slice::from_ref(&s16), mask.clone())
                .total
        };
        check_grad("loss (logits)", &f, rand([2, 1, 8, 8], &dev), 1e-2);
        let logits = rand([2, 1, 8, 8], &dev);
        let g = |s: Tensor<4>| loss.forward(logits.clone(), &[s], mask.clone()).total;
        check_grad("loss (similarity map)", &g, s16.clone(), 1e-2);
    }

    #[test]
    fn hard_dice() {
        let dev = Device::flex();
        let logits = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0],
                [2, 1, 2, 2],
            ),
            &dev,
        );
        let mask = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                [2, 1, 2, 2],
            ),
            &dev,
        );
        let d = dice_per_image(logits, mask).expect("dice");
        assert!((d[0] - 2.0 / 3.0).abs() < 1e-9 && d[1] == 1.0, "{d:?}");
    }
}
