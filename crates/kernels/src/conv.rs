//! Convolutions on the CPU backend (burn-flex) as shifted matrix products, with their own backward pass.
//! Used by the SSE CNN branch, the decoder and the 1×1 projections of TGC-Net (Lin et al., 2025,
//! arXiv 2512.21135) through [`conv2d`]; any other backend, dtype or convolution shape goes to burn's own
//! `Conv2d::forward`, so model code stays backend-generic.
//!
//! Why this exists: burn 0.22.1 computes a convolution's weight gradient with a generic fallback, a
//! convolution whose *kernel* is the output gradient (112×112 for the decoder's last conv). burn-flex runs
//! that shape through a per-element loop: ~147 ms against ~15 ms for the input gradient on one decoder
//! conv, and a third of a training step of the small preset (docs/perf-log.md).
//!
//! The method. Pad x to [C, Hp, Wp] and flatten each plane. A stride-1 kh×kw convolution reads, for output
//! (oh, ow), the padded input at (oh+i)·Wp + (ow+j) = q + i·Wp + j with q = oh·Wp + ow. Over the "wide"
//! output grid q ∈ [0, L), L = (OH−1)·Wp + OW (the columns ow ≥ OW of that grid are junk and dropped), tap
//! (i, j) is one matrix product `W_ij [Co×C] · xp[:, q + i·Wp + j] [C×L]` read in place: no im2col buffer.
//! The gradients are the same products transposed: `dW_ij = G · xp_shiftedᵀ` (reduction over the long q
//! axis, the shape gemm is good at) and `dxp[:, q + i·Wp + j] += W_ijᵀ · G`, where G is the output gradient
//! laid out on the wide grid with zeros in the junk columns.
//!
//! Stride s: split the padded input into s² phase planes, `phase(a, b)[r, c] = xp[s·r + a, s·c + b]`, each
//! ⌈Hp/s⌉×⌈Wp/s⌉. Output (oh, ow) reads xp[s·oh + i, s·ow + j] = phase(i mod s, j mod s)[oh + ⌊i/s⌋,
//! ow + ⌊j/s⌋]: a stride-1 access again, so every tap is still one in-place product (stride 1 is the case
//! of a single phase, the padded input itself).

use std::borrow::Cow;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::{AdTensor, Mat, SharedMut, dense, f32s, gemm_acc, tensor};

/// The convolution `conv` applied to `x`, through the fast path when it applies (burn-flex, f32,
/// dilation 1, one group, valid or explicit padding), else `conv.forward(x)`. Same numbers
/// either way, up to float summation order.
/// x: [B, C_in, H, W] → [B, C_out, (H + top + bottom − kh)/sh + 1, (W + left + right − kw)/sw + 1]
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(geom) = Geom::of(conv, &x) else {
        return conv.forward(x);
    };
    let Some(y) = try_fast(x.clone(), conv.weight.val(), geom) else {
        return conv.forward(x);
    };
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, geom.co as i32, 1, 1]),
        None => y,
    }
}

