//! AdamW (Loshchilov & Hutter, 2019) with global-norm gradient clipping and a warm-up + cosine schedule.
//!
//! Written here rather than taken from burn-optim so that its state (first and second moments) is keyed
//! by parameter path and can be stored in our safetensors checkpoints, making `--resume` exact.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Device, Tensor, TensorData};
use tgcnet_io::HostTensor;
use tgcnet_kernels::{AdamWStep, adamw};

use crate::config::TrainConfig;

/// Learning rate at optimizer step `step` (0-based) of `total`: linear warm-up, then cosine to `min_lr`.
pub fn lr_at(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warm = cfg.warmup_steps.min(total.saturating_sub(1));
    if step < warm {
        return cfg.lr * (step + 1) as f64 / warm as f64;
    }
    let span = total.saturating_sub(warm).max(1) as f64;
    let t = ((step - warm) as f64 / span).min(1.0);
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Moments of one parameter, as plain (non-autodiff) tensors.
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// AdamW with global-norm gradient clipping; its moments are keyed by parameter path so that they can be
/// checkpointed and restored exactly.
pub struct AdamW {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    clip: f64,
    /// Optimizer steps taken.
    pub step: usize,
    state: HashMap<String, Moments>,
}

struct PathStack(Vec<String>);

impl PathStack {
    fn key(&self) -> String {
        self.0.join(".")
    }
}

struct NormVisitor<'a> {
    grads: &'a Gradients,
    sq: Vec<Tensor<1>>,
}

impl ModuleVisitor for NormVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.sq.push(g.powi_scalar(2).sum());
        }
    }
}

struct Stepper<'a> {
    opt: &'a mut AdamW,
    grads: &'a Gradients,
    lr: f64,
    scale: f64,
    path: PathStack,
}

impl ModuleMapper for Stepper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.key();
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = tensor.grad(self.grads) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.dims();
        let n: usize = shape.iter().product();
        let p = tensor.inner().reshape([n]);
        let o = &mut *self.opt;
        let st = o.state.remove(&key).unwrap_or_else(|| Moments {
            m: p.zeros_like(),
            v: p.zeros_like(),
        });
        let step = AdamWStep {
            lr: self.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
            t: (o.step + 1) as i32,
            grad_scale: self.scale,
        };
        let (new, m, v) = adamw(p, grad.reshape([n]), st.m, st.v, &step);
        let new = new.reshape(shape);
        o.state.insert(key, Moments { m, v });
        let new = Tensor::from_inner(new).require_grad();
        Param::from_mapped_value(id, new, mapper)
    }
}

impl AdamW {
    /// A fresh optimiser (no moments, step 0) with `cfg`'s hyperparameters.
    pub fn new(cfg: &TrainConfig) -> Self {
        Self {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            clip: cfg.grad_clip,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// Global L2 norm of the gradients of `module`'s parameters.
    pub fn grad_norm<M: Module>(module: &M, grads: &Gradients) -> f64 {
        let mut v = NormVisitor {
            grads,
            sq: Vec::new(),
        };
        module.visit(&mut v);
        if v.sq.is_empty() {
            return 0.0;
        }
        let total = Tensor::cat(v.sq, 0).sum();
        total.into_scalar::<f32>().sqrt() as f64
    }

    /// One update of every parameter that has a gradient; returns the gradient norm before clipping.
    pub fn step<M: Module>(&mut self, module: M, grads: &Gradients, lr: f64) -> (M, f64) {
        let norm = Self::grad_norm(&module, grads);
        let scale = if self.clip > 0.0 && norm > self.clip {
            self.clip / (norm + 1e-6)
        } else {
            1.0
        };
        let mut s = Stepper {
            opt: self,
            grads,
            lr,
            scale,
            path: PathStack(Vec::new()),
        };
        let module = module.map(&mut s);
        self.step += 1;
        (module, norm)
    }

    /// Moments by key (`m.{param}`, `v.{param}`), for checkpoints.
    pub fn state(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        for (k, s) in &self.state {
            for (prefix, t) in [("m", &s.m), ("v", &s.v)] {
                let n = t.dims()[0];
                let data = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default();
                out.insert(format!("{prefix}.{k}"), HostTensor::new(vec![n], data));
            }
        }
        out
    }

    /// Restores moments written by [`AdamW::state`].
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, HostTensor>,
        step: usize,
        device: &Device,
    ) {
        self.step = step;
        self.state.clear();
        for (k, m) in tensors {
            let Some(key) = k.strip_prefix("m.") else {
                continue;
            };
            let Some(v) = tensors.get(&format!("v.{key}")) else {
                continue;
            };
            // Plain tensors, as the update makes them (the training device is an autodiff one).
            let t = |h: &HostTensor| {
                Tensor::<1>::from_data(TensorData::new(h.data.clone(), [h.data.len()]), device)
                    .inner()
            };
            self.state
                .insert(key.to_string(), Moments { m: t(m), v: t(v) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let cfg = TrainConfig {
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 10,
            ..TrainConfig::default()
        };
        assert!((lr_at(&cfg, 0, 100) - 1e-4).abs() < 1e-12);
        assert!((lr_at(&cfg, 9, 100) - 1e-3).abs() < 1e-12);
        assert!(lr_at(&cfg, 50, 100) < 1e-3 && lr_at(&cfg, 50, 100) > 1e-5);
        assert!((lr_at(&cfg, 100, 100) - 1e-5).abs() < 1e-9);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // On the first step Adam's update is lr·sign(g) (m̂ = g, v̂ = g²) plus decoupled weight decay.
        let dev = Device::flex().autodiff();
        #[derive(burn::module::Module, Debug)]
        struct P {
            w: Param<Tensor<1>>,
        }
        let p = P {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, -2.0, 3.0], [3]),
                &dev,
            )),
        };
        let loss = (p.w.val()
            * Tensor::from_data(TensorData::new(vec![2.0f32, -1.0, 0.5], [3]), &dev))
        .sum();
        let grads = loss.backward();
        let cfg = TrainConfig {
            weight_decay: 0.1,
            grad_clip: 0.0,
            eps: 0.0,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::new(&cfg);
        let (p, norm) = opt.step(p, &grads, 0.01);
        assert!((norm - (4.0f64 + 1.0 + 0.25).sqrt()).abs() < 1e-5);
        let w =
            p.w.val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("vec");
        let want = [
            1.0 - 0.01 * (1.0 + 0.1 * 1.0),
            -2.0 - 0.01 * (-1.0 + 0.1 * -2.0),
            3.0 - 0.01 * (1.0 + 0.1 * 3.0),
        ];
        for (a, b) in w.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(opt.state().len(), 2);
    }
}
