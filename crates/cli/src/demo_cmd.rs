//! `tgcnet demo`: the main job on its built-in default. Offline and data-free: generates the phantom chest
//! dataset (text-necessary variant: a caption names only some of the zones that hold lesions, and the
//! mask holds only those), trains the `small` preset with and without text, evaluates both, writes
//! overlays, and prints Dice side by side.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tgcnet_data::{Dataset, PhantomConfig, SideConvention, generate_phantom};
use tgcnet_model::CaptionEncoder;
use tgcnet_train::checkpoint::load_model;
use tgcnet_train::evaluate::{EvalOptions, EvalReport, evaluate, markdown};
use tgcnet_train::trainer::TrainOptions;
use tgcnet_train::{RunConfig, train};

use crate::device::DeviceArg;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Everything goes here: data/, full/, text-off/, overlays/, demo.md.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training epochs per arm.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    #[arg(long, default_value_t = 384)]
    pub n_train: usize,
    #[arg(long, default_value_t = 96)]
    pub n_val: usize,
    /// Side of the phantom images and of the model input.
    #[arg(long, default_value_t = 96)]
    pub size: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Model preset for both arms.
    #[arg(long, default_value = "small")]
    pub preset: String,
    #[command(flatten)]
    pub device: DeviceArg,
}

fn run_config(a: &DemoArgs, text: bool) -> anyhow::Result<RunConfig> {
    let toml = format!(
        "preset = {:?}\n[model]\nimage_size = {}\ntext = {text}\n[train]\nepochs = {}\nbatch_size = 16\nlr = 1e-3\nwarmup_steps = 20\nseed = {}\npatience = 0\naugment = false\n",
        a.preset, a.size, a.epochs, a.seed
    );
    Ok(RunConfig::from_toml_str(&toml, Path::new("<demo config>"))?)
}

pub fn demo(a: DemoArgs) -> anyhow::Result<i32> {
    let data = a.out.join("data");
    eprintln!("generating the phantom dataset in {} ...", data.display());
    let summary = generate_phantom(
        &data,
        &PhantomConfig {
            n_train: a.n_train,
            n_val: a.n_val,
            size: a.size,
            seed: a.seed,
            text_necessary: true,
            ribs: true,
            laterality: SideConvention::Image,
        },
    )?;
    eprintln!("phantom data: {summary:?}");
    let device = a.device.device()?;
    let mut reports: Vec<(&str, EvalReport)> = Vec::new();
    for (name, text) in [("full", true), ("text-off", false)] {
        let run = a.out.join(name);
        let cfg = run_config(&a, text)?;
        let resume = run.join("last.safetensors").exists();
        eprintln!(
            "training `{}` preset, {} ({} epochs) in {} ...",
            a.preset,
            name,
            a.epochs,
            run.display()
        );
        train(
            &cfg,
            &TrainOptions {
                data: &data,
                out: &run,
                resume,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            },
            &device.clone().autodiff(),
        )
        .with_context(|| format!("training the {name} arm"))?;
        let model = load_model(&run.join("best.safetensors"), &device)?;
        let encoder = CaptionEncoder::new(model.config())?;
        let ds = Dataset::open(&data, None)?;
        let report = evaluate(
            &model,
            &encoder,
            ds.split("val")?,
            &EvalOptions {
                save_masks: (name == "full").then(|| a.out.join("overlays")),
                ..EvalOptions::default()
            },
            &device,
        )?;
        let md = markdown(&report, &format!("demo, {name}"));
        tgcnet_clip::weights::write_atomic(&run.join("eval.md"), md.as_bytes())?;
        reports.push((name, report));
    }
    let mut table = String::from(
        "| arm | Dice per-image | IoU per-image | Dice global | IoU global | HD95 (px) |\n|---|---|---|---|---|---|\n",
    );
    for (name, r) in &reports {
        let s = &r.summary;
        table.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            100.0 * s.dice_per_image,
            100.0 * s.iou_per_image,
            100.0 * s.dice_global,
            100.0 * s.iou_global,
            s.hd95_mean.map_or("-".into(), |h| format!("{h:.2}"))
        ));
    }
    let text = format!(
        "# tgcnet demo: phantom chest X-rays, text-necessary variant\n\nValidation split ({} images), `{}` preset at {}px, {} epochs per arm, seed {}. The caption names only some of the zones that hold lesions; only those are in the mask, so a model without text cannot know which lesions to segment.\n\n{table}\nOverlays of the full model: {}\n",
        a.n_val,
        a.preset,
        a.size,
        a.epochs,
        a.seed,
        a.out.join("overlays").display()
    );
    tgcnet_clip::weights::write_atomic(&a.out.join("demo.md"), text.as_bytes())?;
    println!("{text}");
    Ok(0)
}
