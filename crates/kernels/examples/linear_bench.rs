//! Linear layer forward and backward, `tgcnet_kernels::linear` against burn's `Linear::forward`, at the
//! small preset's shapes (training batch 4): `cargo run --release -p tgcnet-kernels --example linear_bench`.
//! Median of 30 runs each, alternated twice.

use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn main() {
    tgcnet_kernels::on_pool(|| {
        let dev = Device::flex().autodiff();
        for (n, k, m) in [
            (788, 192, 768),
            (788, 768, 192),
            (788, 192, 192),
            (308, 128, 512),
        ] {
            let lin = LinearConfig::new(k, m).init(&dev);
            let x = Tensor::<3>::random([4, n / 4, k], Distribution::Normal(0.0, 1.0), &dev)
                .require_grad();
            for fast in [false, true, false, true] {
                let mut f = vec![];
                let mut fb = vec![];
                for _ in 0..30 {
                    let t0 = Instant::now();
                    let y = if fast {
                        tgcnet_kernels::linear(&lin, x.clone())
                    } else {
                        lin.forward(x.clone())
                    };
                    let s = y.sum();
                    let _ = s.clone().into_scalar::<f32>();
                    let t1 = Instant::now();
                    let g = s.backward();
                    let _ = lin.weight.grad(&g).unwrap().sum().into_scalar::<f32>();
                    let _ = x.grad(&g).unwrap().sum().into_scalar::<f32>();
                    f.push(t1.duration_since(t0).as_secs_f64() * 1e3);
                    fb.push(t1.elapsed().as_secs_f64() * 1e3);
                }
                f.sort_by(f64::total_cmp);
                fb.sort_by(f64::total_cmp);
                println!(
                    "{n}x{k}->{m} fast={fast}: fwd {:.3} bwd {:.3} ms",
                    f[15], fb[15]
                );
            }
        }
    });
}
