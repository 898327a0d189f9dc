//! Layer normalisation (Ba et al., 2016) over the last axis, and group normalisation (Wu & He, 2018)
//! fused with the ReLU that follows it in TGC-Net's conv blocks, each as one pass with a hand-written
//! backward.
//!
//! burn-autodiff 0.22.1 has no layer-norm or group-norm op of its own: both run as their decomposition
//! (mean, subtract, square, mean, add, sqrt, divide, scale, shift: nine graph nodes, nine passes over the
//! activation forward and about twice that backward, each allocating a full-size tensor). A training
//! step of the small preset runs 40 layer norms and 14 group norms, the latter on activations up to
//! 16×112×112 per image. Here the forward keeps x̂ and 1/σ per row (group), and the backward is the
//! closed form
//!   dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  ĝ = γ·g,  dγ = Σ g·x̂,  dβ = Σ g.
//! Inference on burn-flex uses flex's own fused layer norm; group norm (which flex lacks) uses the
//! forward here. Other backends use burn's modules.

use burn::nn::{GroupNorm, LayerNorm};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::simd::{dispatch, sum_f64, sum1, sum2, sum3};
use crate::{AdTensor, dense, f32s, tensor};

/// Rows per parallel task of the layer norm (rows are 128-768 wide here).
const ROWS_PER_TASK: usize = 64;

/// `norm(x)` for a [`LayerNorm`] whose epsilon is `eps` (burn keeps the module's epsilon private, so
/// the caller passes the one it configured).
/// x: [..., D] → [..., D]
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, eps: f64) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    if x.dtype() != DType::F32 {
        return norm.forward(x);
    }
    let (gamma, beta) = (norm.gamma.val(), beta.val());
    if let (Ok(xa), Ok(ga), Ok(ba)) = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        gamma.clone().try_into_primitive::<Autodiff<Flex>>(),
        beta.clone().try_into_primitive::<Autodiff<Flex>>(),
    ) {
        let shape = x.dims();
        let d = shape[D - 1];
        let y = tracked_ln(xa, ga, ba, d, eps as f32);
        return Tensor::from_primitive::<Autodiff<Flex>>(y);
    }
    // Plain flex has a fused layer norm of its own; everything else is burn's module.
    norm.forward(x)
}

/// `relu(norm(x))` for a [`GroupNorm`] with affine parameters.
/// x: [B, C, ...] → [B, C, ...]
pub fn group_norm_relu<const D: usize>(norm: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    let (Some(gamma), Some(beta)) = (norm.gamma.as_ref(), norm.beta.as_ref()) else {
        return relu(norm.forward(x));
    };
    if x.dtype() != DType::F32 || D < 2 {
        return relu(norm.forward(x));
    }
    let dims = x.dims();
    let geom = GroupGeom {
        b: dims[0],
        c: dims[1],
        groups: norm.num_groups,
        hw: dims[2..].iter().product(),
        eps: norm.epsilon as f32,
    };
    if geom.groups == 0 || !geom.c.is_multiple_of(geom.groups) {
        return relu(norm.forward(x));
    }
    let (gamma, beta) = (gamma.val(), beta.val());
    if let (Ok(xa), Ok(ga), Ok(ba)) = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        gamma.clone().try_into_primitive::<Autodiff<Flex>>(),
        beta.clone().try_into_primitive::<Autodiff<Flex>>(),
    ) {
        return Tensor::from_primitive::<Autodiff<Flex>>(tracked_gn(xa, ga, ba, geom));
    }
    if let (Ok(xf), Ok(gf), Ok(bf)) = (
        x.clone().try_into_primitive::<Flex>(),
        gamma.try_into_primitive::<Flex>(),
        beta.try_into_primitive::<Flex>(),
    ) {
        let (y, _, _) = gn_forward(&xf, &gf, &bf, &geom, false);
        return Tensor::from_primitive::<Flex>(y);
    }
    relu(norm.forward(x))
}