/// Shapes of one convolution call, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    /// Stride (rows, columns).
    sh: usize,
    sw: usize,
    top: usize,
    left: usize,
    /// Phase plane height and width: ⌈Hp/sh⌉, ⌈Wp/sw⌉ (the padded input itself at stride 1).
    hq: usize,
    wq: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn of(conv: &Conv2d, x: &Tensor<4>) -> Option<Self> {
        if conv.dilation != [1, 1] || conv.groups != 1 || conv.stride.contains(&0) {
            return None;
        }
        let (top, left, bottom, right) = match conv.padding {
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
            PaddingConfig2d::Same => return None,
        };
        let [b, c, h, w] = x.dims();
        let [co, ci, kh, kw] = conv.weight.dims();
        let [sh, sw] = conv.stride;
        let (hp, wp) = (h + top + bottom, w + left + right);
        if ci != c || kh == 0 || kw == 0 || hp < kh || wp < kw || b == 0 || c == 0 || co == 0 {
            return None;
        }
        Some(Self {
            b,
            c,
            h,
            w,
            co,
            kh,
            kw,
            sh,
            sw,
            top,
            left,
            hq: hp.div_ceil(sh),
            wq: wp.div_ceil(sw),
            oh: (hp - kh) / sh + 1,
            ow: (wp - kw) / sw + 1,
        })
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }
    fn phases(&self) -> usize {
        self.sh * self.sw
    }
    /// Elements of one input channel after padding and phase split: [phases, Hq, Wq].
    fn chan(&self) -> usize {
        self.phases() * self.hq * self.wq
    }
    /// Where tap t = (i, j) starts reading inside a channel: its phase plane, shifted by (⌊i/sh⌋, ⌊j/sw⌋).
    /// For every wide-grid position q < span, offset + q stays inside that phase plane because
    /// sh·(OH−1) + i ≤ Hp − 1 gives OH − 1 + ⌊i/sh⌋ ≤ Hq − 1 (and the same for columns).
    fn tap_offset(&self, t: usize) -> usize {
        let (i, j) = (t / self.kw, t % self.kw);
        let phase = (i % self.sh) * self.sw + j % self.sw;
        phase * self.hq * self.wq + (i / self.sh) * self.wq + j / self.sw
    }
    /// Elements of one output plane on the wide grid (OH rows of Wq).
    fn wide(&self) -> usize {
        self.oh * self.wq
    }
    /// Wide-grid positions that any output needs: the last row stops at OW.
    fn span(&self) -> usize {
        (self.oh - 1) * self.wq + self.ow
    }
    /// Whether the kernels need a padded / phase-split copy of x (else they read x itself).
    fn copies_input(&self) -> bool {
        self.chan() != self.h * self.w
    }
}

fn try_fast(x: Tensor<4>, w: Tensor<4>, geom: Geom) -> Option<Tensor<4>> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    if let (Ok(xa), Ok(wa)) = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        w.clone().try_into_primitive::<Autodiff<Flex>>(),
    ) {
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(tracked(
            xa, wa, geom,
        )));
    }
    match (
        x.try_into_primitive::<Flex>(),
        w.try_into_primitive::<Flex>(),
    ) {
        (Ok(xf), Ok(wf)) => Some(Tensor::from_primitive::<Flex>(forward(&xf, &wf, &geom))),
        _ => None,
    }
}

#[derive(Debug)]
struct ShiftedConvBackward;

impl Backward<Flex, 2> for ShiftedConvBackward {
    type State = (NodeId, NodeId, Geom);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, geom) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
        let g_wide = widen(&grad, &geom);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, x_grad(&w, &g_wide, &geom));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, w_grad(&x, &g_wide, &geom));
        }
    }
}

/// The autodiff op: flex forward now, [`ShiftedConvBackward`] later. x and w are kept for the backward
/// pass through burn's checkpointer, as burn's own conv2d does.
fn tracked(x: AdTensor, w: AdTensor, geom: Geom) -> AdTensor {
    match ShiftedConvBackward
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&w);
            let y = forward(x.primitive(), w.primitive(), &geom);
            prep.finish((x_state, w_state, geom), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive(), w.primitive(), &geom)),
    }
}

/// Where the columns of input row r go in its channel's phase-split copy: for each column phase
/// b < sw, the first source column c₀ with (c₀ + left) mod sw = b, the destination index of c₀, and how
/// many columns (c₀, c₀ + sw, …) there are; they land next to each other in the phase plane.
fn row_runs(g: &Geom, r: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let pr = r + g.top;
    (0..g.sw).filter_map(move |b| {
        let c0 = (b + g.sw - g.left % g.sw) % g.sw;
        (c0 < g.w).then(|| {
            let phase = (pr % g.sh) * g.sw + b;
            let at = (phase * g.hq + pr / g.sh) * g.wq + (c0 + g.left) / g.sw;
            (c0, at, (g.w - c0).div_ceil(g.sw))
        })
    })
}

/// x: [B, C, H, W] → zero-padded, phase-split [B, C, phases, Hq, Wq].
fn split(x: &[f32], g: &Geom) -> Vec<f32> {
    let mut xs = vec![0.0f32; g.b * g.c * g.chan()];
    xs.par_chunks_mut(g.chan())
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(dst, src)| {
            for (r, row) in src.chunks(g.w).enumerate() {
                for (c0, at, n) in row_runs(g, r) {
                    let out = &mut dst[at..at + n];
                    out.iter_mut()
                        .zip(row[c0..].iter().step_by(g.sw))
                        .for_each(|(o, &v)| *o = v);
                }
            }
        });
    xs
}

