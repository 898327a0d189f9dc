//! `tgcnet data …`: dataset tools (owned by the data work: see crates/data).
//!
//! - `tgcnet data check PATH [--format F] [--json]`: checks a dataset (missing/unreadable files, sizes,
//!   masks, captions, case-only name clashes, patient overlap between splits) and summarises its
//!   captions. Exit code 0 when there are at most warnings, 2 when there are errors.
//! - `tgcnet data phantom --out DIR [--n-train N] [--n-val N] [--size S] [--seed S] [--text-necessary]`:
//!   writes the procedural chest X-ray phantom dataset as a manifest-CSV dataset.
//! - `tgcnet data show PATH [--split S] [-n N] [--no-normalize-captions] [--load SIZE]`: lists samples as
//!   the model will see them (caption after normalisation unless turned off), optionally decoding them.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tgcnet_data::imageio::parse_window;
use tgcnet_data::{CheckOptions, DecodeOptions, Format, PhantomConfig, SideConvention};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Check a dataset and summarise its captions (exit code 2 on errors, 0 with warnings only).
    Check(CheckArgs),
    /// Write the procedural chest X-ray phantom dataset (manifest CSVs, PNG images and masks).
    Phantom(PhantomArgs),
    /// List samples of a split as the model sees them (paths, caption, parsed zones).
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Dataset directory (or a manifest CSV, or an SGSeg annotation.json).
    pub path: PathBuf,
    /// Force the layout: sgseg, lvit, guidedecoder, manifest (default: detected).
    #[arg(long)]
    pub format: Option<String>,
    /// Split (train, val/valid, test, …).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Number of samples listed.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub n: usize,
    /// Give the captions to the model as published (no normalisation).
    #[arg(long)]
    pub no_normalize_captions: bool,
    /// Also decode each listed sample at this size and print mask foreground (0: do not decode).
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// CT window for DICOM/NIfTI: lung, abdomen, mediastinum, none, or WIDTH,LEVEL.
    #[arg(long, default_value = "lung")]
    pub window: String,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Dataset directory (or a manifest CSV, or an SGSeg annotation.json).
    pub path: PathBuf,
    /// Force the layout: sgseg, lvit, guidedecoder, manifest (default: detected).
    #[arg(long)]
    pub format: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only check that files exist (do not decode images and masks).
    #[arg(long)]
    pub no_decode: bool,
    /// CT window for DICOM/NIfTI: lung, abdomen, mediastinum, none, or WIDTH,LEVEL.
    #[arg(long, default_value = "lung")]
    pub window: String,
    /// Decoding threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Examples listed per issue kind.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// The side convention you will train with (`image` or `patient`); a dataset whose masks show the
    /// other one gets a warning. Read from a run config's `[model] laterality` with --config.
    #[arg(long, conflicts_with = "config")]
    pub laterality: Option<SideConvention>,
    /// A run config (as for `tgcnet train`) whose `[model] laterality` the dataset is checked against.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PhantomArgs {
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 200)]
    pub n_train: usize,
    #[arg(long, default_value_t = 50)]
    pub n_val: usize,
    /// Image size (square).
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lesions also in zones the caption does not name; the mask holds only the named ones.
    #[arg(long)]
    pub text_necessary: bool,
    /// Do not draw ribs.
    #[arg(long)]
    pub no_ribs: bool,
    /// What "left" in the captions names: `image` (the image's left half, as QaTa-COV19) or `patient`
    /// (the patient's left, drawn on the image's right).
    #[arg(long, default_value = "image")]
    pub laterality: SideConvention,
}

pub fn run(c: DataCommand) -> anyhow::Result<i32> {
    match c {
        DataCommand::Check(a) => check(a),
        DataCommand::Phantom(a) => phantom(a),
        DataCommand::Show(a) => show(a),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<i32> {
    let format = a.format.as_deref().map(str::parse::<Format>).transpose()?;
    let opts = CheckOptions {
        decode: !a.no_decode,
        workers: a.workers,
        decode_options: DecodeOptions {
            window: parse_window(&a.window)?,
        },
        examples: a.examples,
        expected_laterality: match (&a.config, a.laterality) {
            (Some(c), _) => Some(tgcnet_train::RunConfig::from_file(c)?.model.laterality),
            (None, l) => l,
        },
    };
    let t0 = std::time::Instant::now();
    let report = tgcnet_data::check(&a.path, format, &opts).context("data check")?;
    let text = if a.json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        format!("{report}(checked in {:.1} s)\n", t0.elapsed().as_secs_f64())
    };
    emit(&text)?;
    Ok(if report.has_errors() { 2 } else { 0 })
}

fn phantom(a: PhantomArgs) -> anyhow::Result<i32> {
    let cfg = PhantomConfig {
        n_train: a.n_train,
        n_val: a.n_val,
        size: a.size,
        seed: a.seed,
        text_necessary: a.text_necessary,
        ribs: !a.no_ribs,
        laterality: a.laterality,
    };
    let s = tgcnet_data::generate_phantom(&a.out, &cfg).context("writing the phantom dataset")?;
    println!(
        "phantom dataset: {} train + {} val images of {}x{} in {}{}",
        s.train,
        s.val,
        cfg.size,
        cfg.size,
        s.dir.display(),
        if cfg.text_necessary {
            " (text-necessary)"
        } else {
            ""
        }
    );
    Ok(0)
}

fn show(a: ShowArgs) -> anyhow::Result<i32> {
    let format = a.format.as_deref().map(str::parse::<Format>).transpose()?;
    let ds = tgcnet_data::Dataset::open(&a.path, format)?;
    let samples = ds.split(&a.split)?;
    println!(
        "{} (format {}): split {} has {} samples",
        ds.root.display(),
        ds.format,
        tgcnet_data::canonical_split(&a.split),
        samples.len()
    );
    let opts = tgcnet_data::SampleOptions {
        normalize_captions: !a.no_normalize_captions,
        decode: DecodeOptions {
            window: parse_window(&a.window)?,
        },
        ..Default::default()
    };
    for s in samples.iter().take(a.n) {
        println!("{} [{}]", s.id, s.source);
        println!("  image: {}", s.image_path.display());
        if let Some(m) = &s.mask_path {
            println!("  mask:  {}", m.display());
        }
        if let Some(sl) = s.slice {
            println!("  slice: {} along axis {}", sl.index, sl.axis);
        }
        println!("  text:  {:?}", s.text(opts.normalize_captions));
        if let Some(z) = s.meta.zones {
            let names: Vec<&str> = tgcnet_data::caption::ZONE_NAMES
                .iter()
                .zip(z)
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect();
            println!("  zones: {}", names.join(", "));
        }
        if a.load > 0 {
            match tgcnet_data::load_sample(s, a.load, &opts) {
                Ok(l) => {
                    let fg = l
                        .mask
                        .as_ref()
                        .map(|m| m.iter().sum::<f32>() / m.len().max(1) as f32);
                    println!(
                        "  loaded: original {}x{}, mask foreground {}",
                        l.original_size.0,
                        l.original_size.1,
                        fg.map(|f| format!("{:.1}%", 100.0 * f))
                            .unwrap_or_else(|| "(no mask)".into())
                    );
                }
                Err(e) => println!("  error: {e}"),
            }
        }
    }
    Ok(0)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