// ---------------------------------------------------------------------------------------------------
// Layer norm
// ---------------------------------------------------------------------------------------------------

/// Normalises the rows of `x` (length `d`); returns y = x̂·γ + β, 1/σ per row, and x̂ when `keep`
/// (else empty).
fn ln_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    d: usize,
    eps: f32,
    keep: bool,
) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let x = dense(x);
    let shape = x.layout().shape().to_vec();
    let n = shape.iter().product::<usize>();
    let rows = n / d.max(1);
    let xs = f32s(&x, n, "layer norm input");
    let (gamma, beta) = (dense(gamma), dense(beta));
    let (gs, bs) = (
        f32s(&gamma, d, "layer norm γ"),
        f32s(&beta, d, "layer norm β"),
    );
    let mut y = vec![0.0f32; n];
    let mut xhat = if keep { vec![0.0f32; n] } else { Vec::new() };
    let mut rstd = vec![0.0f32; rows];
    let chunk = ROWS_PER_TASK * d;
    let body = |(y, x): (&mut [f32], &[f32]), xh: Option<&mut [f32]>, rs: &mut [f32]| {
        let mut xh = xh;
        for (r, (yr, xr)) in y.chunks_mut(d).zip(x.chunks(d)).enumerate() {
            let mean = sum1(xr, |v| v) / d as f32;
            let var = sum1(xr, |v| (v - mean) * (v - mean)) / d as f32;
            let s = 1.0 / (var + eps).sqrt();
            rs[r] = s;
            match xh.as_deref_mut() {
                Some(xh) => {
                    let hr = &mut xh[r * d..(r + 1) * d];
                    for ((((o, h), &v), &g), &b) in yr.iter_mut().zip(hr).zip(xr).zip(gs).zip(bs) {
                        *h = (v - mean) * s;
                        *o = *h * g + b;
                    }
                }
                None => {
                    for (((o, &v), &g), &b) in yr.iter_mut().zip(xr).zip(gs).zip(bs) {
                        *o = (v - mean) * s * g + b;
                    }
                }
            }
        }
    };
    if keep {
        y.par_chunks_mut(chunk)
            .zip(xs.par_chunks(chunk))
            .zip(xhat.par_chunks_mut(chunk))
            .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|(((y, x), xh), rs)| {
                dispatch(
                    #[inline(always)]
                    || body((y, x), Some(xh), rs),
                )
            });
    } else {
        y.par_chunks_mut(chunk)
            .zip(xs.par_chunks(chunk))
            .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|((y, x), rs)| {
                dispatch(
                    #[inline(always)]
                    || body((y, x), None, rs),
                )
            });
    }
    (tensor(y, &shape), xhat, rstd)
}

/// What the layer-norm backward needs: x̂, 1/σ per row, γ and the shapes.
#[derive(Debug, Clone)]
struct LnState {
    xhat: std::sync::Arc<Vec<f32>>,
    rstd: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
    shape: Vec<usize>,
    d: usize,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LnState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_g, node_b] = ops.parents;
        let grad = dense(&grads.consume::<Flex>(&ops.node));
        let st = ops.state;
        let d = st.d;
        let n = st.xhat.len();
        let gs = f32s(&grad, n, "layer norm output gradient");
        let gamma = dense(&st.gamma);
        let gam = f32s(&gamma, d, "layer norm γ");
        let chunk = ROWS_PER_TASK * d;
        if let Some(node) = node_x {
            let mut dx = vec![0.0f32; n];
            dx.par_chunks_mut(chunk)
                .zip(gs.par_chunks(chunk))
                .zip(st.xhat.par_chunks(chunk))
                .zip(st.rstd.par_chunks(ROWS_PER_TASK))
                .for_each(|(((dx, g), xh), rs)| {
                    dispatch(
                        #[inline(always)]
                        || ln_dx_rows(dx, g, xh, rs, gam, d),
                    )
                });
            grads.register::<Flex>(node.id, tensor(dx, &st.shape));
        }
        if node_g.is_some() || node_b.is_some() {
            // Per-block partials, added in block order (a rayon `reduce` would associate them as the
            // pool split the work, so training would not repeat bit for bit).
            let partials: Vec<(Vec<f32>, Vec<f32>)> = gs
                .par_chunks(chunk)
                .zip(st.xhat.par_chunks(chunk))
                .map(|(g, xh)| {
                    let (mut dg, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
                    for (gr, hr) in g.chunks(d).zip(xh.chunks(d)) {
                        for (((dg, db), &g), &h) in dg.iter_mut().zip(&mut db).zip(gr).zip(hr) {
                            *dg += g * h;
                            *db += g;
                        }
                    }
                    (dg, db)
                })
                .collect();
            let (dg, db) = partials
                .into_iter()
                .fold((vec![0.0f32; d], vec![0.0f32; d]), add_pairs);
            if let Some(node) = node_g {
                grads.register::<Flex>(node.id, tensor(dg, &[d]));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor(db, &[d]));
            }
        }
    }
}

