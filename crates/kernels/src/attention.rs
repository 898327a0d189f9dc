//! Scaled dot-product attention (Vaswani et al., 2017) on burn-flex as one op with its own backward, for
//! the CLIP towers and the DATE / VLCM cross-attention of TGC-Net (Lin et al., 2025, arXiv 2512.21135).
//!
//! Why: the model splits heads as `x.reshape([B, N, H, Dh]).swap_dims(1, 2)`, a strided view.
//! burn-flex's attention first copies q, k and v to contiguous buffers, runs one task per (batch, head)
//! (3 tasks on 2 cores for the small ViT at batch 1), evaluates the softmax with libm's `expf`, and
//! returns [B, H, N, Dv], which the caller's `swap_dims(1, 2).reshape(..)` copies once more. Under
//! autodiff burn has no attention backward of its own and differentiates matmul, mask and a
//! seven-node softmax. Here:
//! - q, k, v are read in place through their strides (gemm takes any row and column stride);
//! - the work is split over (batch, head, block of queries);
//! - the softmax uses the vectorised [`exp`](crate::simd::exp), compiled for AVX-512 / AVX2 at run time;
//! - the output (and the gradients of q, k, v) are written in [B, N, H, D] order and returned as a
//!   [B, H, N, D] view of it, so the caller's `swap_dims(1, 2)` is contiguous and its reshape is free;
//! - under autodiff it is one graph node that keeps the probabilities P and computes
//!   dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale, dQ = dS·K, dK = dSᵀ·Q.
//!
//! A query row whose keys are all masked gets a zero output (and zero gradients), as burn's NaN-safe
//! fallback does. Other backends, dtypes, and `softcap` go to `burn::tensor::module::attention`.

use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor, Layout};
use rayon::prelude::*;

use crate::simd::dispatch;
use crate::softmax::softmax_row;
use crate::{Mat, SharedMut, View4, gemm_acc, nonneg};

