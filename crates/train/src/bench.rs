//! `tgcnet bench`: inference latency (batch 1), inference throughput (batch 8), training step time (batch 4:
//! forward, loss, backward, AdamW) and peak memory of a TGC-Net configuration, on random weights and
//! synthetic inputs with QaTa-style captions. Each measurement is warmed up, then the median of repeated
//! runs. `scripts/reference/bench_ref.py` measures the same things for the PyTorch reference.
//!
//! Peak memory is the process's peak resident set (Linux `VmHWM`), reset before each phase through
//! `/proc/self/clear_refs` where the kernel allows it, so each phase reports its own peak. On a GPU device
//! it is host memory only.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;
use tgcnet_model::{CaptionEncoder, Stage, TgcLoss, TgcNet, TgcNetConfig};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;

/// Captions in the style of QaTa-COV19's, so that DATE matches a realistic number of passages.
const CAPTIONS: [&str; 8] = [
    "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, lower left lung.",
    "Bilateral pulmonary infection, three infected areas, upper left lung, middle left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, middle right lung.",
    "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
    "Unilateral pulmonary infection, two infected areas, upper right lung and middle right lung.",
    "Bilateral pulmonary infection, four infected areas, upper left lung, lower left lung, upper right lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, upper left lung.",
];

/// How `tgcnet bench` measures: warm-up and repeat counts, and the batch size of each measurement.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Untimed runs before each measurement (kernel selection, allocator and cache warm-up).
    pub warmup: usize,
    /// Timed runs per measurement; the report gives their median, minimum and maximum.
    pub repeats: usize,
    /// Batch size of the inference latency measurement.
    pub latency_batch: usize,
    /// Batch size of the inference throughput measurement.
    pub throughput_batch: usize,
    /// Batch size of the training step measurement.
    pub train_batch: usize,
    /// Skip the training step (e.g. where a backend lacks autodiff memory for it).
    pub skip_train: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            warmup: 3,
            repeats: 10,
            latency_batch: 1,
            throughput_batch: 8,
            train_batch: 4,
            skip_train: false,
        }
    }
}

/// Median, fastest and slowest of repeated runs, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Median of the runs.
    pub median_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Number of timed runs.
    pub runs: usize,
}

impl Timing {
    fn from_ms(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            ms[n / 2]
        } else {
            0.5 * (ms[n / 2 - 1] + ms[n / 2])
        };
        Self {
            median_ms: median,
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
            runs: n,
        }
    }
}

/// The median time of one named stage (forward stage or training phase).
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    /// Stage name, as the model's [`Stage`] or the training phase names it.
    pub stage: String,
    /// Median over the timed runs, in milliseconds.
    pub median_ms: f64,
}

/// Everything `tgcnet bench` measured, serialised as its JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Name of the benchmarked configuration (a preset or a config file).
    pub config: String,
    /// The device, as burn prints it.
    pub device: String,
    /// Threads available to the process.
    pub threads: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Parameters of the whole model, frozen ones included.
    pub total_params: usize,
    /// Parameters the optimiser updates.
    pub trainable_params: usize,
    /// Batch size of [`Self::inference_latency`].
    pub latency_batch: usize,
    /// Forward pass time at [`Self::latency_batch`].
    pub inference_latency: Timing,
    /// Median time of each forward stage at the latency batch (the device is synchronised after each).
    pub stages: Vec<StageTime>,
    /// Batch size of [`Self::inference_throughput`].
    pub throughput_batch: usize,
    /// Forward pass time at [`Self::throughput_batch`].
    pub inference_throughput: Timing,
    /// Images per second at the throughput batch (from the median).
    pub images_per_s: f64,
    /// Batch size of [`Self::train_step`].
    pub train_batch: usize,
    /// Time of one whole training step (forward, loss, backward, AdamW); `None` when skipped.
    pub train_step: Option<Timing>,
    /// Median time of each phase of the training step (forward, loss, backward, optimizer).
    pub train_phases: Vec<StageTime>,
    /// Peak resident set during the inference measurements, in MiB (host memory; `None` off Linux).
    pub peak_rss_inference_mb: Option<f64>,
    /// Peak resident set during the training step measurement, in MiB (host memory; `None` off Linux or when skipped).
    pub peak_rss_train_mb: Option<f64>,
}

/// Peak resident set of this process in MiB (Linux), if readable.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak resident set to the current one (Linux ≥ 4.0); false where not allowed.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| TrainError::Device(format!("sync: {e:?}")))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn images(batch: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::random(
        [batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

fn captions(batch: usize) -> Vec<&'static str> {
    (0..batch).map(|i| CAPTIONS[i % CAPTIONS.len()]).collect()
}

