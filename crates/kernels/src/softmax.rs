//! Softmax over the last axis with its own backward, and scaled dot-product attention (Vaswani et al.,
//! 2017) built on it for training.
//!
//! burn-autodiff 0.22.1 differentiates softmax through its decomposition (max, subtract, exp, sum,
//! divide: five graph nodes, and the exp is evaluated again in the backward), and attention through
//! burn's fallback (matmul, scale, mask, a NaN-safe softmax of seven nodes, matmul). Here softmax is one
//! node: y = softmax(x) forward, dx = y·(g − Σ g·y) backward, from the kept output. A row whose entries
//! are all −∞ (every key masked) gives zeros, as burn's NaN-safe attention does.
//! Inference on burn-flex keeps flex's fused attention; other backends use burn's ops.

use burn::tensor::activation;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::{AdTensor, dense, f32s, tensor};

/// Elements per parallel task (whole rows).
const CHUNK: usize = 1 << 13;

/// Softmax over the last axis.
/// x: [..., N] → [..., N]
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() != DType::F32 {
        return activation::softmax(x, D - 1);
    }
    if let Ok(xa) = x.clone().try_into_primitive::<Autodiff<Flex>>() {
        let n = x.dims()[D - 1];
        return Tensor::from_primitive::<Autodiff<Flex>>(tracked(xa, n));
    }
    activation::softmax(x, D - 1)
}

/// Scaled dot-product attention, `softmax(q·kᵀ·scale, masked)·v`, as burn's `module::attention`.
/// q: [B, H, Nq, Dh], k: [B, H, Nk, Dh], v: [B, H, Nk, Dv], mask: [B, H, Nq, Nk] (true = hidden) →
/// [B, H, Nq, Dv]
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    options: AttentionModuleOptions,
) -> Tensor<4> {
    let training_flex = q.dtype() == DType::F32
        && q.clone().try_into_primitive::<Autodiff<Flex>>().is_ok()
        && options.softcap.is_none();
    if !training_flex {
        return burn_attention(q, k, v, mask, None, options);
    }
    let [b, h, nq, dh] = q.dims();
    let nk = k.dims()[2];
    let scale = options.scale.unwrap_or(1.0 / (dh as f64).sqrt());
    let mut scores = q.matmul(k.swap_dims(2, 3)) * scale;
    if options.is_causal {
        let dev = scores.device();
        let causal = Tensor::<2, Bool>::tril_mask([nq, nk], (nk as i64) - (nq as i64), &dev)
            .reshape([1, 1, nq, nk])
            .expand([b, h, nq, nk]);
        scores = scores.mask_fill(causal, f32::NEG_INFINITY);
    }
    if let Some(mask) = mask {
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    softmax(scores).matmul(v)
}

/// Softmax of each row of length `n`; rows that are all −∞ become zeros.
fn forward(x: &FlexTensor, n: usize) -> FlexTensor {
    let x = dense(x);
    let shape = x.layout().shape().to_vec();
    let len = shape.iter().product::<usize>();
    let xs = f32s(&x, len, "softmax input");
    let mut y = vec![0.0f32; len];
    let rows_per = (CHUNK / n.max(1)).max(1) * n.max(1);
    y.par_chunks_mut(rows_per)
        .zip(xs.par_chunks(rows_per))
        .for_each(|(y, x)| {
            for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if max == f32::NEG_INFINITY {
                    yr.fill(0.0);
                    continue;
                }
                let mut sum = 0.0f32;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                yr.iter_mut().for_each(|o| *o *= inv);
            }
        });
    tensor(y, &shape)
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = (FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, n) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let grad = dense(&grad);
            let shape = y.layout().shape().to_vec();
            let len = shape.iter().product::<usize>();
            let (ys, gs) = (
                f32s(&y, len, "softmax output"),
                f32s(&grad, len, "softmax gradient"),
            );
            let mut dx = vec![0.0f32; len];
            let rows_per = (CHUNK / n.max(1)).max(1) * n.max(1);
            dx.par_chunks_mut(rows_per)
                .zip(ys.par_chunks(rows_per).zip(gs.par_chunks(rows_per)))
                .for_each(|(dx, (y, g))| {
                    for ((dr, yr), gr) in dx.chunks_mut(n).zip(y.chunks(n)).zip(g.chunks(n)) {
                        let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                        for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                            *o = yv * (gv - dot);
                        }
                    }
                });
            tensor(dx, &shape)
        });
    }
}

fn tracked(x: AdTensor, n: usize) -> AdTensor {
    match SoftmaxBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.primitive(), n);
            prep.finish((y.clone(), n), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive(), n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn softmax_and_its_gradient_match_burn() {
        let dev = Device::flex().autodiff();
        // Rows of 700 (more than one task of whole rows) and a large offset (the max shift matters).
        let x = (Tensor::<3>::random([3, 7, 700], Distribution::Normal(0.0, 3.0), &dev) + 50.0)
            .require_grad();
        let w = Tensor::<3>::random([3, 7, 700], Distribution::Normal(0.0, 1.0), &dev);
        let fast = softmax(x.clone());
        let slow = activation::softmax(x.clone(), 2);
        assert!(max_diff(fast.clone(), slow.clone()) < 1e-6);
        let gf = x.grad(&(fast * w.clone()).sum().backward()).unwrap();
        let gs = x.grad(&(slow * w).sum().backward()).unwrap();
        let e = max_diff(gf, gs);
        assert!(e < 1e-5, "gradient differs by {e}");
    }

    #[test]
    fn attention_matches_burn_with_masks_causality_and_fully_masked_rows() {
        let dev = Device::flex().autodiff();
        let r = |s: [usize; 4]| {
            Tensor::<4>::random(s, Distribution::Normal(0.0, 1.0), &dev).require_grad()
        };
        let (q, k, v) = (r([2, 3, 5, 8]), r([2, 3, 6, 8]), r([2, 3, 6, 4]));
        let w = Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &dev);
        // Key 0 hidden everywhere; every key hidden for the second sample's first head, last query.
        let mut m = vec![false; 2 * 3 * 5 * 6];
        for (i, x) in m.iter_mut().enumerate() {
            let (key, query, head, sample) = (i % 6, i / 6 % 5, i / 30 % 3, i / 90);
            *x = key == 0 || (sample == 1 && head == 0 && query == 4);
        }
        let mask =
            Tensor::<4, Bool>::from_data(burn::tensor::TensorData::new(m, [2, 3, 5, 6]), &dev);
        for (mask, causal) in [(None, false), (Some(mask), false), (None, true)] {
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: causal,
            };
            let fast = attention(q.clone(), k.clone(), v.clone(), mask.clone(), options);
            let slow = burn_attention(q.clone(), k.clone(), v.clone(), mask, None, options);
            assert!(
                max_diff(fast.clone(), slow.clone()) < 1e-5,
                "causal {causal}"
            );
            let gf = (fast * w.clone()).sum().backward();
            let gs = (slow * w.clone()).sum().backward();
            for t in [&q, &k, &v] {
                let e = max_diff(t.grad(&gf).unwrap(), t.grad(&gs).unwrap());
                assert!(e < 1e-4, "gradient differs by {e} (causal {causal})");
            }
        }
    }
}
