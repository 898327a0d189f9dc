//! Softmax over the last axis with its own backward (attention has its own kernel, `attention.rs`).
//!
//! burn-autodiff 0.22.1 differentiates softmax through its decomposition (max, subtract, exp, sum,
//! divide: five graph nodes, and the exp is evaluated again in the backward). Here softmax is one node:
//! y = softmax(x) forward, dx = y·(g − Σ g·y) backward, from the kept output. A row whose entries are all
//! −∞ gives zeros. The exponential is the vectorised one of `simd.rs`.

use burn::tensor::activation;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::simd::{dispatch, exp};
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

/// Softmax of one row in place; a row of −∞ becomes zeros. Sixteen lanes of max and sum, so that the
/// loops vectorise (a single float accumulator cannot be reordered by the compiler).
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for l in 0..L {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sums = [0.0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for l in 0..L {
            c[l] = exp(c[l] - max);
            sums[l] += c[l];
        }
    }
    let mut sum = sums.iter().sum::<f32>();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
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
            dispatch(
                #[inline(always)]
                || {
                    for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
                        yr.copy_from_slice(xr);
                        softmax_row(yr);
                    }
                },
            )
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
}