/// Scaled dot-product attention, `softmax(q·kᵀ·scale, masked)·v`, as `burn::tensor::module::attention`.
/// q: [B, H, Nq, Dh], k: [B, H, Nk, Dh], v: [B, H, Nk, Dv], mask: [B, H, Nq, Nk] (true = hidden) →
/// [B, H, Nq, Dv]
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    options: AttentionModuleOptions,
) -> Tensor<4> {
    let all_f32 = [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
    let shape = match Shape::of(&q, &k, &v) {
        Some(s) if all_f32 && options.softcap.is_none() && s.nonempty() => s,
        _ => return burn_attention(q, k, v, mask, None, options),
    };
    let params = Params {
        shape,
        scale: options.scale.unwrap_or(1.0 / (shape.dh as f64).sqrt()) as f32,
        causal: options.is_causal,
    };
    if q.clone().try_into_primitive::<Autodiff<Flex>>().is_ok() {
        let prims = (
            q.clone().try_into_primitive::<Autodiff<Flex>>(),
            k.clone().try_into_primitive::<Autodiff<Flex>>(),
            v.clone().try_into_primitive::<Autodiff<Flex>>(),
        );
        let m = mask.clone().map(mask_primitive);
        if let ((Ok(qa), Ok(ka), Ok(va)), None | Some(Some(_))) = (prims, &m) {
            let m = m.flatten();
            return Tensor::from_primitive::<Autodiff<Flex>>(tracked(qa, ka, va, m, params));
        }
    } else if q.clone().try_into_primitive::<Flex>().is_ok() {
        let prims = (
            q.clone().try_into_primitive::<Flex>(),
            k.clone().try_into_primitive::<Flex>(),
            v.clone().try_into_primitive::<Flex>(),
        );
        let m = mask.clone().map(mask_primitive);
        if let ((Ok(qf), Ok(kf), Ok(vf)), None | Some(Some(_))) = (prims, &m) {
            let (out, _) = forward(&qf, &kf, &vf, m.flatten().as_ref(), &params, false);
            return Tensor::from_primitive::<Flex>(out);
        }
    }
    burn_attention(q, k, v, mask, None, options)
}

/// The mask's flex tensor, on the plain or the autodiff device (masks carry no gradient).
fn mask_primitive(mask: Tensor<4, Bool>) -> Option<FlexTensor> {
    mask.clone()
        .try_into_primitive::<Flex>()
        .ok()
        .or_else(|| mask.try_into_primitive::<Autodiff<Flex>>().ok())
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    b: usize,
    h: usize,
    nq: usize,
    nk: usize,
    dh: usize,
    dv: usize,
}

impl Shape {
    fn of(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> Option<Self> {
        let ([b, h, nq, dh], [kb, kh, nk, kd], [vb, vh, vn, dv]) = (q.dims(), k.dims(), v.dims());
        let same = kb == b && vb == b && kh == h && vh == h && kd == dh && vn == nk;
        same.then_some(Self {
            b,
            h,
            nq,
            nk,
            dh,
            dv,
        })
    }

    fn nonempty(&self) -> bool {
        [self.b, self.h, self.nq, self.nk, self.dh, self.dv]
            .iter()
            .all(|&n| n > 0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    shape: Shape,
    scale: f32,
    causal: bool,
}

impl<T> View4<'_, T> {
    /// The rows i of head (b, h) as a matrix operand [N × D] (`transposed`: [D × N]).
    fn mat(&self, b: usize, h: usize, transposed: bool) -> Mat
    where
        T: Copy,
    {
        // SAFETY of later reads: `new` checked that every (b, h, i, d) index lies inside `data`.
        let p = self.data[self.at(b, h, 0)..].as_ptr() as *const f32;
        let (rs, cs) = (self.strides[2] as isize, self.strides[3] as isize);
        if transposed {
            Mat(p, rs, cs)
        } else {
            Mat(p, cs, rs)
        }
    }
}

/// A [B, H, N, D] tensor over a buffer in [B, N, H, D] order.
fn heads_view(data: Vec<f32>, b: usize, h: usize, n: usize, d: usize) -> FlexTensor {
    let layout = Layout::new(
        burn_std::Shape::from(vec![b, h, n, d]),
        vec![(n * h * d) as isize, d as isize, (h * d) as isize, 1],
        0,
    );
    FlexTensor::new(burn_std::Bytes::from_elems(data), layout, DType::F32)
}

/// Number of query rows per forward task: about four tasks per thread, at least 8 rows each.
fn query_block(s: &Shape) -> usize {
    let want = 4 * rayon::current_num_threads();
    let per_head = want.div_ceil(s.b * s.h).max(1);
    s.nq.div_ceil(per_head).max(8).min(s.nq)
}

/// The attention output as a [B, H, Nq, Dv] view of a [B, Nq, H, Dv] buffer, and (with `keep`) the
/// probabilities [B, H, Nq, Nk].
fn forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    mask: Option<&FlexTensor>,
    p: &Params,
    keep: bool,
) -> (FlexTensor, Option<Vec<f32>>) {
    let s = p.shape;
    let (q, k, v) = (nonneg(q), nonneg(k), nonneg(v));
    let mask = mask.map(nonneg);
    let (qv, kv, vv) = (
        View4::new(&q, q.storage::<f32>(), "query"),
        View4::new(&k, k.storage::<f32>(), "key"),
        View4::new(&v, v.storage::<f32>(), "value"),
    );
    let mv = mask
        .as_ref()
        .map(|m| View4::new(m, m.storage::<u8>(), "mask"));
    let mut out = vec![0.0f32; s.b * s.nq * s.h * s.dv];
    let mut probs = keep.then(|| vec![0.0f32; s.b * s.h * s.nq * s.nk]);
    let blk = query_block(&s);
    let tasks: Vec<(usize, usize, usize)> = (0..s.b * s.h)
        .flat_map(|bh| {
            (0..s.nq)
                .step_by(blk)
                .map(move |i0| (bh / s.h, bh % s.h, i0))
        })
        .collect();
    let o_ptr = SharedMut(out.as_mut_ptr());
    let p_ptr = probs.as_mut().map(|v| SharedMut(v.as_mut_ptr()));
    let causal_shift = s.nk as isize - s.nq as isize;
    tasks.into_par_iter().for_each_init(
        || {
            if keep {
                Vec::new()
            } else {
                vec![0.0f32; blk * s.nk]
            }
        },
        |scratch, (b, h, i0)| {
            let m = blk.min(s.nq - i0);
            let scores: &mut [f32] = match p_ptr {
                // SAFETY: rows i0..i0+m of head (b, h) of the [B, H, Nq, Nk] buffer belong to this
                // task alone.
                Some(pp) => unsafe {
                    std::slice::from_raw_parts_mut(
                        pp.ptr().add(((b * s.h + h) * s.nq + i0) * s.nk),
                        m * s.nk,
                    )
                },
                None => &mut scratch[..m * s.nk],
            };
            let qm = qv.mat(b, h, false);
            let qm = Mat(
                // SAFETY: row i0 < Nq of head (b, h) is inside q (View::new checked the extent).
                unsafe { qm.0.add(i0 * qv.strides[2]) },
                qm.1,
                qm.2,
            );
            // SAFETY: dst is `scores` [m × Nk]; lhs reads q rows i0..i0+m, rhs kᵀ [Dh × Nk], both inside
            // their buffers (View::new).
            unsafe {
                gemm_acc(
                    m,
                    s.nk,
                    s.dh,
                    scores.as_mut_ptr(),
                    s.nk,
                    false,
                    qm,
                    kv.mat(b, h, true),
                    p.scale,
                    false,
                );
            }
            dispatch(
                #[inline(always)]
                || {
                    for (r, row) in scores.chunks_mut(s.nk).enumerate() {
                        let i = i0 + r;
                        if let Some(mv) = &mv {
                            let base = mv.at(b, h, i);
                            let js = mv.strides[3];
                            for (j, x) in row.iter_mut().enumerate() {
                                if mv.data[base + j * js] != 0 {
                                    *x = f32::NEG_INFINITY;
                                }
                            }
                        }
                        if p.causal {
                            let first_hidden =
                                (i as isize + causal_shift + 1).clamp(0, s.nk as isize);
                            row[first_hidden as usize..].fill(f32::NEG_INFINITY);
                        }
                        softmax_row(row);
                    }
                },
            );
            // SAFETY: dst rows (b, i0..i0+m, h, ·) of the [B, Nq, H, Dv] output belong to this task
            // (row stride H·Dv, Dv columns); lhs is `scores`, rhs v [Nk × Dv] inside its buffer.
            unsafe {
                gemm_acc(
                    m,
                    s.dv,
                    s.nk,
                    o_ptr.ptr().add(((b * s.nq + i0) * s.h + h) * s.dv),
                    s.h * s.dv,
                    false,
                    Mat(scores.as_ptr(), 1, s.nk as isize),
                    vv.mat(b, h, false),
                    1.0,
                    false,
                );
            }
        },
    );
    (heads_view(out, s.b, s.h, s.nq, s.dv), probs)
}

#[derive(Debug)]
struct AttentionBackward;

/// What the backward pass needs: q, k, v as given (views), the probabilities [B, H, Nq, Nk].
type State = (FlexTensor, FlexTensor, FlexTensor, Vec<f32>, Params);

impl Backward<Flex, 3> for AttentionBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (q, k, v, probs, p) = ops.state;
        let [dq, dk, dv] = backward(
            &q,
            &k,
            &v,
            &probs,
            &grad,
            &p,
            [node_q.is_some(), node_k.is_some(), node_v.is_some()],
        );
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// dq, dk, dv (each only when `want`), as [B, H, N, D] views of [B, N, H, D] buffers.
fn backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    probs: &[f32],
    grad: &FlexTensor,
    p: &Params,
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let s = p.shape;
    let (q, k, v, g) = (nonneg(q), nonneg(k), nonneg(v), nonneg(grad));
    let (qv, kv, vv, gv) = (
        View4::new(&q, q.storage::<f32>(), "query"),
        View4::new(&k, k.storage::<f32>(), "key"),
        View4::new(&v, v.storage::<f32>(), "value"),
        View4::new(&g, g.storage::<f32>(), "output gradient"),
    );
    assert_eq!(probs.len(), s.b * s.h * s.nq * s.nk);
    let [want_q, want_k, want_v] = want;
    let mut dq = vec![0.0f32; if want_q { s.b * s.nq * s.h * s.dh } else { 0 }];
    let mut dk = vec![0.0f32; if want_k { s.b * s.nk * s.h * s.dh } else { 0 }];
    let mut dvb = vec![0.0f32; if want_v { s.b * s.nk * s.h * s.dv } else { 0 }];
    let (dq_p, dk_p, dv_p) = (
        SharedMut(dq.as_mut_ptr()),
        SharedMut(dk.as_mut_ptr()),
        SharedMut(dvb.as_mut_ptr()),
    );
    let heads = s.b * s.h;
    // Enough heads: one task each, single-threaded products; else heads in turn, threaded products.
    let split = heads >= 2 * rayon::current_num_threads();
    let run = |ds: &mut Vec<f32>, bh: usize| {
        let (b, h) = (bh / s.h, bh % s.h);
        let pr = &probs[bh * s.nq * s.nk..(bh + 1) * s.nq * s.nk];
        let threads = !split;
        if want_v {
            // SAFETY: dst rows (b, ·, h, ·) of dv [B, Nk, H, Dv] belong to head (b, h) alone; lhs Pᵀ
            // [Nk × Nq] reads `pr`, rhs dO [Nq × Dv] is inside its buffer.
            unsafe {
                gemm_acc(
                    s.nk,
                    s.dv,
                    s.nq,
                    dv_p.ptr().add((b * s.nk * s.h + h) * s.dv),
                    s.h * s.dv,
                    false,
                    Mat(pr.as_ptr(), s.nk as isize, 1),
                    gv.mat(b, h, false),
                    1.0,
                    threads,
                );
            }
        }
        if !(want_q || want_k) {
            return;
        }
        ds.resize(s.nq * s.nk, 0.0);
        // SAFETY: dst is `ds` [Nq × Nk]; lhs dO [Nq × Dv] and rhs vᵀ [Dv × Nk] inside their buffers.
        unsafe {
            gemm_acc(
                s.nq,
                s.nk,
                s.dv,
                ds.as_mut_ptr(),
                s.nk,
                false,
                gv.mat(b, h, false),
                vv.mat(b, h, true),
                1.0,
                threads,
            );
        }
        dispatch(
            #[inline(always)]
            || {
                for (d, pr) in ds.chunks_mut(s.nk).zip(pr.chunks(s.nk)) {
                    let dot: f32 = d.iter().zip(pr).map(|(a, b)| a * b).sum();
                    for (x, &y) in d.iter_mut().zip(pr) {
                        *x = y * (*x - dot) * p.scale;
                    }
                }
            },
        );
        if want_q {
            // SAFETY: dst rows (b, ·, h, ·) of dq [B, Nq, H, Dh] belong to this head; lhs dS [Nq × Nk],
            // rhs k [Nk × Dh] inside its buffer.
            unsafe {
                gemm_acc(
                    s.nq,
                    s.dh,
                    s.nk,
                    dq_p.ptr().add((b * s.nq * s.h + h) * s.dh),
                    s.h * s.dh,
                    false,
                    Mat(ds.as_ptr(), 1, s.nk as isize),
                    kv.mat(b, h, false),
                    1.0,
                    threads,
                );
            }
        }
        if want_k {
            // SAFETY: dst rows (b, ·, h, ·) of dk [B, Nk, H, Dh] belong to this head; lhs dSᵀ [Nk × Nq],
            // rhs q [Nq × Dh] inside its buffer.
            unsafe {
                gemm_acc(
                    s.nk,
                    s.dh,
                    s.nq,
                    dk_p.ptr().add((b * s.nk * s.h + h) * s.dh),
                    s.h * s.dh,
                    false,
                    Mat(ds.as_ptr(), s.nk as isize, 1),
                    qv.mat(b, h, false),
                    1.0,
                    threads,
                );
            }
        }
    };
    if split {
        (0..heads)
            .into_par_iter()
            .for_each_init(Vec::new, |ds, bh| run(ds, bh));
    } else {
        let mut ds = Vec::new();
        (0..heads).for_each(|bh| run(&mut ds, bh));
    }
    [
        want_q.then(|| heads_view(dq, s.b, s.h, s.nq, s.dh)),
        want_k.then(|| heads_view(dk, s.b, s.h, s.nk, s.dh)),
        want_v.then(|| heads_view(dvb, s.b, s.h, s.nk, s.dv)),
    ]
}

fn tracked(
    q: <Autodiff<Flex> as burn_backend::BackendTypes>::FloatTensorPrimitive,
    k: <Autodiff<Flex> as burn_backend::BackendTypes>::FloatTensorPrimitive,
    v: <Autodiff<Flex> as burn_backend::BackendTypes>::FloatTensorPrimitive,
    mask: Option<FlexTensor>,
    p: Params,
) -> crate::AdTensor {
    match AttentionBackward
        .prepare::<NoCheckpointing>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (qp, kp, vp) = (q.primitive(), k.primitive(), v.primitive());
            let (out, probs) = forward(qp, kp, vp, mask.as_ref(), &p, true);
            let probs = probs.unwrap_or_default();
            prep.finish((qp.clone(), kp.clone(), vp.clone(), probs, p), out)
        }
        OpsKind::UnTracked(prep) => {
            let (qp, kp, vp) = (q.primitive(), k.primitive(), v.primitive());
            prep.finish(forward(qp, kp, vp, mask.as_ref(), &p, false).0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// q, k, v as the model makes them: [B, N, H·D] split into heads by reshape + swap_dims (views).
    fn heads(x: Tensor<3>, h: usize) -> Tensor<4> {
        let [b, n, d] = x.dims();
        x.reshape([b, n, h, d / h]).swap_dims(1, 2)
    }

    fn masks(dev: &Device) -> Tensor<4, Bool> {
        // Key 0 hidden everywhere; every key hidden for the second sample's first head, last query.
        let mut m = vec![false; 2 * 3 * 5 * 6];
        for (i, x) in m.iter_mut().enumerate() {
            let (key, query, head, sample) = (i % 6, i / 6 % 5, i / 30 % 3, i / 90);
            *x = key == 0 || (sample == 1 && head == 0 && query == 4);
        }
        Tensor::<4, Bool>::from_data(TensorData::new(m, [2, 3, 5, 6]), dev)
    }

    fn options(causal: bool) -> AttentionModuleOptions {
        AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        }
    }

    #[test]
    fn inference_matches_burn_with_masks_causality_and_strided_heads() {
        let dev = Device::flex();
        let r = |n: usize, d: usize| {
            Tensor::<3>::random([2, n, d], Distribution::Normal(0.0, 1.0), &dev)
        };
        let (q, k, v) = (heads(r(5, 24), 3), heads(r(6, 24), 3), heads(r(6, 12), 3));
        // An expanded (zero-stride) mask, as the cross-attention builds it from [B, Nk].
        let ignore = [true, false, false, true, false, false]
            .into_iter()
            .chain([false, false, false, false, false, true])
            .collect::<Vec<_>>();
        let ignore = Tensor::<2, Bool>::from_data(TensorData::new(ignore, [2, 6]), &dev);
        let expanded = ignore.reshape([2, 1, 1, 6]).expand([2, 3, 5, 6]);
        for (mask, causal) in [
            (None, false),
            (Some(masks(&dev)), false),
            (Some(expanded), false),
            (None, true),
        ] {
            let fast = attention(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                options(causal),
            );
            let slow = burn_attention(q.clone(), k.clone(), v.clone(), mask, None, options(causal));
            let e = max_diff(fast.clone(), slow);
            assert!(e < 1e-5, "differs by {e} (causal {causal})");
            // The caller's merge of the heads is contiguous.
            let merged = fast.swap_dims(1, 2);
            let prim = merged.try_into_primitive::<Flex>().ok();
            assert!(prim.is_some_and(|p| p.is_contiguous()));
        }
    }

    #[test]
    fn gradients_match_burn_with_masks_causality_and_fully_masked_rows() {
        let dev = Device::flex().autodiff();
        let r = |n: usize, d: usize| {
            Tensor::<3>::random([2, n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad()
        };
        let (xq, xk, xv) = (r(5, 24), r(6, 24), r(6, 12));
        let w = Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &dev);
        for (mask, causal) in [(None, false), (Some(masks(&dev)), false), (None, true)] {
            let run = |fast: bool| {
                let (q, k, v) = (
                    heads(xq.clone(), 3),
                    heads(xk.clone(), 3),
                    heads(xv.clone(), 3),
                );
                let y = if fast {
                    attention(q, k, v, mask.clone(), options(causal))
                } else {
                    burn_attention(q, k, v, mask.clone(), None, options(causal))
                };
                let g = (y.clone() * w.clone()).sum().backward();
                let grads: Vec<Tensor<3>> = [&xq, &xk, &xv]
                    .iter()
                    .map(|t| t.grad(&g).unwrap())
                    .collect();
                (y, grads)
            };
            let ((yf, gf), (ys, gs)) = (run(true), run(false));
            assert!(max_diff(yf, ys) < 1e-5, "causal {causal}");
            for (a, b) in gf.into_iter().zip(gs) {
                let e = max_diff(a, b);
                assert!(e < 1e-4, "gradient differs by {e} (causal {causal})");
            }
        }
    }

    #[test]
    fn many_query_blocks_and_heads_in_parallel_match_burn() {
        // 197 tokens (the ViT's) over several blocks per head, and enough heads for one task each.
        let dev = Device::flex().autodiff();
        let r = |b: usize| {
            Tensor::<3>::random([b, 197, 64], Distribution::Normal(0.0, 1.0), &dev).require_grad()
        };
        for b in [1, 8] {
            let x = r(b);
            let run = |fast: bool| {
                let t = heads(x.clone(), 4);
                let y = if fast {
                    attention(t.clone(), t.clone(), t, None, options(false))
                } else {
                    burn_attention(t.clone(), t.clone(), t, None, None, options(false))
                };
                let g = y.clone().powi_scalar(2).sum().backward();
                (y, x.grad(&g).unwrap())
            };
            let ((yf, gf), (ys, gs)) = (run(true), run(false));
            assert!(max_diff(yf, ys) < 1e-5);
            // Relative to the gradient's size (q = k = v makes it large; the two sum in other orders, which
            // measured up to 6e-6 relative over repeated runs).
            let scale = gs.clone().abs().max().into_scalar::<f32>().max(1.0);
            let e = max_diff(gf, gs) / scale;
            println!("batch {b}: gradient scale {scale}, relative difference {e}");
            assert!(e < 5e-5, "gradient differs by {e} relative (batch {b})");
        }
    }
}
