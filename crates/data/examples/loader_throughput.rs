//! Measures the batch loader: images per second for decode + augment + batch.
//!
//! ```text
//! cargo run --release -p tgcnet-data --example loader_throughput -- [DATASET] [SPLIT] [SIZE] [BATCH] [WORKERS] [MAX_BATCHES]
//! ```
//! Defaults: /work/shared/data/qata-cov19-v2, train, 224, 16, all cores, the whole split (one epoch).

use std::path::PathBuf;
use std::time::Instant;

use tgcnet_data::{Dataset, LoaderConfig, loader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let path = PathBuf::from(arg(0, "/work/shared/data/qata-cov19-v2"));
    let split = arg(1, "train");
    let size: usize = arg(2, "224").parse()?;
    let batch: usize = arg(3, "16").parse()?;
    let workers: usize = arg(4, "0").parse()?;
    let max_batches: usize = arg(5, "0").parse()?;

    let ds = Dataset::open(&path, None)?;
    let samples = ds.split(&split)?;
    let threads = if workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        workers
    };
    for augment in [false, true] {
        let cfg = LoaderConfig {
            image_size: size,
            batch_size: batch,
            shuffle: true,
            augment,
            workers,
            seed: 1,
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut n = 0usize;
        let mut batches = 0usize;
        for b in loader(samples, &cfg) {
            let b = b?;
            n += b.batch;
            batches += 1;
            if max_batches > 0 && batches >= max_batches {
                break;
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{} split {split}: {n} images in {batches} batches of {batch} at {size}x{size}, augment {augment}, {threads} threads: {dt:.2} s, {:.0} images/s",
            path.display(),
            n as f64 / dt
        );
    }
    Ok(())
}
