//! `tgcnet data …` (owned by the data work: see crates/data).

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum DataCommand {}

pub fn run(c: DataCommand) -> anyhow::Result<i32> {
    match c {}
}
