//! End-to-end training checks of a tiny TGC-Net on synthetic data: it can overfit, and its text guidance is
//! real (same image, different caption, different mask).

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use tgcnet_model::{CaptionEncoder, TextBatch, TgcLoss, TgcNet, TgcNetConfig, dice_per_image};

const S: usize = 32;

/// Deterministic pseudo-random numbers (64-bit LCG), so the data do not depend on burn's global seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() * (hi - lo) as f64) as usize
    }
}

struct Sample {
    image: Vec<f32>,
    mask: Vec<f32>,
    caption: String,
}

/// A grey image with noise and bright squares; mask: the squares listed in `lesion`.
fn draw(
    squares: &[(usize, usize, usize)],
    lesion: &[usize],
    rng: &mut Lcg,
) -> (Vec<f32>, Vec<f32>) {
    let mut img = vec![0.0f32; S * S];
    let mut mask = vec![0.0f32; S * S];
    for v in img.iter_mut() {
        *v = 0.2 + 0.1 * rng.next() as f32;
    }
    for (k, &(r0, c0, size)) in squares.iter().enumerate() {
        for r in r0..r0 + size {
            for c in c0..c0 + size {
                img[r * S + c] = 0.9;
                if lesion.contains(&k) {
                    mask[r * S + c] = 1.0;
                }
            }
        }
    }
    (img, mask)
}

fn batch(
    samples: &[Sample],
    enc: &CaptionEncoder,
    dev: &Device,
) -> (Tensor<4>, Tensor<4>, TextBatch) {
    let b = samples.len();
    // Grey replicated to 3 channels, roughly CLIP-normalised.
    let img: Vec<f32> = samples
        .iter()
        .flat_map(|s| {
            let n: Vec<f32> = s.image.iter().map(|v| (v - 0.45) / 0.27).collect();
            [n.clone(), n.clone(), n].concat()
        })
        .collect();
    let mask: Vec<f32> = samples.iter().flat_map(|s| s.mask.clone()).collect();
    let captions: Vec<&str> = samples.iter().map(|s| s.caption.as_str()).collect();
    let text = enc.encode(&captions, dev).expect("captions");
    (
        Tensor::from_data(TensorData::new(img, [b, 3, S, S]), dev),
        Tensor::from_data(TensorData::new(mask, [b, 1, S, S]), dev),
        text,
    )
}

/// Trains full-batch with AdamW until the mean hard Dice reaches `target` or `steps` run out; returns the
/// best mean Dice seen and the steps taken.
fn train(
    cfg: &TgcNetConfig,
    samples: &[Sample],
    steps: usize,
    lr: f64,
    target: f64,
) -> (f64, usize) {
    let dev = Device::flex().autodiff();
    let enc = CaptionEncoder::new(cfg).expect("encoder");
    let mut model = TgcNet::new_with(cfg, &enc, &dev).expect("model");
    let (images, masks, text) = batch(samples, &enc, &dev);
    model.check_inputs(&images, &text).expect("inputs");
    let loss_fn = TgcLoss::new(&cfg.loss);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut best = 0.0f64;
    for step in 1..=steps {
        let out = model.forward(images.clone(), &text);
        let loss = loss_fn.forward(out.logits.clone(), &out.sim_maps, masks.clone());
        loss.check_finite().expect("finite loss");
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        model = optim.step(lr, model, grads);
        if step % 10 == 0 || step == steps {
            let eval = model.valid();
            let logits = eval
                .forward(images.clone().inner(), &text_inner(&text))
                .logits;
            let d = dice_per_image(logits, masks.clone().inner()).expect("dice");
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            best = best.max(mean);
            if mean >= target {
                return (mean, step);
            }
        }
    }
    (best, steps)
}

fn text_inner(t: &TextBatch) -> TextBatch {
    TextBatch {
        ids: t.ids.clone().inner(),
        knowledge: t.knowledge.clone(),
    }
}

#[test]
fn tiny_model_overfits_eight_samples() {
    let mut rng = Lcg(7);
    let samples: Vec<Sample> = (0..8)
        .map(|i| {
            let n = 1 + i % 2;
            let squares: Vec<(usize, usize, usize)> = (0..n)
                .map(|k| {
                    let size = rng.range(5, 9);
                    (rng.range(2, S - size - 2), rng.range(k * 16, k * 16 + 16 - size), size)
                })
                .collect();
            let lesion: Vec<usize> = (0..n).collect();
            let (image, mask) = draw(&squares, &lesion, &mut rng);
            let caption = if n == 1 {
                "Unilateral pulmonary infection, one infected area, upper left lung.".to_string()
            } else {
                "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.".to_string()
            };
            Sample { image, mask, caption }
        })
        .collect();
    let t = Instant::now();
    let (dice, steps) = train(&TgcNetConfig::tiny(), &samples, 400, 5e-3, 0.95);
    println!(
        "overfit: mean Dice {dice:.4} after {steps} steps ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    assert!(dice > 0.9, "overfit Dice {dice}");
}

/// Four images with one square on the left and one on the right (same size, so the same pixel count); each
/// image appears twice, captioned "left" (mask: left square) and "right" (mask: right square).
///
/// A model that ignores the text gives both copies the same prediction P. With a = the square's area and P
/// covering the left square and k·a of the right one (other pixels only hurt), the mean Dice of the two
/// copies is (2/(2+k) + 2k/(2+k))/2 = (1+k)/(2+k) ≤ 2/3 (k = 1: predict both squares). So 2/3 is the
/// text-blind bound.
fn left_right_samples() -> Vec<Sample> {
    let mut rng = Lcg(11);
    let mut out = Vec::new();
    for _ in 0..4 {
        let size = 6;
        let left = (
            rng.range(2, S - size - 2),
            rng.range(1, 16 - size - 1),
            size,
        );
        let right = (
            rng.range(2, S - size - 2),
            rng.range(17, S - size - 1),
            size,
        );
        let squares = [left, right];
        let noise_seed = rng.0;
        for (caption, lesion) in [
            ("lesion in the left lung", 0usize),
            ("lesion in the right lung", 1),
        ] {
            // Same noise for both copies: the images are identical.
            let (image, mask) = draw(&squares, &[lesion], &mut Lcg(noise_seed));
            out.push(Sample {
                image,
                mask,
                caption: caption.to_string(),
            });
        }
    }
    out
}

#[test]
fn text_guidance_is_real() {
    let samples = left_right_samples();
    let bound = 2.0 / 3.0;
    let t = Instant::now();
    let with_text = TgcNetConfig::tiny();
    let (on, steps_on) = train(&with_text, &samples, 400, 5e-3, 0.9);
    let mut blind = TgcNetConfig::tiny();
    blind.text = false;
    let (off, steps_off) = train(&blind, &samples, 200, 5e-3, 1.0);
    println!(
        "text conditioning: Dice with text {on:.4} ({steps_on} steps), without text {off:.4} ({steps_off} steps), text-blind bound {bound:.4} ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    assert!(on > 0.8, "with text: {on}");
    assert!(off <= bound + 0.02, "without text: {off} (bound {bound})");
}
