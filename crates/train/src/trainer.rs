//! The training loop: AdamW with warm-up + cosine, gradient clipping, validation each epoch, best
//! checkpoint by validation Dice (per-image), early stopping, atomic checkpoints and exact resume.
//!
//! Checkpoints are taken at epoch ends. The data order and augmentation of an epoch depend only on
//! (seed, epoch), and the model has no dropout, so on the CPU a resumed run reproduces an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tgcnet_data::{BadSamplePolicy, Dataset, LoaderConfig, Sample, loader};
use tgcnet_eval::Summary;
use tgcnet_model::{CaptionEncoder, TgcLoss, TgcNet};

use crate::checkpoint::{Progress, load_params, load_state, save_state};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::{EvalOptions, evaluate};
use crate::optim::{AdamW, lr_at};
use crate::rundir::{EpochRow, RunDir, StepRow};

/// How a [`train`] call ended.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// Epochs completed, counting those before a resume.
    pub epochs_done: usize,
    /// Best validation Dice (per image, fraction).
    pub best_dice: f64,
    /// Epoch (1-based) of the best validation Dice; its parameters are `best.safetensors`.
    pub best_epoch: usize,
    /// Training stopped because validation Dice did not improve for `patience` epochs.
    pub stopped_early: bool,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Where [`train`] reads data and writes its run.
pub struct TrainOptions<'a> {
    /// Dataset root (any layout [`tgcnet_data::load_split`] reads).
    pub data: &'a Path,
    /// Run directory.
    pub out: &'a Path,
    /// Continue the run in `out` from its `last.safetensors` instead of starting one.
    pub resume: bool,
    /// Draw progress bars (off in tests and when stderr is not a terminal).
    pub progress: bool,
}

/// What an epoch's training steps measured.
struct EpochStats {
    loss: f64,
    dice: f64,
    bce: f64,
    images: usize,
    lr: f64,
    seconds: f64,
    skipped: usize,
    steps: Vec<StepRow>,
}

/// The parts of a run every epoch uses.
struct Session<'a> {
    cfg: &'a RunConfig,
    encoder: &'a CaptionEncoder,
    loss: TgcLoss,
    train: Vec<Sample>,
    val: Vec<Sample>,
    policy: BadSamplePolicy,
    steps_per_epoch: usize,
    device: &'a Device,
    data: &'a Path,
    /// Without a terminal (nohup, CI logs) the bars are hidden: a line every 5 % of an epoch instead.
    log_lines: bool,
}

/// Trains a model as `cfg` says on `opts.data`, writing the run directory `opts.out` as it goes.
///
/// With `opts.resume` the run's own `config.toml` is used instead of `cfg`. Returns when the schedule
/// ends or early stopping triggers.
pub fn train(cfg: &RunConfig, opts: &TrainOptions<'_>, device: &Device) -> Result<TrainOutcome> {
    let (run, cfg) = RunDir::open(opts.out, cfg, opts.resume)?;
    let run_toml = cfg.to_toml()?;
    let t = &cfg.train;
    let (train, val) = splits(&cfg, opts.data)?;
    device.seed(t.seed);
    let encoder = CaptionEncoder::new(&cfg.model)?;
    let mut model = TgcNet::new_with(&cfg.model, &encoder, device)?;
    let mut optim = AdamW::new(t);
    let mut progress = Progress::default();
    if opts.resume {
        let state = load_state(&run.last())?;
        model = model.load_params_map(state.params)?;
        optim.load_state(&state.optim, state.progress.step, device);
        progress = state.progress;
        run.truncate(progress.epochs_done)?;
    } else if let Some(init) = &t.init {
        model = model
            .init_from(load_params(init)?)
            .map_err(|e| TrainError::Checkpoint {
                path: init.clone(),
                message: format!("cannot start from it (train.init): {e}"),
            })?;
    }
    let session = Session {
        cfg: &cfg,
        encoder: &encoder,
        loss: TgcLoss::new(&cfg.model.loss),
        steps_per_epoch: train.len().div_ceil(t.batch_size),
        train,
        val,
        policy: t.on_bad_sample.parse()?,
        device,
        data: opts.data,
        log_lines: !opts.progress,
    };
    let bars = Bars::new(opts.progress, t.epochs, session.steps_per_epoch);
    bars.epoch.set_position(progress.epochs_done as u64);
    let mut stopped_early = false;
    for epoch in progress.epochs_done..t.epochs {
        if t.patience > 0 && progress.epochs_since_best >= t.patience {
            stopped_early = true;
            break;
        }
        let stats;
        (model, stats) = session.run_epoch(model, &mut optim, epoch, &bars.step)?;
        let size = t.image_size_at(epoch, cfg.model.image_size);
        let eval_model = model.valid();
        let summary = session.validate(&eval_model, size)?;
        let row = epoch_row(epoch, optim.step, size, &stats, &summary);
        run.record(&row, &stats.steps)?;
        progress.epochs_done = epoch + 1;
        progress.step = optim.step;
        // Only epochs validated at the model's own size compete for best.safetensors (the early stages
        // of progressive resizing are validated at their own, lower, size).
        if size == cfg.model.image_size {
            if summary.dice_per_image > progress.best_dice || progress.best_epoch == 0 {
                progress.best_dice = summary.dice_per_image;
                progress.best_epoch = epoch + 1;
                progress.epochs_since_best = 0;
                eval_model.save_params(&run.best())?;
            } else {
                progress.epochs_since_best += 1;
            }
        }
        if t.snapshots {
            eval_model.save_params(&run.snapshot(epoch + 1))?;
        }
        save_state(&run.last(), &model, optim.state(), &progress, &run_toml)?;
        bars.epoch_done(&row, &progress, stats.skipped);
    }
    bars.finish();
    Ok(TrainOutcome {
        epochs_done: progress.epochs_done,
        best_dice: progress.best_dice,
        best_epoch: progress.best_epoch,
        stopped_early,
        run_dir: run.dir,
    })
}

