//! The training loop: AdamW with warm-up + cosine, gradient clipping, validation each epoch, best
//! checkpoint by validation Dice (per-image), early stopping, atomic checkpoints and exact resume.
//!
//! Checkpoints are taken at epoch ends. The data order and augmentation of an epoch depend only on
//! (seed, epoch), and the model has no dropout, so on the CPU a resumed run reproduces an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tgcnet_data::{BadSamplePolicy, Dataset, LoaderConfig, loader};
use tgcnet_model::{CaptionEncoder, TgcLoss, TgcNet};

use crate::checkpoint::{Progress, load_state, save_state};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::{EvalOptions, evaluate};
use crate::optim::{AdamW, lr_at};
use crate::plot::write_curves;

#[derive(Debug, Clone, Serialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    /// Input side of this epoch's training batches and validation (progressive resizing).
    pub train_image_size: usize,
    pub train_loss: f64,
    pub train_dice_loss: f64,
    pub train_bce: f64,
    pub val_dice_per_image: f64,
    pub val_iou_per_image: f64,
    pub val_dice_global: f64,
    pub val_iou_global: f64,
    pub images_per_s: f64,
    pub epoch_seconds: f64,
    pub skipped_samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub epochs_done: usize,
    pub best_dice: f64,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub run_dir: PathBuf,
}

pub struct TrainOptions<'a> {
    pub data: &'a Path,
    pub out: &'a Path,
    pub resume: bool,
    /// Draw progress bars (off in tests and when stderr is not a terminal).
    pub progress: bool,
}

fn append(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| TrainError::io(path, e))?;
    f.sync_data().map_err(|e| TrainError::io(path, e))
}

/// Rows of `metrics.jsonl` from earlier epochs (resume), so curves cover the whole run.
fn read_rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites metrics.jsonl and metrics.csv keeping only epochs ≤ `epochs_done`: after a kill between the
/// metrics append and the checkpoint, the resumed run writes that epoch again.
fn truncate_metrics(out: &Path, epochs_done: usize) -> Result<()> {
    let rows: Vec<serde_json::Value> = read_rows(&out.join("metrics.jsonl"))
        .into_iter()
        .filter(|r| {
            r["epoch"]
                .as_u64()
                .is_some_and(|e| (e as usize) <= epochs_done)
        })
        .collect();
    let jsonl: String = rows.iter().map(|r| format!("{r}\n")).collect();
    tgcnet_clip::weights::write_atomic(&out.join("metrics.jsonl"), jsonl.as_bytes())?;
    let steps: String = read_rows(&out.join("steps.jsonl"))
        .into_iter()
        .filter(|r| {
            r["epoch"]
                .as_u64()
                .is_some_and(|e| (e as usize) <= epochs_done)
        })
        .map(|r| format!("{r}\n"))
        .collect();
    tgcnet_clip::weights::write_atomic(&out.join("steps.jsonl"), steps.as_bytes())?;
    let csv_path = out.join("metrics.csv");
    if let Ok(text) = std::fs::read_to_string(&csv_path) {
        let kept: String = text
            .lines()
            .enumerate()
            .filter(|(i, l)| {
                *i == 0
                    || l.split(',')
                        .next()
                        .and_then(|e| e.parse::<usize>().ok())
                        .is_some_and(|e| e <= epochs_done)
            })
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        tgcnet_clip::weights::write_atomic(&csv_path, kept.as_bytes())?;
    }
    Ok(())
}

/// One line of `steps.jsonl`: the mean loss of the steps since the previous line.
fn step_row(epoch: usize, step: usize, loss: f64) -> String {
    format!(
        "{}\n",
        serde_json::json!({"epoch": epoch, "step": step, "loss": loss})
    )
}

const CSV_HEADER: &str = "epoch,step,lr,train_image_size,train_loss,train_dice_loss,train_bce,val_dice_per_image,val_iou_per_image,val_dice_global,val_iou_global,images_per_s,epoch_seconds,skipped_samples\n";