/// dx of the layer norm for a block of rows: s·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂)).
#[inline(always)]
fn ln_dx_rows(dx: &mut [f32], g: &[f32], xh: &[f32], rs: &[f32], gam: &[f32], d: usize) {
    for (((dxr, gr), hr), &s) in dx.chunks_mut(d).zip(g.chunks(d)).zip(xh.chunks(d)).zip(rs) {
        // Σ g·γ and Σ g·γ·x̂ over the row.
        let a = sum2(gr, gam, |g, w| g * w) / d as f32;
        let b = sum3(gr, hr, gam, |g, h, w| g * w * h) / d as f32;
        for (((o, &g), &h), &w) in dxr.iter_mut().zip(gr).zip(hr).zip(gam) {
            *o = s * (g * w - a - h * b);
        }
    }
}

fn add_pairs(mut a: (Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
    a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
    a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
    a
}

fn tracked_ln(x: AdTensor, gamma: AdTensor, beta: AdTensor, d: usize, eps: f32) -> AdTensor {
    match LayerNormBackward
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, xhat, rstd) = ln_forward(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                d,
                eps,
                true,
            );
            let state = LnState {
                xhat: xhat.into(),
                rstd: rstd.into(),
                gamma: gamma.primitive().clone(),
                shape: y.layout().shape().to_vec(),
                d,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => {
            let (y, _, _) = ln_forward(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                d,
                eps,
                false,
            );
            prep.finish(y)
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Group norm + ReLU
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct GroupGeom {
    b: usize,
    c: usize,
    groups: usize,
    /// Elements per channel (the product of the spatial axes).
    hw: usize,
    eps: f32,
}

impl GroupGeom {
    fn per_group(&self) -> usize {
        self.c / self.groups * self.hw
    }
}

/// relu(x̂·γ_c + β_c) per (sample, group); also x̂ and 1/σ per (sample, group) when `keep`.
fn gn_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    g: &GroupGeom,
    keep: bool,
) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let x = dense(x);
    let shape = x.layout().shape().to_vec();
    let n = g.b * g.c * g.hw;
    let xs = f32s(&x, n, "group norm input");
    let (gamma, beta) = (dense(gamma), dense(beta));
    let (gam, bet) = (
        f32s(&gamma, g.c, "group norm γ"),
        f32s(&beta, g.c, "group norm β"),
    );
    let m = g.per_group();
    let cpg = g.c / g.groups;
    let mut y = vec![0.0f32; n];
    let mut xhat = if keep { vec![0.0f32; n] } else { Vec::new() };
    let mut rstd = vec![0.0f32; g.b * g.groups];
    let gn_group =
        |k: usize, yg: &mut [f32], xg: &[f32], mut hg: Option<&mut [f32]>, rs: &mut f32| {
            // Sums in f64: a group holds up to ~10⁵ elements.
            let mean = (sum_f64(xg, |v| v as f64) / m as f64) as f32;
            let var = sum_f64(xg, |v| ((v - mean) as f64).powi(2)) / m as f64;
            let s = (1.0 / (var + g.eps as f64).sqrt()) as f32;
            *rs = s;
            let c0 = (k % g.groups) * cpg;
            for ci in 0..cpg {
                let (w, b) = (gam[c0 + ci], bet[c0 + ci]);
                let span = ci * g.hw..(ci + 1) * g.hw;
                let (yc, xc) = (&mut yg[span.clone()], &xg[span.clone()]);
                match hg.as_deref_mut() {
                    Some(hg) => {
                        for ((o, h), &v) in yc.iter_mut().zip(&mut hg[span]).zip(xc) {
                            *h = (v - mean) * s;
                            *o = (*h * w + b).max(0.0);
                        }
                    }
                    None => {
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            *o = ((v - mean) * s * w + b).max(0.0);
                        }
                    }
                }
            }
        };
    // Compiled again for AVX-512 / AVX2 (`simd::dispatch`).
    let run = |k: usize, yg: &mut [f32], xg: &[f32], hg: Option<&mut [f32]>, rs: &mut f32| {
        dispatch(
            #[inline(always)]
            || gn_group(k, yg, xg, hg, rs),
        )
    };
    if keep {
        y.par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .zip(xhat.par_chunks_mut(m))
            .zip(rstd.par_iter_mut())
            .enumerate()
            .for_each(|(k, (((yg, xg), hg), rs))| run(k, yg, xg, Some(hg), rs));
    } else {
        y.par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .zip(rstd.par_iter_mut())
            .enumerate()
            .for_each(|(k, ((yg, xg), rs))| run(k, yg, xg, None, rs));
    }
    (tensor(y, &shape), xhat, rstd)
}