/// The training and validation samples of the config's splits (each non-empty), truncated as asked.
fn splits(cfg: &RunConfig, data: &Path) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let t = &cfg.train;
    let dataset = Dataset::open(data, None)?;
    let mut train = dataset.split(&t.train_split)?.to_vec();
    let mut val = dataset.split(&t.val_split)?.to_vec();
    if t.max_train_samples > 0 {
        train.truncate(t.max_train_samples);
    }
    if t.max_val_samples > 0 {
        val.truncate(t.max_val_samples);
    }
    if train.is_empty() || val.is_empty() {
        return Err(TrainError::RunDir {
            path: data.into(),
            message: format!(
                "the `{}` and `{}` splits must both hold samples ({} and {})",
                t.train_split,
                t.val_split,
                train.len(),
                val.len()
            ),
        });
    }
    Ok((train, val))
}

impl Session<'_> {
    /// One pass over the training split; returns the updated model and what the epoch measured.
    fn run_epoch(
        &self,
        mut model: TgcNet,
        optim: &mut AdamW,
        epoch: usize,
        bar: &ProgressBar,
    ) -> Result<(TgcNet, EpochStats)> {
        let t = &self.cfg.train;
        let started = Instant::now();
        bar.reset();
        let lcfg = LoaderConfig {
            image_size: t.image_size_at(epoch, self.cfg.model.image_size),
            batch_size: t.batch_size,
            shuffle: true,
            augment: t.augment,
            augment_config: t.augmentation.clone(),
            seed: t.seed,
            epoch: epoch as u64,
            workers: t.workers,
            normalize_captions: t.normalize_captions,
            on_bad_sample: self.policy,
            require_masks: true,
            ..LoaderConfig::default()
        };
        let total_steps = self.steps_per_epoch * t.epochs;
        let log_every = self.steps_per_epoch.div_ceil(20).max(1);
        let batches = loader(&self.train, &lcfg);
        let bad = batches.bad_samples_handle();
        let mut s = EpochStats {
            loss: 0.0,
            dice: 0.0,
            bce: 0.0,
            images: 0,
            lr: 0.0,
            seconds: 0.0,
            skipped: 0,
            steps: Vec::new(),
        };
        let (mut window, mut window_n, mut n_steps) = (0.0, 0usize, 0usize);
        for batch in batches {
            let batch = batch?;
            let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
            let text = self.encoder.encode(&captions, self.device)?;
            let output = model.forward(batch.images_tensor(self.device), &text);
            let loss = self.loss.forward(
                output.logits,
                &output.sim_maps,
                batch.masks_tensor(self.device),
            );
            let values = loss.values()?;
            if !values.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch: epoch + 1,
                    step: optim.step + 1,
                    total: values.total,
                    dice: values.dice,
                    bce: values.bce,
                    ids: batch.ids.clone(),
                });
            }
            let grads = loss.total.backward();
            s.lr = lr_at(t, optim.step, total_steps);
            (model, _) = optim.step(model, &grads, s.lr);
            let b = batch.batch as f64;
            (s.loss, s.dice, s.bce) = (
                s.loss + values.total * b,
                s.dice + values.dice * b,
                s.bce + values.bce * b,
            );
            s.images += batch.batch;
            n_steps += 1;
            (window, window_n) = (window + values.total, window_n + 1);
            if n_steps % log_every == 0 {
                s.steps.push(step_row(epoch, optim.step, window, window_n));
                (window, window_n) = (0.0, 0);
            }
            self.report_step(bar, epoch, n_steps, &s, values.total, started);
        }
        if window_n > 0 {
            s.steps.push(step_row(epoch, optim.step, window, window_n));
        }
        if n_steps == 0 {
            return Err(TrainError::RunDir {
                path: self.data.into(),
                message: "no training batch could be loaded".into(),
            });
        }
        s.seconds = started.elapsed().as_secs_f64();
        s.skipped = bad.lock().map(|b| b.len()).unwrap_or(0);
        let n = s.images as f64;
        (s.loss, s.dice, s.bce) = (s.loss / n, s.dice / n, s.bce / n);
        Ok((model, s))
    }

    /// The progress bar's message, or a log line every 5 % of the epoch when there is no terminal.
    fn report_step(
        &self,
        bar: &ProgressBar,
        epoch: usize,
        n_steps: usize,
        s: &EpochStats,
        loss: f64,
        started: Instant,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        let ips = s.images as f64 / elapsed.max(1e-9);
        bar.inc(1);
        bar.set_message(format!("loss {loss:.4} lr {:.2e} {ips:.1} img/s", s.lr));
        let log_every = self.steps_per_epoch.div_ceil(20).max(1);
        if self.log_lines && n_steps.is_multiple_of(log_every) && n_steps < self.steps_per_epoch {
            let eta = (self.steps_per_epoch - n_steps) as f64 * elapsed / n_steps as f64;
            eprintln!(
                "epoch {} step {n_steps}/{}: loss {loss:.4} (mean {:.4}), lr {:.2e}, {ips:.1} img/s, epoch ETA {eta:.0} s",
                epoch + 1,
                self.steps_per_epoch,
                s.loss / s.images as f64,
                s.lr,
            );
        }
    }

    /// Dice and IoU on the validation split at input side `size`.
    fn validate(&self, model: &TgcNet, size: usize) -> Result<Summary> {
        let t = &self.cfg.train;
        let report = evaluate(
            model,
            self.encoder,
            &self.val,
            &EvalOptions {
                batch_size: t.batch_size,
                workers: t.workers,
                normalize_captions: t.normalize_captions,
                hd95: false,
                save_masks: None,
                max_samples: 0,
                image_size: Some(size),
                ..EvalOptions::default()
            },
            &self.device.clone().inner(),
        )?;
        Ok(report.summary)
    }
}

