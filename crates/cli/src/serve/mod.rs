//! `tgcnet serve`: the segmenter as an HTTP service with a web page.
//!
//! - `POST /v1/segment`: a picture (PNG, JPEG or DICOM) and its report, as multipart form data
//!   (`image`, `text`, optional `threshold`, `laterality`) or JSON (`{"image": BASE64, "text": ...}`).
//!   JSON comes back (foreground fraction, the mask, overlay, heatmap, probabilities and picture as PNG
//!   base64, timings), or the mask PNG itself for `Accept: image/png`.
//! - `GET /healthz`, `GET /v1/model` (config, parameters, threshold), `GET /` (the page, no CDN).
//!
//! Inference runs on a fixed pool of worker threads fed by a bounded queue: a full queue answers 503
//! with Retry-After at once, a request waits at most `--timeout` (504). Safe defaults: loopback only
//! (a warning otherwise), 20 MB uploads (413), 40 M decoded pixels and 1,000 caption characters (400);
//! requests name no file on the server; a panic while decoding or segmenting answers 500 and the
//! worker lives on.

mod api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tgcnet_infer::Segmenter;

use crate::device::DeviceArg;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The model to serve.
    #[arg(long, default_value = "checkpoints/qata-small.safetensors")]
    pub checkpoint: PathBuf,
    /// Address to listen on; a non-loopback address exposes the service to the network (warned).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Inference threads (each segmentation already uses every core).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Requests waiting for a worker before new ones get 503.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Largest accepted request body, in MB (larger: 413).
    #[arg(long, default_value_t = 20)]
    pub max_upload_mb: usize,
    /// Largest accepted picture, in decoded pixels (larger: 400, before its pixels are decoded).
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Longest accepted report, in characters.
    #[arg(long, default_value_t = 1000)]
    pub max_caption_chars: usize,
    /// Seconds a request may wait for its result (then 504).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Default probability threshold (a request may give its own). Default: the model's
    /// (`[model] threshold`, else 0.5).
    #[arg(long, value_parser = crate::train_cmd::probability)]
    pub threshold: Option<f32>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Limits and defaults the handlers apply.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload: usize,
    pub max_pixels: u64,
    pub max_caption_chars: usize,
    pub timeout: Duration,
    pub threshold: f32,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<i32> {
    let device = a.device.device()?;
    let segmenter =
        Arc::new(Segmenter::load(&a.checkpoint, &device).context("loading the model to serve")?);
    let limits = Limits {
        max_upload: a.max_upload_mb * 1024 * 1024,
        max_pixels: a.max_pixels,
        max_caption_chars: a.max_caption_chars,
        timeout: Duration::from_secs(a.timeout),
        threshold: a.threshold.unwrap_or(segmenter.config().mask_threshold()),
    };
    let pool = api::Pool::start(segmenter.clone(), a.workers.max(1), a.queue.max(1));
    let state = Arc::new(api::AppState {
        segmenter,
        pool,
        limits,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .with_context(|| format!("binding {}", a.addr))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            eprintln!(
                "warning: listening on {local}, reachable from other machines; tgcnet serve has no authentication"
            );
        }
        // The first line on stdout is the address (tests read it when --addr has port 0).
        println!("listening on http://{local}");
        eprintln!(
            "serving {} ({} parameters) at http://{local}/ ; Ctrl-C stops",
            a.checkpoint.display(),
            state.segmenter.num_params()
        );
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })?;
    Ok(0)
}