#[derive(Debug, Clone)]
struct GnState {
    xhat: std::sync::Arc<Vec<f32>>,
    rstd: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
    beta: FlexTensor,
    shape: Vec<usize>,
    geom: GroupGeom,
}

#[derive(Debug)]
struct GroupNormReluBackward;

impl Backward<Flex, 3> for GroupNormReluBackward {
    type State = GnState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_g, node_b] = ops.parents;
        let grad = dense(&grads.consume::<Flex>(&ops.node));
        let st = ops.state;
        let g = st.geom;
        let n = st.xhat.len();
        let m = g.per_group();
        let cpg = g.c / g.groups;
        let gs = f32s(&grad, n, "group norm output gradient");
        let (gamma, beta) = (dense(&st.gamma), dense(&st.beta));
        let (gam, bet) = (
            f32s(&gamma, g.c, "group norm γ"),
            f32s(&beta, g.c, "group norm β"),
        );
        // Per (sample, group): dx, and per-channel Σ g'·x̂ and Σ g' (g' = g where the ReLU passed).
        let mut dx = vec![0.0f32; if node_x.is_some() { n } else { 0 }];
        let mut partial = vec![(0.0f32, 0.0f32); g.b * g.c];
        let work = |k: usize,
                    gg: &[f32],
                    hg: &[f32],
                    s: f32,
                    dxg: Option<&mut [f32]>,
                    part: &mut [(f32, f32)]| {
            let c0 = (k % g.groups) * cpg;
            let (mut a, mut bsum) = (0.0f64, 0.0f64);
            for ci in 0..cpg {
                let (w, b) = (gam[c0 + ci], bet[c0 + ci]);
                let span = ci * g.hw..(ci + 1) * g.hw;
                // g' = g where the ReLU passed; Σ g'·x̂ and Σ g' (the γ- and β-gradients of this channel).
                let (gc, hc) = (&gg[span.clone()], &hg[span]);
                let pass = |gv: f32, h: f32| if h * w + b > 0.0 { gv } else { 0.0 };
                let sgh = sum2(gc, hc, |gv, h| pass(gv, h) * h);
                let sg = sum2(gc, hc, pass);
                part[ci] = (sgh, sg);
                a += (w * sg) as f64;
                bsum += (w * sgh) as f64;
            }
            if let Some(dxg) = dxg {
                let (a, bm) = ((a / m as f64) as f32, (bsum / m as f64) as f32);
                for ci in 0..cpg {
                    let (w, b) = (gam[c0 + ci], bet[c0 + ci]);
                    let span = ci * g.hw..(ci + 1) * g.hw;
                    for ((o, &gv), &h) in dxg[span.clone()]
                        .iter_mut()
                        .zip(&gg[span.clone()])
                        .zip(&hg[span])
                    {
                        let gp = if h * w + b > 0.0 { gv } else { 0.0 };
                        *o = s * (gp * w - a - h * bm);
                    }
                }
            }
        };
        if node_x.is_some() {
            dx.par_chunks_mut(m)
                .zip(gs.par_chunks(m))
                .zip(st.xhat.par_chunks(m))
                .zip(partial.par_chunks_mut(cpg))
                .enumerate()
                .for_each(|(k, (((dxg, gg), hg), part))| {
                    dispatch(
                        #[inline(always)]
                        || work(k, gg, hg, st.rstd[k], Some(dxg), part),
                    )
                });
            if let Some(node) = node_x {
                grads.register::<Flex>(node.id, tensor(dx, &st.shape));
            }
        } else {
            gs.par_chunks(m)
                .zip(st.xhat.par_chunks(m))
                .zip(partial.par_chunks_mut(cpg))
                .enumerate()
                .for_each(|(k, ((gg, hg), part))| {
                    dispatch(
                        #[inline(always)]
                        || work(k, gg, hg, st.rstd[k], None, part),
                    )
                });
        }
        let mut dg = vec![0.0f32; g.c];
        let mut db = vec![0.0f32; g.c];
        for row in partial.chunks(g.c) {
            for ((dg, db), &(a, b)) in dg.iter_mut().zip(&mut db).zip(row) {
                *dg += a;
                *db += b;
            }
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, tensor(dg, &[g.c]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(db, &[g.c]));
        }
    }
}