/// Runs the benchmark of `cfg` (random weights: `clip.weights` is ignored) on `device`.
pub fn bench(
    name: &str,
    cfg: &TgcNetConfig,
    opts: &BenchOptions,
    device: &Device,
) -> Result<BenchReport> {
    let mut cfg = cfg.clone();
    cfg.clip.weights = None;
    let s = cfg.image_size;
    let encoder = CaptionEncoder::new(&cfg)?;
    device.seed(0);
    let train_dev = device.clone().autodiff();
    let model = TgcNet::new_with(&cfg, &encoder, &train_dev)?;
    let total_params = model.num_params();
    let trainable_params: usize = model
        .trainable_params()
        .values()
        .map(|t| t.data.len())
        .sum();
    let inner = train_dev.clone().inner();
    let eval_model = model.valid();

    reset_peak_rss();
    let (inference_latency, stages) = latency(&eval_model, &encoder, opts, s, &inner)?;
    let inference_throughput = throughput(&eval_model, &encoder, opts, s, &inner)?;
    let images_per_s = opts.throughput_batch as f64 / (inference_throughput.median_ms / 1e3);
    let peak_rss_inference_mb = peak_rss_mb();
    drop(eval_model);

    let (train_step, train_phases, peak_rss_train_mb) = if opts.skip_train {
        (None, Vec::new(), None)
    } else {
        reset_peak_rss();
        let (step, phases) = train_step(model, &encoder, &cfg, opts, &train_dev)?;
        (Some(step), phases, peak_rss_mb())
    };

    Ok(BenchReport {
        config: name.to_string(),
        device: format!("{device:?}"),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        image_size: s,
        total_params,
        trainable_params,
        latency_batch: opts.latency_batch,
        inference_latency,
        stages,
        throughput_batch: opts.throughput_batch,
        inference_throughput,
        images_per_s,
        train_batch: opts.train_batch,
        train_step,
        train_phases,
        peak_rss_inference_mb,
        peak_rss_train_mb,
    })
}

/// Inference at the latency batch, with the time of each stage (the device synchronised between
/// stages, so each stage's time is its own).
fn latency(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    opts: &BenchOptions,
    size: usize,
    device: &Device,
) -> Result<(Timing, Vec<StageTime>)> {
    let text = encoder.encode(&captions(opts.latency_batch), device)?;
    let x = images(opts.latency_batch, size, device);
    let mut total = Vec::new();
    let mut stage_ms: Vec<(Stage, Vec<f64>)> = Vec::new();
    for i in 0..opts.warmup + opts.repeats {
        sync(device)?;
        let t0 = Instant::now();
        let mut last = t0;
        let mut times: Vec<(Stage, f64)> = Vec::new();
        let out = model.forward_probed(x.clone(), &text, &mut |stage| {
            let _ = device.sync();
            times.push((stage, ms_since(last)));
            last = Instant::now();
        });
        let _ = out.logits.into_data();
        let t = ms_since(t0);
        if i >= opts.warmup {
            total.push(t);
            for (stage, ms) in times {
                match stage_ms.iter_mut().find(|(s, _)| *s == stage) {
                    Some((_, v)) => v.push(ms),
                    None => stage_ms.push((stage, vec![ms])),
                }
            }
        }
    }
    let stages = stage_ms
        .into_iter()
        .map(|(stage, v)| StageTime {
            stage: stage.name().to_string(),
            median_ms: Timing::from_ms(v).median_ms,
        })
        .collect();
    Ok((Timing::from_ms(total), stages))
}

/// Inference at the throughput batch.
fn throughput(
    model: &TgcNet,
    encoder: &CaptionEncoder,
    opts: &BenchOptions,
    size: usize,
    device: &Device,
) -> Result<Timing> {
    let text = encoder.encode(&captions(opts.throughput_batch), device)?;
    let x = images(opts.throughput_batch, size, device);
    let mut total = Vec::new();
    for i in 0..opts.warmup + opts.repeats {
        sync(device)?;
        let t0 = Instant::now();
        let out = model.forward(x.clone(), &text);
        let _ = out.logits.into_data();
        if i >= opts.warmup {
            total.push(ms_since(t0));
        }
    }
    Ok(Timing::from_ms(total))
}

