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
/// the largest gradients and at spread-out entries. `f` must be deterministic.
///
/// ReLU and GroupNorm over few values make `f` piecewise smooth: a step that crosses a kink gives a central
/// difference that is right for neither side. With one kink inside the step, the central difference misses
/// the true slope by half the gap between the forward and backward one-sided differences, so an entry
/// whose disagreement is not more than twice that gap (several kinks) is retried with a smaller step and, if still kinked,
/// skipped. A wrong gradient gives one-sided differences that agree with each other and not with autodiff,
/// so it is still caught. At least half of the candidate entries must be checked.
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
    let grads = y.backward();
    let g = values(leaf.grad(&grads).expect("input gradient"));
    let data = values(x);
    let n = data.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    let mut idx: Vec<usize> = order.iter().take(6).copied().collect();
    idx.extend((1..=6).map(|k| (k * 7919 * n / 7 + k) % n));
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
    let f0 = eval(0, 0.0);
    let mut checked = 0;
    for &i in &idx {
        let ad = g[i];
        for step in [eps, eps / 4.0] {
            let (fp, fm) = (eval(i, step), eval(i, -step));
            let fd = (fp - fm) / (2.0 * step);
            let (fwd, bwd) = ((fp - f0) / step, (f0 - fm) / step);
            // f32: the error of a difference quotient is about (rounding error of f)/step.
            let noise = 4e-6 * f0.abs().max(fp.abs()).max(1.0) / step;
            let tol = 0.05 * ad.abs().max(fd.abs()) + 0.01 * gmax + noise;
            let err = (ad - fd).abs();
            if err <= tol {
                checked += 1;
                break;
            }
            assert!(
                (fwd - bwd).abs() >= 0.5 * err,
                "{name}: entry {i}: autodiff {ad} vs finite difference {fd} at step {step} (one-sided {fwd} / {bwd}, tolerance {tol}, max |grad| {gmax}, f {f0})"
            );
        }
    }
    assert!(
        2 * checked >= idx.len(),
        "{name}: only {checked} of {} entries were smooth enough to check",
        idx.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checker itself must catch a wrong gradient: `x * detach(x)` has autodiff gradient `x`, while the
    /// function's slope is `2x`.
    #[test]
    #[should_panic(expected = "autodiff")]
    fn a_wrong_gradient_is_caught() {
        let dev = Device::flex().autodiff();
        let f = |x: Tensor<2>| (x.clone() * x.detach()).sum();
        check_grad("x*detach(x)", &f, rand([4, 4], &dev) + 2.0, 1e-2);
    }

    #[test]
    fn a_right_gradient_passes() {
        let dev = Device::flex().autodiff();
        let f = |x: Tensor<2>| (x.clone() * x).sum();
        check_grad("x*x", &f, rand([4, 4], &dev), 1e-2);
    }
}
