//! Test helpers: random tensors, parameter perturbation and finite-difference gradient checks.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

pub fn rand<const D: usize>(shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), dev)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

pub fn scalar(t: Tensor<1>) -> f32 {
    values(t)[0]
}

struct Perturb {
    std: f64,
}

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = param.id;
        let t = param.val();
        let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, self.std), &t.device());
        let new = (t + noise).detach();
        param.transform_for_load(new, id)
    }
}

/// Adds N(0, std²) noise to every float parameter, so that zero-initialised gates and projections are
/// open when a gradient check runs through them.
pub fn perturb_params<M: Module>(m: M, std: f64) -> M {
    m.map(&mut Perturb { std })
}

/// Compares the autodiff gradient of the scalar `f(x)` with central differences at the entries of `x` with
/// the largest gradients and at a few spread-out entries. `f` must be deterministic.
pub fn check_grad<const D: usize>(
    name: &str,
    f: &dyn Fn(Tensor<D>) -> Tensor<1>,
    x: Tensor<D>,
    eps: f32,
) {
    let dev = x.device();
    let shape = x.shape();
    let leaf = x.clone().detach().require_grad();
    let y = f(leaf.clone());
    let f0 = scalar(y.clone());
    let grads = y.backward();
    let g = values(leaf.grad(&grads).expect("input gradient"));
    let data = values(x);
    let n = data.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    let mut idx: Vec<usize> = order.iter().take(4).copied().collect();
    idx.extend((1..=4).map(|k| (k * 7919 * n / 5 + k) % n));
    idx.sort_unstable();
    idx.dedup();
    let gmax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(gmax > 0.0, "{name}: all gradients are zero");
    let eval = |i: usize, d: f32| {
        let mut v = data.clone();
        v[i] += d;
        scalar(f(Tensor::from_data(
            TensorData::new(v, shape.clone()),
            &dev,
        )))
    };
    for &i in &idx {
        let fd = (eval(i, eps) - eval(i, -eps)) / (2.0 * eps);
        let ad = g[i];
        // f32: the error of a central difference is about (rounding error of f)/eps.
        let tol = 0.05 * ad.abs().max(fd.abs()) + 0.01 * gmax + 2e-6 * f0.abs().max(1.0) / eps;
        assert!(
            (ad - fd).abs() <= tol,
            "{name}: entry {i}: autodiff {ad} vs finite difference {fd} (tolerance {tol}, max |grad| {gmax}, f {f0})"
        );
    }
}
