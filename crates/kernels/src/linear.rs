//! Linear layers, `y = x·W + b`, on burn-flex as one op with its own backward: the projections and MLPs
//! of the CLIP towers, DATE, VLCM and the SSE adapters of TGC-Net (Lin et al., 2025, arXiv 2512.21135).
//!
//! Why: burn-flex allocates every matmul output through `FlexTensor::empty`, which zero-fills a byte
//! vector and then copies it into a 16-byte-aligned buffer, so the product's output is written three
//! times before gemm writes it; the bias is a second op over the output; under autodiff the weight
//! gradient of a [B, N, K] input is a batched product [B, K, N]·[B, N, M] followed by a sum over B.
//! Here the output starts as the bias rows and gemm accumulates into it, x is read in place through its
//! strides (a [B, h·w, C] token view of a feature map included), and the backward is
//! dx = g·Wᵀ, dW = Σ_b x_bᵀ·g_b (one product when the rows of all b are evenly spaced), db = Σ rows of g.
//! Other backends and dtypes use `Linear::forward`.

use burn::nn::Linear;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};

use crate::{AdTensor, Mat, dense, f32s, gemm_acc, tensor};

/// `lin.forward(x)`: x·W + b over the last axis.
/// x: [..., K] → [..., M], with W: [K, M] and b: [M]
pub fn linear<const D: usize>(lin: &Linear, x: Tensor<D>) -> Tensor<D> {
    let w = lin.weight.val();
    let [k, m] = w.dims();
    let dims = x.dims();
    let fits = D >= 2
        && dims[D - 1] == k
        && dims.iter().all(|&n| n > 0)
        && m > 0
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && lin
            .bias
            .as_ref()
            .is_none_or(|b| b.val().dtype() == DType::F32);
    if !fits {
        return lin.forward(x);
    }
    let out_dims: Vec<usize> = dims[..D - 1].iter().copied().chain([m]).collect();
    if x.clone().try_into_primitive::<Autodiff<Flex>>().is_ok() {
        let has_bias = lin.bias.is_some();
        let b = match &lin.bias {
            Some(b) => b.val(),
            // A constant that needs no gradient; `has_bias` keeps it out of the arithmetic.
            None => Tensor::<1>::zeros([m], &w.device()),
        };
        if let (Ok(xa), Ok(wa), Ok(ba)) = (
            x.clone().try_into_primitive::<Autodiff<Flex>>(),
            w.clone().try_into_primitive::<Autodiff<Flex>>(),
            b.try_into_primitive::<Autodiff<Flex>>(),
        ) {
            let y = tracked(xa, wa, ba, has_bias, &out_dims);
            return Tensor::from_primitive::<Autodiff<Flex>>(y);
        }
    } else if let (Ok(xf), Ok(wf)) = (
        x.clone().try_into_primitive::<Flex>(),
        w.try_into_primitive::<Flex>(),
    ) {
        let bf = match &lin.bias {
            Some(b) => match b.val().try_into_primitive::<Flex>() {
                Ok(bf) => Some(bf),
                Err(_) => return lin.forward(x),
            },
            None => None,
        };
        return Tensor::from_primitive::<Flex>(forward(&xf, &wf, bf.as_ref(), &out_dims));
    }
    lin.forward(x)
}

/// A [..., N, K] tensor as L = Π(leading dims) matrices [N × K] read in place: matrix l starts at
/// `offset + l·l_stride`, rows `rs` apart, columns `cs` apart.
#[derive(Debug, Clone, Copy)]
struct Rows {
    offset: usize,
    l: usize,
    n: usize,
    k: usize,
    l_stride: usize,
    rs: usize,
    cs: usize,
}