/// The input as the kernels read it: padded and phase-split when the geometry needs it, else x itself.
/// x: contiguous [B, C, H, W]
fn prepared<'a>(x: &'a FlexTensor, g: &Geom) -> Cow<'a, [f32]> {
    let x = f32s(x, g.b * g.c * g.h * g.w, "input");
    if g.copies_input() {
        Cow::Owned(split(x, g))
    } else {
        Cow::Borrowed(x)
    }
}

/// The inverse gather of [`split`]: [B, C, phases, Hq, Wq] → [B, C, H, W] (padding dropped).
fn merge(xs: &[f32], g: &Geom) -> Vec<f32> {
    let mut x = vec![0.0f32; g.b * g.c * g.h * g.w];
    x.par_chunks_mut(g.h * g.w)
        .zip(xs.par_chunks(g.chan()))
        .for_each(|(dst, src)| {
            for (r, row) in dst.chunks_mut(g.w).enumerate() {
                for (c0, at, n) in row_runs(g, r) {
                    row[c0..]
                        .iter_mut()
                        .step_by(g.sw)
                        .zip(&src[at..at + n])
                        .for_each(|(o, &v)| *o = v);
                }
            }
        });
    x
}

/// Floats a task's working set may take: about half of a 512 KiB-1 MiB L2 cache.
const TASK_FLOATS: usize = 64 * 1024;

/// Parallel tasks (image, [start, end) of its `n` wide-grid positions). A task touches `rows` floats per
/// column (its output rows plus the input rows it reads for every tap), so a range is short enough for
/// that to stay in cache across the taps (the products over few channels are memory-bound otherwise),
/// and there are at least four tasks per thread over the batch.
fn column_tasks(n: usize, batch: usize, rows: usize) -> Vec<(usize, (usize, usize))> {
    let by_cache = TASK_FLOATS / rows.max(1);
    let want = (4 * rayon::current_num_threads()).div_ceil(batch.max(1));
    let by_threads = n.div_ceil(want.max(1));
    let len = by_cache.min(by_threads).max(128).min(n.max(1));
    (0..batch)
        .flat_map(|b| (0..n).step_by(len).map(move |a| (b, (a, (a + len).min(n)))))
        .collect()
}

/// y = conv(x, w). Tasks are (image, range of wide-grid columns); each runs every tap over its range
/// on one thread, so its slice of the output stays in cache across the taps and the pool is joined
/// once per convolution rather than once per tap.
/// x: [B, C, H, W], w: [Co, C, kh, kw] → [B, Co, OH, OW]
fn forward(x: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    let (x, w) = (dense(x), dense(w));
    let xs = prepared(&x, g);
    let w = f32s(&w, g.co * g.c * g.taps(), "weight");
    let (taps, chan, wide, span) = (g.taps(), g.chan(), g.wide(), g.span());
    let mut y_wide = vec![0.0f32; g.b * g.co * wide];
    let tasks = column_tasks(span, g.b, g.co + g.c);
    let dst = SharedMut(y_wide.as_mut_ptr());
    tasks.into_par_iter().for_each(|(b, (q0, q1))| {
        for t in 0..taps {
            // SAFETY: dst is columns q0..q1 of y_wide[b] [Co, wide] (row stride wide), written by this
            // task alone. lhs reads w[co, c, i, j] at co·C·taps + c·taps + t < w.len(). rhs reads
            // xs[b, c, tap_offset(t) + q] for c < C, q < span, inside channel c of image b (see
            // `Geom::tap_offset`), and xs holds B·C·chan elements.
            unsafe {
                gemm_acc(
                    g.co,
                    q1 - q0,
                    g.c,
                    dst.ptr().add(b * g.co * wide + q0),
                    wide,
                    t > 0,
                    Mat(w.as_ptr().add(t), taps as isize, (g.c * taps) as isize),
                    Mat(
                        xs.as_ptr().add(b * g.c * chan + g.tap_offset(t) + q0),
                        1,
                        chan as isize,
                    ),
                    1.0,
                    false,
                );
            }
        }
    });
    if g.wq == g.ow {
        y_wide.truncate(g.b * g.co * g.oh * g.ow);
        return tensor(y_wide, &[g.b, g.co, g.oh, g.ow]);
    }
    let mut y = vec![0.0f32; g.b * g.co * g.oh * g.ow];
    y.par_chunks_mut(g.ow)
        .zip(y_wide.par_chunks(g.wq))
        .for_each(|(dst, src)| dst.copy_from_slice(&src[..g.ow]));
    tensor(y, &[g.b, g.co, g.oh, g.ow])
}

