//! `tgcnet`: text-guided lesion segmentation with TGC-Net (Lin et al., 2025, arXiv 2512.21135).

use clap::{Parser, Subcommand};

mod alloc;
mod args;
mod bench_cmd;
mod clip_cmd;
mod curves_cmd;
mod data_cmd;
mod demo_cmd;
mod demo_report;
mod device;
mod infer_cmd;
mod info_cmd;
mod knowledge_cmd;
mod serve;
mod train_cmd;

#[derive(Parser, Debug)]
#[command(
    name = "tgcnet",
    version,
    about = "Text-guided medical image segmentation (TGC-Net) on CLIP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print CLIP BPE token ids (JSON array per line) for each line of stdin.
    Tokenize(clip_cmd::TokenizeArgs),
    /// Projected, L2-normalised CLIP embeddings of images and texts, as JSON.
    Embed(clip_cmd::EmbedArgs),
    /// Dataset tools: check a dataset, generate the phantom dataset.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train TGC-Net (run directory with config, metrics, curves, checkpoints; --resume continues).
    Train(train_cmd::TrainArgs),
    /// Evaluate a run or checkpoint: Dice, IoU (per-image and global), precision, recall, HD95, by group.
    Eval(train_cmd::EvalArgs),
    /// Segment one image, a manifest or a folder from its text (masks, overlays, heatmaps, results.csv).
    Infer(infer_cmd::InferArgs),
    /// Serve the model over HTTP: a web page, POST /v1/segment, GET /v1/model, GET /healthz.
    Serve(serve::ServeArgs),
    /// The main job: phantom data, train with and without text, evaluate, print Dice side by side.
    Demo(demo_cmd::DemoArgs),
    /// Write a checkpoint's parameters as a parameter file (optionally float16).
    Export(train_cmd::ExportArgs),
    /// Parameters (total, trainable) per module and FLOPs per image of a preset or config.
    Info(info_cmd::InfoArgs),
    /// Learning curves of several runs on the same axes (SVG), from their metrics.csv.
    Curves(curves_cmd::CurvesArgs),
    /// Inference latency and throughput, training step time and peak memory of a preset or config.
    Bench(bench_cmd::BenchArgs),
    /// Radiological knowledge passages for DATE.
    #[command(subcommand)]
    Knowledge(knowledge_cmd::KnowledgeCommand),
}

/// Lets the commands whose output is meant for a pipe end quietly when the reader goes away
/// (`tgcnet info | head`), as Unix tools do, instead of panicking in `println!`. Rust ignores SIGPIPE by
/// default; the long-running commands keep that, so a closed socket or log pipe is an error they report.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    alloc::tune();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Tokenize(_) | Command::Embed(_) | Command::Info(_)
    ) {
        default_sigpipe();
    }
    // The whole command runs on a pool thread (tgcnet_kernels::threads): the tensor ops' parallel loops
    // then run in place instead of waking the pool once per op.
    let result = tgcnet_kernels::on_pool(|| match cli.command {
        Command::Tokenize(a) => clip_cmd::tokenize(a),
        Command::Embed(a) => clip_cmd::embed(a),
        Command::Data(c) => data_cmd::run(c),
        Command::Train(a) => train_cmd::train_cmd(a),
        Command::Eval(a) => train_cmd::eval_cmd(a),
        Command::Infer(a) => infer_cmd::infer_cmd(a),
        Command::Demo(a) => demo_cmd::demo(a),
        Command::Serve(a) => serve::serve(a),
        Command::Export(a) => train_cmd::export_cmd(a),
        Command::Info(a) => info_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Curves(a) => curves_cmd::curves_cmd(a),
        Command::Knowledge(c) => knowledge_cmd::run(c),
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