impl Rows {
    /// The view of `t`, or None when its leading dims do not collapse into one stride or a stride is
    /// negative (the caller then makes it contiguous).
    fn of(t: &FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let dims = layout.shape();
        let nd = dims.num_dims();
        let s = layout.strides();
        if nd < 2 || s.iter().any(|&x| x < 0) {
            return None;
        }
        let s: Vec<usize> = s.iter().map(|&x| x as usize).collect();
        // The leading dims must be one evenly strided axis: stride[i] = stride[i+1]·dim[i+1], ignoring
        // dims of size 1.
        let lead: Vec<usize> = (0..nd - 2).filter(|&i| dims[i] > 1).collect();
        for w in lead.windows(2) {
            if s[w[0]] != s[w[1]] * dims[w[1]] {
                return None;
            }
        }
        let l = (0..nd - 2).map(|i| dims[i]).product();
        let l_stride = lead.last().map_or(0, |&i| s[i]);
        let view = Self {
            offset: layout.start_offset(),
            l,
            n: dims[nd - 2],
            k: dims[nd - 1],
            l_stride,
            // A single row's stride is arbitrary; the next matrix's first row is what follows it.
            rs: if dims[nd - 2] == 1 {
                l_stride
            } else {
                s[nd - 2]
            },
            cs: s[nd - 1],
        };
        let last = (view.l - 1) * view.l_stride + (view.n - 1) * view.rs + (view.k - 1) * view.cs;
        (view.offset + last < t.storage::<f32>().len()).then_some(view)
    }

    /// All L·N rows as one evenly strided matrix, when the matrices follow each other at that spacing.
    fn merged(&self) -> Option<Self> {
        (self.l == 1 || self.l_stride == self.n * self.rs).then_some(Self {
            l: 1,
            n: self.l * self.n,
            ..*self
        })
    }

    /// Matrix l as a gemm operand ([N × K], or [K × N] with `transposed`).
    fn mat(&self, data: &[f32], l: usize, transposed: bool) -> Mat {
        let p = data[self.offset + l * self.l_stride..].as_ptr();
        if transposed {
            Mat(p, self.rs as isize, self.cs as isize)
        } else {
            Mat(p, self.cs as isize, self.rs as isize)
        }
    }
}

/// t with a [`Rows`] view (a contiguous copy only when its layout has none). t has at least 2 dims.
fn with_rows(t: &FlexTensor) -> (FlexTensor, Rows) {
    if let Some(r) = Rows::of(t) {
        return (t.clone(), r);
    }
    let c = t.to_contiguous();
    let dims = c.layout().shape().to_vec();
    let nd = dims.len();
    let (n, k) = (dims[nd - 2], dims[nd - 1]);
    let r = Rows {
        offset: c.layout().start_offset(),
        l: dims[..nd - 2].iter().product(),
        n,
        k,
        l_stride: n * k,
        rs: k,
        cs: 1,
    };
    (c, r)
}

/// y = x·W (+ b): [L·N, M] written as the bias rows, then accumulated by gemm.
fn forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    out_dims: &[usize],
) -> FlexTensor {
    let (x, xr) = with_rows(x);
    let w = dense(w);
    let m = out_dims[out_dims.len() - 1];
    let ws = f32s(&w, xr.k * m, "linear weight");
    let xs = x.storage::<f32>();
    let rows = xr.l * xr.n;
    let mut y = vec![0.0f32; rows * m];
    if let Some(b) = b {
        let b = dense(b);
        let bs = f32s(&b, m, "linear bias");
        y.chunks_mut(m).for_each(|r| r.copy_from_slice(bs));
    }
    let parts: Vec<(Rows, usize)> = match xr.merged() {
        Some(one) => vec![(one, 0)],
        None => (0..xr.l).map(|l| (xr, l)).collect(),
    };
    for (v, l) in parts {
        // SAFETY: dst is y rows l·N.. (v.n rows of M, inside y); lhs reads matrix l of x, whose extent
        // `Rows::of` checked; rhs is W [K × M], contiguous, K·M elements (f32s checked).
        unsafe {
            gemm_acc(
                v.n,
                m,
                v.k,
                y.as_mut_ptr().add(l * xr.n * m),
                m,
                b.is_some(),
                v.mat(xs, l, false),
                Mat(ws.as_ptr(), 1, m as isize),
                1.0,
                true,
            );
        }
    }
    tensor(y, out_dims)
}