fn step_row(epoch: usize, step: usize, sum: f64, n: usize) -> StepRow {
    StepRow {
        epoch: epoch + 1,
        step,
        loss: sum / n.max(1) as f64,
    }
}

fn epoch_row(epoch: usize, step: usize, size: usize, s: &EpochStats, v: &Summary) -> EpochRow {
    EpochRow {
        epoch: epoch + 1,
        step,
        lr: s.lr,
        train_image_size: size,
        train_loss: s.loss,
        train_dice_loss: s.dice,
        train_bce: s.bce,
        val_dice_per_image: v.dice_per_image,
        val_iou_per_image: v.iou_per_image,
        val_dice_global: v.dice_global,
        val_iou_global: v.iou_global,
        images_per_s: s.images as f64 / s.seconds.max(1e-9),
        epoch_seconds: s.seconds,
        skipped_samples: s.skipped,
    }
}

/// The epoch and step progress bars (hidden without a terminal).
struct Bars {
    all: MultiProgress,
    epoch: ProgressBar,
    step: ProgressBar,
}

impl Bars {
    fn new(visible: bool, epochs: usize, steps: usize) -> Self {
        let all = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let epoch = all.add(ProgressBar::new(epochs as u64));
        epoch.set_style(style(
            "epoch {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ));
        let step = all.add(ProgressBar::new(steps as u64));
        step.set_style(style(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        ));
        Self { all, epoch, step }
    }

    /// The epoch's summary line (kept on screen above the bars, and in logs).
    fn epoch_done(&self, row: &EpochRow, progress: &Progress, skipped: usize) {
        let best = if progress.best_epoch == 0 {
            "no epoch at the model's size yet".to_string()
        } else {
            format!(
                "best {:.2}% @ {}",
                100.0 * progress.best_dice,
                progress.best_epoch
            )
        };
        let msg = format!(
            "epoch {} ({} px): loss {:.4}, val Dice {:.2}% per-image / {:.2}% global ({best}), {:.1} img/s",
            row.epoch,
            row.train_image_size,
            row.train_loss,
            100.0 * row.val_dice_per_image,
            100.0 * row.val_dice_global,
            row.images_per_s
        );
        self.epoch.set_position(row.epoch as u64);
        self.epoch.set_message(msg.clone());
        self.all.suspend(|| eprintln!("{msg}"));
        if skipped > 0 {
            self.all.suspend(|| {
                eprintln!("  {skipped} bad sample(s) skipped this epoch (see messages above)")
            });
        }
    }

    fn finish(&self) {
        self.step.finish_and_clear();
        self.epoch.finish_and_clear();
    }
}