/// Training steps (forward, loss, backward, AdamW update) on the autodiff device, with each phase's time.
fn train_step(
    mut model: TgcNet,
    encoder: &CaptionEncoder,
    cfg: &TgcNetConfig,
    opts: &BenchOptions,
    device: &Device,
) -> Result<(Timing, Vec<StageTime>)> {
    let s = cfg.image_size;
    let text = encoder.encode(&captions(opts.train_batch), device)?;
    let x = images(opts.train_batch, s, device);
    let mask = Tensor::<4>::random(
        [opts.train_batch, 1, s, s],
        Distribution::Bernoulli(0.3),
        device,
    );
    let loss_fn = TgcLoss::new(&cfg.loss);
    let mut optim = AdamW::new(&TrainConfig::default());
    let mut total = Vec::new();
    let mut phases: [Vec<f64>; 4] = Default::default();
    for i in 0..opts.warmup + opts.repeats {
        sync(device)?;
        let t0 = Instant::now();
        let out = model.forward(x.clone(), &text);
        // Synchronising between phases costs nothing on the CPU; on a GPU it splits the queue.
        sync(device)?;
        let t1 = Instant::now();
        let loss = loss_fn.forward(out.logits, &out.sim_maps, mask.clone());
        sync(device)?;
        let t2 = Instant::now();
        let grads = loss.total.backward();
        sync(device)?;
        let t3 = Instant::now();
        let (m, _) = optim.step(model, &grads, 1e-4);
        model = m;
        // Asynchronous backends (GPU) queue the update: wait for it to finish.
        sync(device)?;
        if i >= opts.warmup {
            total.push(ms_since(t0));
            for (v, (a, b)) in
                phases
                    .iter_mut()
                    .zip([(t0, t1), (t1, t2), (t2, t3), (t3, Instant::now())])
            {
                v.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    let phases = ["forward", "loss", "backward", "optimizer (clip + AdamW)"]
        .into_iter()
        .zip(phases)
        .map(|(stage, v)| StageTime {
            stage: stage.to_string(),
            median_ms: Timing::from_ms(v).median_ms,
        })
        .collect();
    Ok((Timing::from_ms(total), phases))
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |x: &Timing| {
            format!(
                "{:9.1} ms  (min {:.1}, max {:.1}, {} runs)",
                x.median_ms, x.min_ms, x.max_ms, x.runs
            )
        };
        let mb = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0} MiB"));
        writeln!(
            f,
            "{} at {}px on {} ({} threads): {} parameters, {} trainable",
            self.config,
            self.image_size,
            self.device,
            self.threads,
            self.total_params,
            self.trainable_params
        )?;
        writeln!(
            f,
            "inference, batch {:<2}     {}",
            self.latency_batch,
            t(&self.inference_latency)
        )?;
        for s in &self.stages {
            writeln!(f, "  {:<32} {:9.1} ms", s.stage, s.median_ms)?;
        }
        writeln!(
            f,
            "inference, batch {:<2}     {}  = {:.1} images/s",
            self.throughput_batch,
            t(&self.inference_throughput),
            self.images_per_s
        )?;
        match &self.train_step {
            Some(x) => writeln!(f, "train step, batch {:<2}    {}", self.train_batch, t(x))?,
            None => writeln!(f, "train step: skipped")?,
        }
        for s in &self.train_phases {
            writeln!(f, "  {:<32} {:9.1} ms", s.stage, s.median_ms)?;
        }
        write!(
            f,
            "peak RSS: inference {}, training {}",
            mb(self.peak_rss_inference_mb),
            mb(self.peak_rss_train_mb)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Timing::from_ms(vec![3.0, 1.0, 2.0]).median_ms, 2.0);
        assert_eq!(Timing::from_ms(vec![4.0, 1.0, 2.0, 3.0]).median_ms, 2.5);
        assert!(Timing::from_ms(vec![]).median_ms.is_nan());
    }

    #[test]
    fn tiny_bench_runs_and_reports_every_stage() {
        let opts = BenchOptions {
            warmup: 1,
            repeats: 2,
            throughput_batch: 2,
            train_batch: 2,
            ..BenchOptions::default()
        };
        let r = bench("tiny", &TgcNetConfig::tiny(), &opts, &Device::flex()).expect("bench");
        assert_eq!(r.stages.len(), 4, "{:?}", r.stages);
        assert!(r.inference_latency.median_ms > 0.0);
        assert!(r.train_step.as_ref().is_some_and(|t| t.runs == 2));
        let stage_sum: f64 = r.stages.iter().map(|s| s.median_ms).sum();
        // The stages partition the forward pass (up to timer overhead and reading the logits back).
        assert!(stage_sum <= r.inference_latency.max_ms * 1.5 + 1.0, "{r}");
        // The training phases partition the step the same way.
        assert_eq!(r.train_phases.len(), 4, "{:?}", r.train_phases);
        let phase_sum: f64 = r.train_phases.iter().map(|s| s.median_ms).sum();
        let step = r.train_step.as_ref().expect("train step");
        assert!(
            phase_sum > 0.0 && phase_sum <= step.max_ms * 1.5 + 1.0,
            "{r}"
        );
        println!("{r}");
    }
}