#[derive(Debug)]
struct LinearBackward;

/// x (kept only when W needs a gradient), W (only when x does), whether b is real, and x's dims.
type State = (Option<FlexTensor>, Option<FlexTensor>, bool, Vec<usize>);

impl Backward<Flex, 3> for LinearBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, has_bias, x_dims) = ops.state;
        let (g, gr) = with_rows(&grad);
        let gs = g.storage::<f32>();
        let (k, m) = (x_dims[x_dims.len() - 1], gr.k);
        if let (Some(node), Some(w)) = (node_x, &w) {
            let w = dense(w);
            let ws = f32s(&w, k * m, "linear weight");
            let mut dx = vec![0.0f32; gr.l * gr.n * k];
            let parts: Vec<(Rows, usize)> = match gr.merged() {
                Some(one) => vec![(one, 0)],
                None => (0..gr.l).map(|l| (gr, l)).collect(),
            };
            for (v, l) in parts {
                // SAFETY: dst is dx rows l·N.. [v.n × K], inside dx; lhs is matrix l of g (extent
                // checked by `Rows::of`); rhs is Wᵀ [M × K] read from the contiguous W [K × M].
                unsafe {
                    gemm_acc(
                        v.n,
                        k,
                        m,
                        dx.as_mut_ptr().add(l * gr.n * k),
                        k,
                        false,
                        v.mat(gs, l, false),
                        Mat(ws.as_ptr(), m as isize, 1),
                        1.0,
                        true,
                    );
                }
            }
            grads.register::<Flex>(node.id, tensor(dx, &x_dims));
        }
        if let (Some(node), Some(x)) = (node_w, &x) {
            let (x, xr) = with_rows(x);
            let xs = x.storage::<f32>();
            let mut dw = vec![0.0f32; k * m];
            let parts: Vec<(Rows, Rows, usize)> = match (xr.merged(), gr.merged()) {
                (Some(a), Some(b)) => vec![(a, b, 0)],
                _ => (0..xr.l).map(|l| (xr, gr, l)).collect(),
            };
            for (i, (xv, gv, l)) in parts.into_iter().enumerate() {
                // SAFETY: dst is dW [K × M]; lhs is xᵀ of matrix l [K × N], rhs matrix l of g [N × M],
                // both inside their buffers (`Rows::of`).
                unsafe {
                    gemm_acc(
                        k,
                        m,
                        xv.n,
                        dw.as_mut_ptr(),
                        m,
                        i > 0,
                        xv.mat(xs, l, true),
                        gv.mat(gs, l, false),
                        1.0,
                        true,
                    );
                }
            }
            grads.register::<Flex>(node.id, tensor(dw, &[k, m]));
        }
        if let (Some(node), true) = (node_b, has_bias) {
            let mut db = vec![0.0f32; m];
            for l in 0..gr.l {
                for r in 0..gr.n {
                    let at = gr.offset + l * gr.l_stride + r * gr.rs;
                    if gr.cs == 1 {
                        db.iter_mut()
                            .zip(&gs[at..at + m])
                            .for_each(|(d, &v)| *d += v);
                    } else {
                        for (j, d) in db.iter_mut().enumerate() {
                            *d += gs[at + j * gr.cs];
                        }
                    }
                }
            }
            grads.register::<Flex>(node.id, tensor(db, &[m]));
        }
    }
}

