//! `tgcnet curves`: the learning curves of several runs in one SVG (training loss and validation Dice
//! per epoch, one colour per run), read from each run's `metrics.csv`. Training draws one run's
//! `curves.svg`; comparing arms or seeds of a sweep needs them on the same axes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use tgcnet_train::plot::{Chart, Series, side_by_side, svg_chart};
use tgcnet_train::rundir::EpochRow;

#[derive(Args, Debug)]
pub struct CurvesArgs {
    /// A run directory (with metrics.csv); repeat for each run to compare. `DIR=LABEL` names its lines.
    #[arg(long = "run", required = true, action = clap::ArgAction::Append)]
    pub runs: Vec<String>,
    /// The SVG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also draw global Dice (dashed) beside per-image Dice.
    #[arg(long)]
    pub global: bool,
}

/// Colour-blind-safe colours (Okabe-Ito), one per run.
const COLORS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

fn read_rows(dir: &Path) -> anyhow::Result<Vec<EpochRow>> {
    let path = dir.join("metrics.csv");
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
    let rows: Vec<EpochRow> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a tgcnet metrics.csv", path.display()))?;
    if rows.is_empty() {
        bail!("{}: no epoch has finished yet", path.display());
    }
    Ok(rows)
}

pub fn curves_cmd(a: CurvesArgs) -> anyhow::Result<i32> {
    let mut loss = Vec::new();
    let mut dice = Vec::new();
    for (i, spec) in a.runs.iter().enumerate() {
        let (dir, label) = match spec.split_once('=') {
            Some((d, l)) => (PathBuf::from(d), l.to_string()),
            None => {
                let d = PathBuf::from(spec);
                let l = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| spec.clone());
                (d, l)
            }
        };
        let rows = read_rows(&dir)?;
        let color = COLORS[i % COLORS.len()];
        let points = |f: &dyn Fn(&EpochRow) -> f64| -> Vec<(f64, f64)> {
            rows.iter().map(|r| (r.epoch as f64, f(r))).collect()
        };
        loss.push(Series::new(&label, color, points(&|r| r.train_loss)));
        let name = if a.global {
            format!("{label}, per-image")
        } else {
            label.clone()
        };
        dice.push(Series::new(
            &name,
            color,
            points(&|r| 100.0 * r.val_dice_per_image),
        ));
        if a.global {
            dice.push(
                Series::new(
                    &format!("{label}, global"),
                    color,
                    points(&|r| 100.0 * r.val_dice_global),
                )
                .dashed(),
            );
        }
    }
    let loss_chart = svg_chart(
        &Chart {
            title: "Training loss".into(),
            x_label: "epoch".into(),
            y_label: "mean loss over the epoch".into(),
            integer_x: true,
            ..Chart::default()
        },
        &loss,
    );
    let dice_chart = svg_chart(
        &Chart {
            title: "Validation Dice (at each epoch's training size)".into(),
            x_label: "epoch".into(),
            y_label: "Dice (%)".into(),
            integer_x: true,
            ..Chart::default()
        },
        &dice,
    );
    let doc = side_by_side(&loss_chart, &dice_chart);
    tgcnet_io::write_atomic(&a.out, doc.as_bytes())
        .with_context(|| format!("{}", a.out.display()))?;
    println!("{}: {} runs", a.out.display(), a.runs.len());
    Ok(0)
}
