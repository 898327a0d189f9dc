//! Times single ops at the small preset's shapes on the default (flex) device, forward and forward+backward,
//! for comparison with `scripts/reference/op_bench.py` (the same ops in PyTorch).
//!   cargo run --release -p tgcnet-model --example op_bench [FILTER]

use std::time::Instant;

use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, LayerNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Tensor};
use tgcnet_model::blocks::resize;

fn rnd<const D: usize>(shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), dev)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median ms of `f` over `reps` runs after 2 warm-ups.
fn time(reps: usize, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn report(name: &str, filter: &str, fwd: &mut dyn FnMut(), bwd: &mut dyn FnMut()) {
    if !name.contains(filter) {
        return;
    }
    let f = time(7, fwd);
    let b = time(5, bwd);
    println!("{name:<44} fwd {f:8.2} ms   fwd+bwd {b:8.2} ms");
}

fn main() {
    // As the tgcnet binary runs: on a pool thread (tgcnet_kernels::threads).
    tgcnet_kernels::on_pool(run);
}

fn run() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    if filter == "parts" {
        return parts();
    }
    let dev = Device::flex();
    let ad = dev.clone().autodiff();
    // Batch size of the conv rows (BATCH=4 is the bench's training batch).
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1);

    // conv3x3 (no bias) as in ConvNormAct: (c_in, c_out, size in, stride)
    let convs = [
        (3, 16, 224, 2),
        (16, 16, 112, 1),
        (16, 32, 112, 2),
        (32, 32, 56, 1),
        (32, 64, 56, 2),
        (64, 64, 28, 1),
        (64, 128, 28, 2),
        (128, 128, 14, 1),
        (192, 64, 28, 1),
        (96, 32, 56, 1),
        (48, 16, 112, 1),
    ];
    for (ci, co, s, st) in convs {
        let name = format!("conv3x3 {ci}->{co} @{s} s{st}");
        let mk = |d: &Device| {
            Conv2dConfig::new([ci, co], [3, 3])
                .with_stride([st, st])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(d)
        };
        let conv = mk(&dev);
        let conv_ad = mk(&ad);
        let x = rnd([batch, ci, s, s], &dev);
        let xa = rnd([batch, ci, s, s], &ad).require_grad();
        report(
            &name,
            &filter,
            &mut || {
                let _ = conv.forward(x.clone()).into_data();
            },
            &mut || {
                let g = conv_ad.forward(xa.clone()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
                let _ = conv_ad.weight.val().grad(&g).map(|t| t.into_data());
            },
        );
        // The same conv through tgcnet's kernels.
        {
            report(
                &format!("{name} fastconv"),
                &filter,
                &mut || {
                    let _ = tgcnet_kernels::conv2d(&conv, x.clone()).into_data();
                },
                &mut || {
                    let g = tgcnet_kernels::conv2d(&conv_ad, xa.clone())
                        .sum()
                        .backward();
                    let _ = xa.grad(&g).map(|t| t.into_data());
                    let _ = conv_ad.weight.val().grad(&g).map(|t| t.into_data());
                },
            );
        }
    }
    // GroupNorm(8) + ReLU
    for (c, s) in [(16, 112), (32, 56), (64, 28), (128, 14)] {
        let name = format!("groupnorm+relu {c} @{s}");
        let gn = GroupNormConfig::new(8, c).init(&dev);
        let gna = GroupNormConfig::new(8, c).init(&ad);
        let x = rnd([1, c, s, s], &dev);
        let xa = rnd([1, c, s, s], &ad).require_grad();
        report(
            &name,
            &filter,
            &mut || {
                let _ = relu(gn.forward(x.clone())).into_data();
            },
            &mut || {
                let g = relu(gna.forward(xa.clone())).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
    }
    // bilinear resize
    for (c, from, to) in [
        (128, 14, 28),
        (64, 28, 56),
        (32, 56, 112),
        (1, 112, 224),
        (64, 14, 28),
    ] {
        let name = format!("bilinear {c} {from}->{to}");
        let opts = || {
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([to, to])
        };
        let x = rnd([1, c, from, from], &dev);
        let xa = rnd([1, c, from, from], &ad).require_grad();
        report(
            &name,
            &filter,
            &mut || {
                let _ = interpolate(x.clone(), opts()).into_data();
            },
            &mut || {
                let g = interpolate(xa.clone(), opts()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        report(
            &format!("{name} resize"),
            &filter,
            &mut || {
                let _ = resize(x.clone(), [to, to]).into_data();
            },
            &mut || {
                let g = resize(xa.clone(), [to, to]).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
    }
    // ViT pieces: L=197, D=192, heads 3, MLP 768.
    let (l, d, h) = (197, 192, 3);
    {
        let lin = LinearConfig::new(d, 768).init(&dev);
        let lina = LinearConfig::new(d, 768).init(&ad);
        let x = rnd([1, l, d], &dev);
        let xa = rnd([1, l, d], &ad).require_grad();
        report(
            "linear 197x192 -> 768",
            &filter,
            &mut || {
                let _ = lin.forward(x.clone()).into_data();
            },
            &mut || {
                let g = lina.forward(xa.clone()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        let x = rnd([1, l, 768], &dev);
        let xa = rnd([1, l, 768], &ad).require_grad();
        report(
            "gelu 197x768",
            &filter,
            &mut || {
                let _ = gelu(x.clone()).into_data();
            },
            &mut || {
                let g = gelu(xa.clone()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        report(
            "gelu 197x768 tgcnet-kernels",
            &filter,
            &mut || {
                let _ = tgcnet_kernels::gelu(x.clone()).into_data();
            },
            &mut || {
                let g = tgcnet_kernels::gelu(xa.clone()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        let ln = LayerNormConfig::new(d).init(&dev);
        let lna = LayerNormConfig::new(d).init(&ad);
        let x = rnd([1, l, d], &dev);
        let xa = rnd([1, l, d], &ad).require_grad();
        report(
            "layernorm 197x192",
            &filter,
            &mut || {
                let _ = ln.forward(x.clone()).into_data();
            },
            &mut || {
                let g = lna.forward(xa.clone()).sum().backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        let opts = burn::tensor::ops::AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let q = rnd([1, h, l, d / h], &dev);
        let qa = rnd([1, h, l, d / h], &ad).require_grad();
        report(
            "attention fused 1x3x197x64",
            &filter,
            &mut || {
                let _ = burn::tensor::module::attention(
                    q.clone(),
                    q.clone(),
                    q.clone(),
                    None,
                    None,
                    opts,
                )
                .into_data();
            },
            &mut || {
                let g = burn::tensor::module::attention(
                    qa.clone(),
                    qa.clone(),
                    qa.clone(),
                    None,
                    None,
                    opts,
                )
                .sum()
                .backward();
                let _ = qa.grad(&g).map(|t| t.into_data());
            },
        );
        let naive = |q: Tensor<4>| {
            let s = q.clone().matmul(q.clone().swap_dims(2, 3)) * (1.0 / 8.0);
            softmax(s, 3).matmul(q)
        };
        report(
            "attention matmul+softmax 1x3x197x64",
            &filter,
            &mut || {
                let _ = naive(q.clone()).into_data();
            },
            &mut || {
                let g = naive(qa.clone()).sum().backward();
                let _ = qa.grad(&g).map(|t| t.into_data());
            },
        );
        // A full ViT block's worth of work once (the small tower has 6).
        let layer = tgcnet_clip::nn::ClipEncoder::new(
            d,
            1,
            h,
            768,
            tgcnet_clip::Activation::Gelu,
            1e-5,
            &dev,
        );
        let layera = tgcnet_clip::nn::ClipEncoder::new(
            d,
            1,
            h,
            768,
            tgcnet_clip::Activation::Gelu,
            1e-5,
            &ad,
        );
        let x = rnd([1, l, d], &dev);
        let xa = rnd([1, l, d], &ad).require_grad();
        report(
            "vit block 197x192",
            &filter,
            &mut || {
                let _ = layer.forward(x.clone(), false, &[], None).last.into_data();
            },
            &mut || {
                let g = layera
                    .forward(xa.clone(), false, &[], None)
                    .last
                    .sum()
                    .backward();
                let _ = xa.grad(&g).map(|t| t.into_data());
            },
        );
        let _ = layer.num_params();
    }
}

/// Times single tensor operations (pad, slice, narrow, …) one by one (`op_bench parts`).
fn parts() {
    let dev = Device::flex();
    let (b, c, h, w) = (1, 48, 112, 112);
    let x = rnd([b, c, h, w], &dev);
    let t = |name: &str, f: &mut dyn FnMut()| println!("{name:<40} {:8.2} ms", time(7, f));
    t("pad", &mut || {
        let _ = x
            .clone()
            .pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0))
            .into_data();
    });
    let xp = x
        .clone()
        .pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0));
    let xp6 = xp.clone().reshape([b, c, h + 2, 1, w + 2, 1]);
    t("slice6+reshape x1", &mut || {
        let _ = xp6
            .clone()
            .slice([0..b, 0..c, 1..1 + h, 0..1, 1..1 + w, 0..1])
            .reshape([b, c, 1, h * w])
            .into_data();
    });
    t("narrow4+reshape x1", &mut || {
        let _ = xp
            .clone()
            .narrow(2, 1, h)
            .narrow(3, 1, w)
            .reshape([b, c, 1, h * w])
            .into_data();
    });
    t("x*0.75 (mul scalar)", &mut || {
        let _ = (x.clone() * 0.75).into_data();
    });
    t("x+x", &mut || {
        let _ = (x.clone() + x.clone()).into_data();
    });
    let taps: Vec<Tensor<4>> = (0..9).map(|_| rnd([b, c, 1, h * w], &dev)).collect();
    t("cat 9 contiguous", &mut || {
        let _ = Tensor::cat(taps.clone(), 2).into_data();
    });
    let cols = rnd([b, c * 9, h * w], &dev);
    let wm = rnd([1, 16, c * 9], &dev);
    t("matmul [1,16,432]x[1,432,12544]", &mut || {
        let _ = wm.clone().matmul(cols.clone()).into_data();
    });
    let wm2 = rnd([16, c * 9], &dev);
    let cols2 = rnd([c * 9, h * w], &dev);
    t("matmul 2d", &mut || {
        let _ = wm2.clone().matmul(cols2.clone()).into_data();
    });
    let g = rnd([16, h * w], &dev);
    t("matmul g @ cols^T (wgrad)", &mut || {
        let _ = g.clone().matmul(cols2.clone().swap_dims(0, 1)).into_data();
    });
    t("matmul W^T @ g (xgrad)", &mut || {
        let _ = wm2.clone().swap_dims(0, 1).matmul(g.clone()).into_data();
    });
    let ad = dev.clone().autodiff();
    let xa = rnd([b, c, h, w], &ad);
    let wa = rnd([16, c, 3, 3], &ad);
    let xg = xa.clone().require_grad();
    let wg = wa.clone().require_grad();
    let opts = burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    t("flex conv bwd, weight grad only", &mut || {
        let gr = burn::tensor::module::conv2d(xa.clone(), wg.clone(), None, opts.clone())
            .sum()
            .backward();
        let _ = wg.grad(&gr).map(|t| t.into_data());
    });
    t("flex conv bwd, x grad only", &mut || {
        let gr = burn::tensor::module::conv2d(xg.clone(), wa.clone(), None, opts.clone())
            .sum()
            .backward();
        let _ = xg.grad(&gr).map(|t| t.into_data());
    });
}