fn tracked(x: AdTensor, w: AdTensor, b: AdTensor, has_bias: bool, out_dims: &[usize]) -> AdTensor {
    let run = |x: &FlexTensor, w: &FlexTensor, b: &FlexTensor| {
        forward(x, w, has_bias.then_some(b), out_dims)
    };
    match LinearBackward
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (xp, wp, bp) = (x.primitive(), w.primitive(), b.primitive());
            let y = run(xp, wp, bp);
            let x_dims = xp.layout().shape().to_vec();
            // A frozen layer (the paper's towers) needs no x for its backward, an input without a
            // gradient no W: keeping only what is used is what keeps peak training memory down.
            let keep_x = w.is_tracked().then(|| xp.clone());
            let keep_w = x.is_tracked().then(|| wp.clone());
            prep.finish((keep_x, keep_w, has_bias, x_dims), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x.primitive(), w.primitive(), b.primitive())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Inputs as the model makes them: contiguous [B, N, K], a token view of a feature map (matrices
    /// transposed in memory), a slice of rows, and 2-D / 4-D ones.
    fn inputs(dev: &Device) -> Vec<Tensor<3>> {
        let r = |s: [usize; 3]| Tensor::<3>::random(s, Distribution::Normal(0.0, 1.0), dev);
        let map = Tensor::<4>::random([2, 6, 3, 4], Distribution::Normal(0.0, 1.0), dev);
        vec![
            r([2, 5, 6]),
            map.reshape([2, 6, 12]).swap_dims(1, 2),
            r([3, 9, 6]).narrow(1, 2, 4),
            r([1, 7, 6]),
        ]
    }

    #[test]
    fn linear_matches_burn_with_and_without_bias() {
        let dev = Device::flex();
        for bias in [true, false] {
            let lin = LinearConfig::new(6, 5).with_bias(bias).init(&dev);
            for x in inputs(&dev) {
                let e = max_diff(linear(&lin, x.clone()), lin.forward(x.clone()));
                assert!(
                    e < 1e-5,
                    "differs by {e} (bias {bias}, dims {:?})",
                    x.dims()
                );
            }
            let x2 = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &dev);
            assert!(max_diff(linear(&lin, x2.clone()), lin.forward(x2)) < 1e-5);
            let x4 = Tensor::<4>::random([2, 3, 4, 6], Distribution::Normal(0.0, 1.0), &dev);
            assert!(max_diff(linear(&lin, x4.clone()), lin.forward(x4)) < 1e-5);
        }
    }

    #[test]
    fn linear_gradients_match_burn() {
        let dev = Device::flex().autodiff();
        for bias in [true, false] {
            let lin = LinearConfig::new(6, 5).with_bias(bias).init(&dev);
            for x in inputs(&dev) {
                let x = x.require_grad();
                let w = Tensor::<3>::random(
                    [x.dims()[0], x.dims()[1], 5],
                    Distribution::Normal(0.0, 1.0),
                    &dev,
                );
                let run = |fast: bool| {
                    let y = if fast {
                        linear(&lin, x.clone())
                    } else {
                        lin.forward(x.clone())
                    };
                    // A strided output gradient too: the loss reads y through a transpose.
                    let g = (y.swap_dims(1, 2) * w.clone().swap_dims(1, 2))
                        .sum()
                        .backward();
                    let gw = lin.weight.grad(&g).unwrap();
                    let gb = lin.bias.as_ref().map(|b| b.grad(&g).unwrap());
                    (x.grad(&g).unwrap(), gw, gb)
                };
                let ((xf, wf, bf), (xs, ws, bs)) = (run(true), run(false));
                let dims = x.dims();
                assert!(max_diff(xf, xs) < 1e-5, "dx (bias {bias}, {dims:?})");
                assert!(max_diff(wf, ws) < 1e-4, "dW (bias {bias}, {dims:?})");
                if let (Some(bf), Some(bs)) = (bf, bs) {
                    assert!(max_diff(bf, bs) < 1e-4, "db ({dims:?})");
                }
            }
        }
    }

    #[test]
    fn a_frozen_layer_passes_the_input_gradient_only() {
        let dev = Device::flex().autodiff();
        let lin = LinearConfig::new(6, 5).init(&dev).no_grad();
        let x = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let g = linear(&lin, x.clone()).sum().backward();
        let gs = lin.forward(x.clone()).sum().backward();
        assert!(lin.weight.grad(&g).is_none());
        assert!(max_diff(x.grad(&g).unwrap(), x.grad(&gs).unwrap()) < 1e-5);
    }
}
