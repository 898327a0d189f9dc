//! Multi-head cross-attention used by DATE (report tokens ← knowledge passages) and VLCM (pixels ↔ text) of
//! TGC-Net (Lin et al., 2025, arXiv 2512.21135). Plain scaled dot-product attention (Vaswani et al., 2017)
//! through `burn::tensor::module::attention`, whose fallback gives fully masked rows a zero output instead
//! of NaN.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};
use tgcnet_kernels::{attention, linear};

/// Multi-head cross-attention: queries from one sequence, keys and values from another.
#[derive(Module, Debug)]
pub struct CrossAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub heads: usize,
}

impl CrossAttention {
    /// Queries of width `d_query`, keys/values of width `d_context`, attention width `dim` (a multiple of
    /// `heads`); the output has the queries' width.
    pub fn new(
        d_query: usize,
        d_context: usize,
        dim: usize,
        heads: usize,
        device: &Device,
    ) -> Self {
        Self {
            q_proj: LinearConfig::new(d_query, dim).init(device),
            k_proj: LinearConfig::new(d_context, dim).init(device),
            v_proj: LinearConfig::new(d_context, dim).init(device),
            out_proj: LinearConfig::new(dim, d_query).init(device),
            heads,
        }
    }

    /// x: [B, Nq, Dq]; context: [B, Nk, Dc]; ignore: [B, Nk], true for keys a query must not see.
    /// Returns [B, Nq, Dq]. A query row whose keys are all ignored gets `out_proj`'s bias (zero attention).
    pub fn forward(
        &self,
        x: Tensor<3>,
        context: Tensor<3>,
        ignore: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [b, nq, _] = x.dims();
        let nk = context.dims()[1];
        let h = self.heads;
        let q = linear(&self.q_proj, x);
        let dim = q.dims()[2];
        let split = |t: Tensor<3>, n: usize| t.reshape([b, n, h, dim / h]).swap_dims(1, 2);
        let q = split(q, nq);
        let k = split(linear(&self.k_proj, context.clone()), nk);
        let v = split(linear(&self.v_proj, context), nk);
        let mask = ignore.map(|m| m.reshape([b, 1, 1, nk]).expand([b, h, nq, nk]));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let o = attention(q, k, v, mask, options);
        linear(&self.out_proj, o.swap_dims(1, 2).reshape([b, nq, dim]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand, values};
    use burn::tensor::TensorData;

    #[test]
    fn masked_keys_do_not_matter_and_gradients_match() {
        let dev = Device::flex().autodiff();
        let att = CrossAttention::new(6, 4, 8, 2, &dev);
        let x = rand([2, 3, 6], &dev);
        let ctx = rand([2, 5, 4], &dev);
        let ignore = Tensor::<2, Bool>::from_data(
            TensorData::new(
                vec![
                    false, false, true, true, true, false, true, false, true, true,
                ],
                [2, 5],
            ),
            &dev,
        );
        let y1 = att.forward(x.clone(), ctx.clone(), Some(ignore.clone()));
        // Changing ignored keys changes nothing.
        let keep = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1., 0., 0., 0., 1., 0., 1., 0., 0.], [2, 5]),
            &dev,
        )
        .reshape([2, 5, 1]);
        let ctx2 = ctx.clone() * keep.clone() + rand([2, 5, 4], &dev) * (keep * -1.0 + 1.0);
        let y2 = att.forward(x.clone(), ctx2, Some(ignore.clone()));
        let diff = values((y1 - y2).abs().max())[0];
        assert!(diff < 1e-5, "{diff}");
        let w = rand([2, 3, 6], &dev);
        let f = |c: Tensor<3>| (att.forward(x.clone(), c, Some(ignore.clone())) * w.clone()).sum();
        check_grad("cross-attention (context)", &f, ctx, 1e-2);
    }
}
