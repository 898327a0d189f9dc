//! A run directory: `config.toml` (written first), `metrics.jsonl` / `metrics.csv` (one row per epoch),
//! `steps.jsonl` (the loss every twentieth of an epoch), `curves.svg`, `best.safetensors` and
//! `last.safetensors`. Rows are appended and synced as epochs end; a resumed run first drops the rows
//! of epochs that its last checkpoint does not cover (a kill between the append and the checkpoint).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::plot::write_curves;

/// One row of `metrics.jsonl` and `metrics.csv`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EpochRow {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Optimizer steps taken when the epoch ended.
    pub step: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Input side of this epoch's training batches and validation (progressive resizing).
    pub train_image_size: usize,
    /// Mean total training loss over the epoch's steps.
    pub train_loss: f64,
    /// Mean Dice term of the training loss.
    pub train_dice_loss: f64,
    /// Mean BCE term of the training loss.
    pub train_bce: f64,
    /// Validation Dice, mean over images (fraction).
    pub val_dice_per_image: f64,
    /// Validation IoU, mean over images (fraction).
    pub val_iou_per_image: f64,
    /// Validation Dice pooled over all pixels (fraction).
    pub val_dice_global: f64,
    /// Validation IoU pooled over all pixels (fraction).
    pub val_iou_global: f64,
    /// Training throughput of the epoch.
    pub images_per_s: f64,
    /// Wall time of the epoch's training steps.
    pub epoch_seconds: f64,
    /// Training samples skipped as unreadable (`on_bad_sample = "skip"`).
    pub skipped_samples: usize,
}

/// One line of `steps.jsonl`: the mean loss of the steps since the previous line.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepRow {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Optimizer steps taken at this line.
    pub step: usize,
    /// Mean total loss of the steps since the previous line.
    pub loss: f64,
}

/// The files of one run.
pub struct RunDir {
    /// The run directory.
    pub dir: PathBuf,
}

impl RunDir {
    /// `last.safetensors`: the training state `--resume` reads.
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }

    /// `best.safetensors`: the parameters of the best validation epoch.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// `epoch-NNN.safetensors`: the parameters after epoch `epoch` (1-based), with `train.snapshots`.
    pub fn snapshot(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:03}.safetensors"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens `dir` for a new run (writing `cfg` as its config.toml) or, with `resume`, for the run it
    /// holds (whose own config wins, so a resumed run is the run that was started). Returns the config.
    pub fn open(dir: &Path, cfg: &RunConfig, resume: bool) -> Result<(Self, RunConfig)> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let run = RunDir {
            dir: dir.to_path_buf(),
        };
        let config_path = run.file("config.toml");
        let has_run = run.last().exists();
        if resume {
            if !has_run {
                return Err(TrainError::RunDir {
                    path: dir.into(),
                    message: "nothing to resume (no last.safetensors; start without --resume)"
                        .into(),
                });
            }
            let cfg = RunConfig::from_file(&config_path)?;
            return Ok((run, cfg));
        }
        if has_run {
            return Err(TrainError::RunDir {
                path: dir.into(),
                message: "already holds a run (last.safetensors); pass --resume to continue it or choose another --out".into(),
            });
        }
        tgcnet_io::write_atomic(&config_path, cfg.to_toml()?.as_bytes())?;
        for f in ["metrics.jsonl", "metrics.csv", "steps.jsonl"] {
            let p = run.file(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
            }
        }
        Ok((run, cfg.clone()))
    }

    /// Keeps only the rows of epochs ≤ `epochs_done` (resume).
    pub fn truncate(&self, epochs_done: usize) -> Result<()> {
        let rows: Vec<EpochRow> = read_jsonl(&self.file("metrics.jsonl"))
            .into_iter()
            .filter(|r: &EpochRow| r.epoch <= epochs_done)
            .collect();
        write_jsonl(&self.file("metrics.jsonl"), &rows)?;
        let steps: Vec<StepRow> = read_jsonl(&self.file("steps.jsonl"))
            .into_iter()
            .filter(|r: &StepRow| r.epoch <= epochs_done)
            .collect();
        write_jsonl(&self.file("steps.jsonl"), &steps)?;
        let csv_path = self.file("metrics.csv");
        if csv_path.exists() {
            tgcnet_io::write_atomic(&csv_path, &csv_bytes(&rows, true)?)?;
        }
        Ok(())
    }

    /// Appends an epoch: its step rows, its metrics row (JSON lines and CSV), and redraws the curves.
    pub fn record(&self, row: &EpochRow, steps: &[StepRow]) -> Result<()> {
        append(&self.file("steps.jsonl"), &jsonl(steps)?)?;
        append(
            &self.file("metrics.jsonl"),
            &jsonl(std::slice::from_ref(row))?,
        )?;
        let csv_path = self.file("metrics.csv");
        let header = !csv_path.exists();
        append(&csv_path, &csv_bytes(std::slice::from_ref(row), header)?)?;
        let rows: Vec<EpochRow> = read_jsonl(&self.file("metrics.jsonl"));
        let col = |f: fn(&EpochRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        write_curves(
            &self.file("curves.svg"),
            &col(|r| r.train_loss),
            &col(|r| r.val_dice_per_image),
            &col(|r| r.val_dice_global),
        )
    }
}

fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    f.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    f.sync_data().map_err(|e| TrainError::io(path, e))
}

/// The rows of a JSON-lines file that parse as `T` (missing file: none).
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn jsonl<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(|e| TrainError::Serialize {
            what: "a metrics row",
            message: e.to_string(),
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    tgcnet_io::write_atomic(path, &jsonl(rows)?)?;
    Ok(())
}

fn csv_bytes(rows: &[EpochRow], header: bool) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| TrainError::Serialize {
        what: "metrics.csv",
        message: e.to_string(),
    };
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| err(&e))?;
    }
    w.into_inner().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            step: 10 * epoch,
            lr: 1e-3,
            train_image_size: 32,
            train_loss: 1.0 / epoch as f64,
            train_dice_loss: 0.5,
            train_bce: 0.25,
            val_dice_per_image: 0.1 * epoch as f64,
            val_iou_per_image: 0.05,
            val_dice_global: 0.2,
            val_iou_global: 0.1,
            images_per_s: 3.0,
            epoch_seconds: 2.0,
            skipped_samples: 0,
        }
    }

    #[test]
    fn rows_append_and_truncate_in_every_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = RunDir {
            dir: tmp.path().to_path_buf(),
        };
        for e in 1..=3 {
            let steps = [StepRow {
                epoch: e,
                step: 10 * e,
                loss: 0.5,
            }];
            run.record(&row(e), &steps).expect("record");
        }
        let csv = std::fs::read_to_string(tmp.path().join("metrics.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.starts_with("epoch,step,lr,train_image_size,train_loss,"));
        assert!(tmp.path().join("curves.svg").exists());
        run.truncate(2).expect("truncate");
        let csv = std::fs::read_to_string(tmp.path().join("metrics.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 3, "{csv}");
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let back: Vec<EpochRow> = reader.deserialize().map(|r| r.expect("row")).collect();
        assert_eq!(back.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            read_jsonl::<EpochRow>(&tmp.path().join("metrics.jsonl")).len(),
            2
        );
        assert_eq!(
            read_jsonl::<StepRow>(&tmp.path().join("steps.jsonl")).len(),
            2
        );
    }
}