/// The output gradient on the wide grid, zeros in the junk columns.
/// g: [B, Co, OH, OW] → [B, Co, OH·Wq]
fn widen(grad: &FlexTensor, g: &Geom) -> Vec<f32> {
    let grad = dense(grad);
    let src = f32s(&grad, g.b * g.co * g.oh * g.ow, "output gradient");
    let mut out = vec![0.0f32; g.b * g.co * g.wide()];
    out.par_chunks_mut(g.wq)
        .zip(src.par_chunks(g.ow))
        .for_each(|(dst, row)| dst[..g.ow].copy_from_slice(row));
    out
}

/// dL/dw = Σ_b Σ_q G[b, :, q] · xs[b, :, tap_offset(t) + q]ᵀ per tap t = (i, j). Tasks are (image,
/// range of q): each adds its range's products for every tap into its own [taps, Co, C] sum (the
/// gradient and input columns of the range stay in cache across the taps), and the sums are added in
/// task order.
/// → [Co, C, kh, kw]
fn w_grad(x: &FlexTensor, g_wide: &[f32], g: &Geom) -> FlexTensor {
    let x = dense(x);
    let xs = prepared(&x, g);
    let (taps, chan, wide, span) = (g.taps(), g.chan(), g.wide(), g.span());
    let size = taps * g.co * g.c;
    let tasks = column_tasks(span, g.b, g.co + g.c);
    // Partials are collected in task order and added in that order, so the result does not depend on
    // how the pool happened to split the work (training runs are reproducible bit for bit).
    let partials: Vec<Vec<f32>> = tasks
        .into_par_iter()
        .map(|(b, (q0, q1))| {
            let mut acc = vec![0.0f32; size];
            for (t, dst) in acc.chunks_mut(g.co * g.c).enumerate() {
                // SAFETY: dst is [Co, C] row-major. lhs reads g_wide[b, co, q] for q0 ≤ q < q1 ≤
                // span ≤ wide. rhs reads xs[b, c, tap_offset(t) + q], in bounds as in `forward`.
                unsafe {
                    gemm_acc(
                        g.co,
                        g.c,
                        q1 - q0,
                        dst.as_mut_ptr(),
                        g.c,
                        true,
                        Mat(g_wide.as_ptr().add(b * g.co * wide + q0), 1, wide as isize),
                        Mat(
                            xs.as_ptr().add(b * g.c * chan + g.tap_offset(t) + q0),
                            chan as isize,
                            1,
                        ),
                        1.0,
                        false,
                    );
                }
            }
            acc
        })
        .collect();
    let mut per_tap = vec![0.0f32; size];
    for p in &partials {
        per_tap.iter_mut().zip(p).for_each(|(x, y)| *x += y);
    }
    // [taps, Co, C] → [Co, C, kh, kw]
    let mut dw = vec![0.0f32; g.co * g.c * taps];
    for (t, tap) in per_tap.chunks(g.co * g.c).enumerate() {
        for (k, v) in tap.iter().enumerate() {
            dw[k * taps + t] = *v;
        }
    }
    tensor(dw, &[g.co, g.c, g.kh, g.kw])
}