pub fn train(cfg: &RunConfig, opts: &TrainOptions<'_>, device: &Device) -> Result<TrainOutcome> {
    let out = opts.out;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let last = out.join("last.safetensors");
    let config_path = out.join("config.toml");
    let cfg = if opts.resume {
        if !last.exists() {
            return Err(TrainError::Other(format!(
                "{}: nothing to resume (no last.safetensors; start without --resume)",
                out.display()
            )));
        }
        // The run's own config wins, so a resumed run is the run that was started.
        RunConfig::from_file(&config_path)?
    } else {
        if last.exists() {
            return Err(TrainError::Other(format!(
                "{} already holds a run (last.safetensors); pass --resume to continue it or choose another --out",
                out.display()
            )));
        }
        let text = cfg.to_toml()?;
        tgcnet_clip::weights::write_atomic(&config_path, text.as_bytes())?;
        cfg.clone()
    };
    let run_toml = cfg.to_toml()?;
    let t = &cfg.train;
    let policy: BadSamplePolicy = t.on_bad_sample.parse()?;

    let dataset = Dataset::open(opts.data, None)?;
    let mut train_samples = dataset.split(&t.train_split)?.to_vec();
    let mut val_samples = dataset.split(&t.val_split)?.to_vec();
    if t.max_train_samples > 0 {
        train_samples.truncate(t.max_train_samples);
    }
    if t.max_val_samples > 0 {
        val_samples.truncate(t.max_val_samples);
    }
    if train_samples.is_empty() || val_samples.is_empty() {
        return Err(TrainError::Other(format!(
            "{}: the `{}` and `{}` splits must both hold samples ({} and {})",
            opts.data.display(),
            t.train_split,
            t.val_split,
            train_samples.len(),
            val_samples.len()
        )));
    }

    device.seed(t.seed);
    let encoder = CaptionEncoder::new(&cfg.model)?;
    let mut model = TgcNet::new_with(&cfg.model, &encoder, device)?;
    let mut optim = AdamW::new(t);
    let mut progress = Progress::default();
    if opts.resume {
        let state = load_state(&last)?;
        model = model.load_params_map(state.params)?;
        optim.load_state(&state.optim, state.progress.step, device);
        progress = state.progress;
        truncate_metrics(out, progress.epochs_done)?;
    } else {
        for f in ["metrics.jsonl", "metrics.csv", "steps.jsonl"] {
            let p = out.join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
            }
        }
    }
    let csv = out.join("metrics.csv");
    if !csv.exists() {
        append(&csv, CSV_HEADER)?;
    }
    let loss_fn = TgcLoss::new(&cfg.model.loss);
    let steps_per_epoch = train_samples.len().div_ceil(t.batch_size);
    let total_steps = steps_per_epoch * t.epochs;
    let log_every = steps_per_epoch.div_ceil(20).max(1);
    let inner = device.clone().inner();

    let bars = MultiProgress::with_draw_target(if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let epoch_bar = bars.add(ProgressBar::new(t.epochs as u64));
    epoch_bar.set_style(
        ProgressStyle::with_template("epoch {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    epoch_bar.set_position(progress.epochs_done as u64);
    let step_bar = bars.add(ProgressBar::new(steps_per_epoch as u64));
    step_bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut stopped_early = false;
    for epoch in progress.epochs_done..t.epochs {
        if t.patience > 0 && progress.epochs_since_best >= t.patience {
            stopped_early = true;
            break;
        }
        let started = Instant::now();
        step_bar.reset();
        let train_size = t.image_size_at(epoch, cfg.model.image_size);
        let lcfg = LoaderConfig {
            image_size: train_size,
            batch_size: t.batch_size,
            shuffle: true,
            augment: t.augment,
            augment_config: t.augmentation.clone(),
            seed: t.seed,
            epoch: epoch as u64,
            workers: t.workers,
            normalize_captions: t.normalize_captions,
            on_bad_sample: policy,
            require_masks: true,
            ..LoaderConfig::default()
        };
        let batches = loader(&train_samples, &lcfg);
        let bad = batches.bad_samples_handle();
        let (mut sum_loss, mut sum_dice, mut sum_bce, mut seen, mut n_steps) =
            (0.0, 0.0, 0.0, 0usize, 0usize);
        // The loss averaged over every `log_every` steps: steps.jsonl, the within-epoch curve.
        let (mut window, mut window_n, mut step_rows) = (0.0, 0usize, String::new());
        let mut lr = 0.0;
        for batch in batches {
            let batch = batch?;
            let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
            let text = encoder.encode(&captions, device)?;
            let output = model.forward(batch.images_tensor(device), &text);
            let loss = loss_fn.forward(output.logits, &output.sim_maps, batch.masks_tensor(device));
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
            lr = lr_at(t, optim.step, total_steps);
            let (m, _norm) = optim.step(model, &grads, lr);
            model = m;
            sum_loss += values.total * batch.batch as f64;
            sum_dice += values.dice * batch.batch as f64;
            sum_bce += values.bce * batch.batch as f64;
            seen += batch.batch;
            n_steps += 1;
            window += values.total;
            window_n += 1;
            if n_steps % log_every == 0 {
                step_rows.push_str(&step_row(epoch + 1, optim.step, window / window_n as f64));
                (window, window_n) = (0.0, 0);
            }
            step_bar.inc(1);
            let ips = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            step_bar.set_message(format!(
                "loss {:.4} lr {lr:.2e} {ips:.1} img/s",
                values.total
            ));
            // Without a terminal (nohup, CI logs) the bars are hidden: a line every 5% of the epoch.
            if !opts.progress && n_steps % log_every == 0 && n_steps < steps_per_epoch {
                let eta = (steps_per_epoch - n_steps) as f64 * started.elapsed().as_secs_f64()
                    / n_steps as f64;
                eprintln!(
                    "epoch {} step {n_steps}/{steps_per_epoch}: loss {:.4} (mean {:.4}), lr {lr:.2e}, {ips:.1} img/s, epoch ETA {:.0} s",
                    epoch + 1,
                    values.total,
                    sum_loss / seen as f64,
                    eta
                );
            }
        }
        if window_n > 0 {
            step_rows.push_str(&step_row(epoch + 1, optim.step, window / window_n as f64));
        }
        let train_secs = started.elapsed().as_secs_f64();
        let skipped = bad.lock().map(|b| b.len()).unwrap_or(0);
        if n_steps == 0 {
            return Err(TrainError::Other(
                "no training batch could be loaded".into(),
            ));
        }

        let eval_model = model.valid();
        let report = evaluate(
            &eval_model,
            &encoder,
            &val_samples,
            &EvalOptions {
                batch_size: t.batch_size,
                workers: t.workers,
                normalize_captions: t.normalize_captions,
                hd95: false,
                save_masks: None,
                max_samples: 0,
                image_size: Some(train_size),
            },
            &inner,
        )?;
        let s = &report.summary;
        let row = EpochRow {
            epoch: epoch + 1,
            step: optim.step,
            lr,
            train_image_size: train_size,
            train_loss: sum_loss / seen as f64,
            train_dice_loss: sum_dice / seen as f64,
            train_bce: sum_bce / seen as f64,
            val_dice_per_image: s.dice_per_image,
            val_iou_per_image: s.iou_per_image,
            val_dice_global: s.dice_global,
            val_iou_global: s.iou_global,
            images_per_s: seen as f64 / train_secs.max(1e-9),
            epoch_seconds: started.elapsed().as_secs_f64(),
            skipped_samples: skipped,
        };
        append(&out.join("steps.jsonl"), &step_rows)?;
        append(
            &out.join("metrics.jsonl"),
            &format!(
                "{}\n",
                serde_json::to_string(&row).map_err(|e| TrainError::Other(e.to_string()))?
            ),
        )?;
        append(
            &csv,
            &format!(
                "{},{},{:.6e},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3},{:.2},{}\n",
                row.epoch,
                row.step,
                row.lr,
                row.train_image_size,
                row.train_loss,
                row.train_dice_loss,
                row.train_bce,
                row.val_dice_per_image,
                row.val_iou_per_image,
                row.val_dice_global,
                row.val_iou_global,
                row.images_per_s,
                row.epoch_seconds,
                row.skipped_samples
            ),
        )?;

        progress.epochs_done = epoch + 1;
        progress.step = optim.step;
        // Only epochs validated at the model's own size compete for best.safetensors (the early
        // stages of progressive resizing are validated at their own, lower, size).
        let eligible = train_size == cfg.model.image_size;
        if eligible && (s.dice_per_image > progress.best_dice || progress.best_epoch == 0) {
            progress.best_dice = s.dice_per_image;
            progress.best_epoch = epoch + 1;
            progress.epochs_since_best = 0;
            eval_model.save_params(&out.join("best.safetensors"))?;
        } else if eligible {
            progress.epochs_since_best += 1;
        }
        save_state(&last, &model, optim.state(), &progress, &run_toml)?;

        let rows = read_rows(&out.join("metrics.jsonl"));
        let col = |k: &str| -> Vec<f64> {
            rows.iter()
                .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                .collect()
        };
        write_curves(
            &out.join("curves.svg"),
            &col("train_loss"),
            &col("val_dice_per_image"),
            &col("val_dice_global"),
        )?;
        let msg = format!(
            "epoch {} ({train_size} px): loss {:.4}, val Dice {:.2}% per-image / {:.2}% global (best {:.2}% @ {}), {:.1} img/s",
            epoch + 1,
            row.train_loss,
            100.0 * s.dice_per_image,
            100.0 * s.dice_global,
            100.0 * progress.best_dice,
            progress.best_epoch,
            row.images_per_s
        );
        epoch_bar.set_position((epoch + 1) as u64);
        epoch_bar.set_message(msg.clone());
        bars.suspend(|| eprintln!("{msg}"));
        if skipped > 0 {
            bars.suspend(|| {
                eprintln!("  {skipped} bad sample(s) skipped this epoch (see messages above)")
            });
        }
    }
    step_bar.finish_and_clear();
    epoch_bar.finish_and_clear();
    Ok(TrainOutcome {
        epochs_done: progress.epochs_done,
        best_dice: progress.best_dice,
        best_epoch: progress.best_epoch,
        stopped_early,
        run_dir: out.to_path_buf(),
    })
}