fn tracked_gn(x: AdTensor, gamma: AdTensor, beta: AdTensor, geom: GroupGeom) -> AdTensor {
    match GroupNormReluBackward
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, xhat, rstd) = gn_forward(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                &geom,
                true,
            );
            let state = GnState {
                xhat: xhat.into(),
                rstd: rstd.into(),
                gamma: gamma.primitive().clone(),
                beta: beta.primitive().clone(),
                shape: y.layout().shape().to_vec(),
                geom,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => {
            let (y, _, _) = gn_forward(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                &geom,
                false,
            );
            prep.finish(y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{GroupNormConfig, LayerNormConfig};
    use burn::tensor::{Device, Distribution};

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Random γ and β, so that the affine part of the gradients is exercised.
    fn randomise(t: Tensor<1>) -> Tensor<1> {
        let dev = t.device();
        Tensor::random(t.dims(), Distribution::Normal(0.5, 0.5), &dev).require_grad()
    }

    #[test]
    fn layer_norm_parameter_gradients_repeat_bit_for_bit() {
        // Many row blocks.
        let dev = Device::flex().autodiff();
        let norm = LayerNormConfig::new(192).init(&dev);
        let x = Tensor::<3>::random([8, 197, 192], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<3>::random([8, 197, 192], Distribution::Normal(0.0, 1.0), &dev);
        let run = || {
            let g = (layer_norm(&norm, x.clone(), 1e-5) * w.clone())
                .sum()
                .backward();
            norm.gamma
                .grad(&g)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        crate::testutil::assert_repeats_bit_for_bit(run, "the γ gradient");
    }

    #[test]
    fn layer_norm_and_its_gradients_match_burn() {
        let dev = Device::flex().autodiff();
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-5).init(&dev);
        norm.gamma = norm.gamma.map(randomise);
        norm.beta = norm.beta.map(|b| b.map(randomise));
        // 3 × 50 rows: more than one parallel task.
        let x =
            (Tensor::<3>::random([3, 50, 24], Distribution::Normal(1.0, 2.0), &dev)).require_grad();
        let w = Tensor::<3>::random([3, 50, 24], Distribution::Normal(0.0, 1.0), &dev);
        let fast = layer_norm(&norm, x.clone(), 1e-5);
        let slow = norm.forward(x.clone());
        assert!(max_diff(fast.clone(), slow.clone()) < 1e-5);
        let gf = (fast * w.clone()).sum().backward();
        let gs = (slow * w).sum().backward();
        let e = max_diff(x.grad(&gf).unwrap(), x.grad(&gs).unwrap());
        assert!(e < 1e-4, "dx differs by {e}");
        let e = max_diff(
            norm.gamma.val().grad(&gf).unwrap(),
            norm.gamma.val().grad(&gs).unwrap(),
        );
        assert!(e < 1e-3, "dγ differs by {e}");
        let beta = norm.beta.as_ref().unwrap().val();
        let e = max_diff(beta.grad(&gf).unwrap(), beta.grad(&gs).unwrap());
        assert!(e < 1e-3, "dβ differs by {e}");
    }

    #[test]
    fn group_norm_relu_and_its_gradients_match_burn() {
        let dev = Device::flex().autodiff();
        let mut norm = GroupNormConfig::new(4, 8).init(&dev);
        norm.gamma = norm.gamma.map(|p| p.map(randomise));
        norm.beta = norm.beta.map(|p| p.map(randomise));
        let x =
            Tensor::<4>::random([2, 8, 9, 7], Distribution::Normal(0.5, 2.0), &dev).require_grad();
        let w = Tensor::<4>::random([2, 8, 9, 7], Distribution::Normal(0.0, 1.0), &dev);
        let fast = group_norm_relu(&norm, x.clone());
        let slow = relu(norm.forward(x.clone()));
        assert!(max_diff(fast.clone(), slow.clone()) < 1e-5);
        let gf = (fast * w.clone()).sum().backward();
        let gs = (slow * w).sum().backward();
        let e = max_diff(x.grad(&gf).unwrap(), x.grad(&gs).unwrap());
        assert!(e < 1e-4, "dx differs by {e}");
        let gamma = norm.gamma.as_ref().unwrap().val();
        let e = max_diff(gamma.grad(&gf).unwrap(), gamma.grad(&gs).unwrap());
        assert!(e < 1e-3, "dγ differs by {e}");
        let beta = norm.beta.as_ref().unwrap().val();
        let e = max_diff(beta.grad(&gf).unwrap(), beta.grad(&gs).unwrap());
        assert!(e < 1e-3, "dβ differs by {e}");
        // Inference (plain flex) takes the kernel too.
        let xi = x.inner();
        let ni = norm.valid();
        assert!(xi.clone().try_into_primitive::<Flex>().is_ok());
        let e = max_diff(group_norm_relu(&ni, xi.clone()), relu(ni.forward(xi)));
        assert!(e < 1e-5, "inference forward differs by {e}");
    }

    #[test]
    fn frozen_norm_parameters_get_no_gradient_but_x_does() {
        let dev = Device::flex().autodiff();
        let norm = LayerNormConfig::new(8).init(&dev).no_grad();
        let x = Tensor::<2>::random([5, 8], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let g = (layer_norm(&norm, x.clone(), 1e-5) * x.clone())
            .sum()
            .backward();
        assert!(x.grad(&g).is_some());
        assert!(norm.gamma.val().grad(&g).is_none());
    }
}