/// dL/dx: dxs[b, :, tap_offset(t) + q] += W_tᵀ · G[b, :, q], then padding and phases are undone.
/// Taps write overlapping windows of dxs, so the tasks are ranges of dxs columns: for each tap a task
/// adds the part of that tap's window that falls in its range.
/// → [B, C, H, W]
fn x_grad(w: &FlexTensor, g_wide: &[f32], g: &Geom) -> FlexTensor {
    let w = dense(w);
    let w = f32s(&w, g.co * g.c * g.taps(), "weight");
    let (taps, chan, wide, span) = (g.taps(), g.chan(), g.wide(), g.span());
    let mut dxs = vec![0.0f32; g.b * g.c * chan];
    let tasks = column_tasks(chan, g.b, g.c + g.co);
    let dst = SharedMut(dxs.as_mut_ptr());
    tasks.into_par_iter().for_each(|(b, (p0, p1))| {
        for t in 0..taps {
            let off = g.tap_offset(t);
            // This tap writes columns off..off + span; the part inside p0..p1.
            let (lo, hi) = (p0.max(off), p1.min(off + span));
            if lo >= hi {
                continue;
            }
            // SAFETY: dst writes dxs[b, c, lo..hi] for c < C (row stride chan), inside image b and
            // inside this task's column range. lhs reads w[co, c, i, j] (transposed strides). rhs reads
            // g_wide[b, co, lo - off..hi - off], inside [0, span) ⊆ [0, wide).
            unsafe {
                gemm_acc(
                    g.c,
                    hi - lo,
                    g.co,
                    dst.ptr().add(b * g.c * chan + lo),
                    chan,
                    true,
                    Mat(w.as_ptr().add(t), (g.c * taps) as isize, taps as isize),
                    Mat(
                        g_wide.as_ptr().add(b * g.co * wide + lo - off),
                        1,
                        wide as isize,
                    ),
                    1.0,
                    false,
                );
            }
        }
    });
    let dx = if g.copies_input() {
        merge(&dxs, g)
    } else {
        dxs
    };
    tensor(dx, &[g.b, g.c, g.h, g.w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// Position of input element (r, c) of a channel in its padded, phase-split copy.
    fn phased_index(g: &Geom, r: usize, c: usize) -> usize {
        let (pr, pc) = (r + g.top, c + g.left);
        let phase = (pr % g.sh) * g.sw + pc % g.sw;
        (phase * g.hq + pr / g.sh) * g.wq + pc / g.sw
    }

    #[test]
    fn row_runs_place_every_column_where_the_phase_formula_does() {
        let dev = Device::flex();
        for (sh, sw, top, left, w) in [
            (1, 1, 1, 1, 7),
            (2, 2, 1, 1, 7),
            (2, 3, 0, 2, 8),
            (3, 2, 2, 0, 5),
        ] {
            let h = 6;
            let m = Conv2dConfig::new([1, 1], [3, 3])
                .with_stride([sh, sw])
                .with_padding(PaddingConfig2d::Explicit(top, left, top, left))
                .init(&dev);
            let x = Tensor::<4>::zeros([1, 1, h, w], &dev);
            let g = Geom::of(&m, &x).unwrap();
            for r in 0..h {
                let mut seen = vec![false; w];
                for (c0, at, n) in row_runs(&g, r) {
                    for i in 0..n {
                        let c = c0 + i * sw;
                        assert_eq!(at + i, phased_index(&g, r, c), "{sh}x{sw} row {r} col {c}");
                        seen[c] = true;
                    }
                }
                assert!(seen.iter().all(|&s| s), "every column placed once");
            }
        }
    }

    fn conv(
        c: usize,
        co: usize,
        k: usize,
        padding: PaddingConfig2d,
        bias: bool,
        dev: &Device,
    ) -> Conv2d {
        Conv2dConfig::new([c, co], [k, k])
            .with_padding(padding)
            .with_bias(bias)
            .init(dev)
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn check(c: usize, co: usize, k: usize, padding: PaddingConfig2d, bias: bool, hw: [usize; 2]) {
        let dev = Device::flex().autodiff();
        check_conv(conv(c, co, k, padding, bias, &dev), hw);
    }

    fn check_strided(
        c: usize,
        co: usize,
        k: usize,
        stride: [usize; 2],
        p: PaddingConfig2d,
        hw: [usize; 2],
    ) {
        let dev = Device::flex().autodiff();
        let m = Conv2dConfig::new([c, co], [k, k])
            .with_stride(stride)
            .with_padding(p)
            .init(&dev);
        check_conv(m, hw);
    }

    /// Forward and all gradients equal burn's own conv2d (same weights, same input).
    fn check_conv(m: Conv2d, hw: [usize; 2]) {
        let dev = m.weight.device();
        let [_, c, _, _] = m.weight.dims();
        let bias = m.bias.is_some();
        let x = Tensor::<4>::random([2, c, hw[0], hw[1]], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        // The fast path must really be taken, or this test would compare burn with itself.
        let geom = Geom::of(&m, &x).expect("a stride-1 conv qualifies");
        assert!(try_fast(x.clone(), m.weight.val(), geom).is_some());
        let fast = conv2d(&m, x.clone());
        let slow = m.forward(x.clone());
        assert_eq!(fast.dims(), slow.dims());
        let target = Tensor::<4>::random(fast.dims(), Distribution::Normal(0.0, 1.0), &dev);
        let e = max_abs_diff(fast.clone().inner(), slow.clone().inner());
        assert!(e < 1e-4, "forward differs by {e}");
        let gf = (fast * target.clone()).sum().backward();
        let gs = (slow * target).sum().backward();
        let dx = max_abs_diff(x.grad(&gf).unwrap(), x.grad(&gs).unwrap());
        let dw = max_abs_diff(m.weight.grad(&gf).unwrap(), m.weight.grad(&gs).unwrap());
        assert!(dx < 1e-3, "dx differs by {dx}");
        assert!(dw < 1e-3, "dw differs by {dw}");
        if bias {
            let b = m.bias.as_ref().unwrap();
            let db = max_abs_diff(b.grad(&gf).unwrap(), b.grad(&gs).unwrap());
            assert!(db < 1e-3, "db differs by {db}");
        }
        // Inference (no autodiff) takes the plain path and agrees too.
        let mv = m.valid();
        let xv = x.inner();
        assert!(try_fast(xv.clone(), mv.weight.val(), geom).is_some());
        let e = max_abs_diff(conv2d(&mv, xv.clone()), mv.forward(xv));
        assert!(e < 1e-4, "inference forward differs by {e}");
    }

    #[test]
    fn conv3x3_padded_matches_burn() {
        check(
            5,
            7,
            3,
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            false,
            [9, 11],
        );
    }

    #[test]
    fn conv1x1_with_bias_matches_burn() {
        check(6, 3, 1, PaddingConfig2d::Valid, true, [8, 5]);
    }

    #[test]
    fn asymmetric_padding_and_valid_3x3_match_burn() {
        check(3, 4, 3, PaddingConfig2d::Explicit(2, 0, 1, 1), true, [6, 7]);
        check(4, 2, 3, PaddingConfig2d::Valid, false, [5, 6]);
    }

    #[test]
    fn weight_gradient_repeats_bit_for_bit() {
        // Many column tasks per image.
        let dev = Device::flex().autodiff();
        let m = conv(
            16,
            16,
            3,
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            false,
            &dev,
        );
        let x = Tensor::<4>::random([4, 16, 96, 96], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<4>::random([4, 16, 96, 96], Distribution::Normal(0.0, 1.0), &dev);
        let run = || {
            let g = (conv2d(&m, x.clone()) * w.clone()).sum().backward();
            m.weight
                .grad(&g)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        crate::testutil::assert_repeats_bit_for_bit(run, "the weight gradient");
    }

    #[test]
    fn strided_convs_match_burn() {
        // The SSE stages: stride 2, padding 1, even and odd sizes.
        check_strided(
            3,
            5,
            3,
            [2, 2],
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            [10, 9],
        );
        check_strided(
            4,
            3,
            3,
            [2, 2],
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            [7, 8],
        );
        // Stride 3, unequal strides, no padding, 2×2 kernel.
        check_strided(2, 3, 3, [3, 3], PaddingConfig2d::Valid, [11, 10]);
        check_strided(
            3,
            2,
            2,
            [2, 1],
            PaddingConfig2d::Explicit(0, 1, 1, 0),
            [9, 6],
        );
    }

    #[test]
    fn dilated_and_grouped_convs_fall_back_to_burn() {
        let dev = Device::flex();
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), &dev);
        for m in [
            Conv2dConfig::new([4, 4], [3, 3])
                .with_dilation([2, 2])
                .init(&dev),
            Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&dev),
            Conv2dConfig::new([4, 4], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(&dev),
        ] {
            assert!(Geom::of(&m, &x).is_none());
            assert_eq!(
                max_abs_diff(conv2d(&m, x.clone()), m.forward(x.clone())),
                0.0
            );
        }
    }
}
