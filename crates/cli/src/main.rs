//! `tgcnet`: text-guided lesion segmentation with TGC-Net (Lin et al., 2025, arXiv 2512.21135).

use clap::{Parser, Subcommand};

mod clip_cmd;
mod data_cmd;

#[derive(Parser, Debug)]
#[command(name = "tgcnet", version, about = "Text-guided medical image segmentation (TGC-Net) on CLIP")]
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize(a) => clip_cmd::tokenize(a),
        Command::Embed(a) => clip_cmd::embed(a),
        Command::Data(c) => data_cmd::run(c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
