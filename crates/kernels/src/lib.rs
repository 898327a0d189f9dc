//! CPU kernels for the ops where burn-flex 0.22.1 is far slower than PyTorch on TGC-Net's shapes
//! (Lin et al., 2025, arXiv 2512.21135; measurements in docs/perf-log.md), each with its own burn-autodiff
//! backward:
//! - [`conv2d`]: convolutions as in-place shifted matrix products (burn's weight gradient on flex is a
//!   per-element loop);
//! - [`gelu`]: exact GELU with a vectorisable rational erf (flex calls libm's `erff` per element);
//! - [`layer_norm`], [`group_norm_relu`] and [`softmax`]: one graph node each under
//!   autodiff, where burn differentiates their decompositions (five to nine nodes, a full-size tensor each);
//! - [`adamw`]: the optimizer update in one pass instead of about fifteen;
//! - [`attention`]: scaled dot-product attention as one op (strided heads, own backward);
//! - [`linear`]: x·W + b with the bias as gemm's starting value, strided inputs, its own backward;
//! - [`resize_bilinear`]: two-tap bilinear resizing with its own backward.
//!
//! Each function looks at where its tensors live: burn-flex under autodiff, plain burn-flex, or anything
//! else (wgpu, cuda, other dtypes), which goes to burn's own op. So model code calls these like burn's ops
//! and stays backend-generic.

pub mod adamw;
pub mod attention;
pub mod conv;
pub mod gelu;
pub mod linear;
pub mod norm;
pub mod resize;
pub mod simd;
pub mod softmax;
pub mod threads;

pub use adamw::{AdamWStep, adamw};
pub use attention::attention;
pub use conv::conv2d;
pub use gelu::gelu;
pub use linear::linear;
pub use norm::{group_norm_relu, layer_norm};
pub use resize::resize_bilinear;
pub use softmax::softmax;
pub use threads::on_pool;

use burn::tensor::DType;
use burn_autodiff::Autodiff;
use burn_backend::BackendTypes;
use burn_flex::{Flex, FlexTensor, Layout};

/// A float tensor of burn-flex under burn-autodiff (the training device `Device::flex().autodiff()`).
pub(crate) type AdTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// A contiguous copy of `t` (the tensor itself when it already is one).
pub(crate) fn dense(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// The elements of a contiguous f32 tensor, checked against the length the kernels will index with: the
/// gemm calls read through raw pointers, so a wrong length must stop here.
pub(crate) fn f32s<'a>(t: &'a FlexTensor, len: usize, what: &str) -> &'a [f32] {
    match t.as_slice::<f32>() {
        Some(s) if s.len() == len => s,
        other => panic!(
            "tgcnet-kernels: {what} has {:?} f32 elements, expected {len}",
            other.map(<[f32]>::len)
        ),
    }
}

/// A contiguous f32 flex tensor of `shape` holding `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        burn_std::Bytes::from_elems(data),
        Layout::contiguous(burn_std::Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// `t` itself when no stride is negative, else a contiguous copy (kernels index through strides as
/// `usize`; only a flipped view has negative ones).
pub(crate) fn nonneg(t: &FlexTensor) -> FlexTensor {
    if t.layout().strides().iter().all(|&s| s >= 0) {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// A 4-D operand read in place (f32 values or mask bytes): its buffer, start offset and strides,
/// checked once so that every index the kernels form lies inside the buffer.
pub(crate) struct View4<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) offset: usize,
    pub(crate) strides: [usize; 4],
}

impl<'a, T> View4<'a, T> {
    /// `t` must have non-negative strides ([`nonneg`]); `data` is its storage.
    pub(crate) fn new(t: &'a FlexTensor, data: &'a [T], what: &str) -> Self {
        let layout = t.layout();
        let dims = layout.shape();
        assert!(dims.num_dims() == 4, "tgcnet-kernels: {what} must be 4-D");
        let s = layout.strides();
        assert!(
            s.iter().all(|&x| x >= 0),
            "tgcnet-kernels: {what} has negative strides"
        );
        let strides = [s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize];
        let last = (0..4).map(|i| (dims[i] - 1) * strides[i]).sum::<usize>();
        assert!(
            layout.start_offset() + last < data.len(),
            "tgcnet-kernels: {what}'s layout reaches past its buffer"
        );
        Self {
            data,
            offset: layout.start_offset(),
            strides,
        }
    }

    /// Index of element (a, b, i, 0).
    pub(crate) fn at(&self, a: usize, b: usize, i: usize) -> usize {
        self.offset + a * self.strides[0] + b * self.strides[1] + i * self.strides[2]
    }
}

/// A raw pointer that parallel tasks writing disjoint elements of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: the callers give every task a disjoint set of elements to write, and the buffer outlives the
// tasks (they run inside the caller's rayon call).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send` wrapper rather than its field).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// A strided matrix operand for [`gemm_acc`]: pointer, column stride, row stride (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat(pub(crate) *const f32, pub(crate) isize, pub(crate) isize);

/// dst[m×n] = (dst if `accumulate`) + beta · lhs[m×k] · rhs[k×n], dst with column stride 1 and row stride `dst_rs`;
/// on all threads when `threads`, else on the calling one (the caller already splits the work).
///
/// # Safety
/// Every element the shapes and strides address must lie inside its allocation, and dst must not overlap
/// lhs or rhs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    threads: bool,
) {
    let parallelism = if threads {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded to the caller (see above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use rayon::prelude::*;

    /// Runs `run` once, then seven times beside other parallel work, so that the pool splits `run`'s
    /// tasks differently each time, and demands bit-identical results (a sum grouped as the work was
    /// split would change its last bits).
    pub(crate) fn assert_repeats_bit_for_bit(run: impl Fn() -> Vec<f32> + Sync, what: &str) {
        let noise = |k: u64| {
            (0..200_000u64)
                .into_par_iter()
                .map(|i| (i * k) % 7)
                .sum::<u64>()
        };
        let first = run();
        for k in 1..8 {
            let (again, _) = rayon::join(&run, || noise(k));
            assert!(again == first, "{what} changed between identical runs");
        }
    }
}
