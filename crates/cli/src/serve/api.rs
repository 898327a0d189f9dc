//! Routes, request parsing and the inference pool of `tgcnet serve`.

// Handlers answer a rejected request with the `Response` itself (axum's idiom); it is built once per
// request on the error path, so its size (clippy's `result_large_err`) costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tgcnet_data::{DecodeOptions, SideConvention};
use tgcnet_infer::{SegmentOptions, Segmentation, Segmenter, gray};

use super::Limits;

const PAGE: &str = include_str!("page.html");

pub struct AppState {
    pub segmenter: Arc<Segmenter>,
    pub pool: Pool,
    pub limits: Limits,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let body_limit = state.limits.max_upload;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(healthz))
        .route("/v1/model", get(model))
        .route("/v1/segment", post(segment))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(log))
        .with_state(state)
}

/// One line per request on stderr: method, path, status, milliseconds.
async fn log(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = Instant::now();
    let res = next.run(req).await;
    eprintln!(
        "{method} {path} {} {:.1} ms",
        res.status().as_u16(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    res
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn model(State(s): State<Shared>) -> Response {
    let cfg = s.segmenter.config();
    axum::Json(json!({
        "checkpoint": s.segmenter.checkpoint().map(|p| p.display().to_string()),
        "parameters": s.segmenter.num_params(),
        "image_size": cfg.image_size,
        "text": cfg.text,
        "laterality": cfg.laterality,
        "threshold": s.limits.threshold,
        "limits": {
            "max_upload_bytes": s.limits.max_upload,
            "max_pixels": s.limits.max_pixels,
            "max_caption_chars": s.limits.max_caption_chars,
            "timeout_s": s.limits.timeout.as_secs(),
        },
        "config": cfg,
    }))
    .into_response()
}

/// What a request asks for, whichever its encoding.
struct Ask {
    image: Bytes,
    text: String,
    threshold: Option<f32>,
    laterality: Option<SideConvention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAsk {
    /// The picture's file, base64 (standard alphabet; a `data:` URL prefix is accepted).
    image: String,
    text: String,
    threshold: Option<f32>,
    laterality: Option<SideConvention>,
}

type Rejection = Response;

async fn parse(req: Request, state: &Shared) -> Result<Ask, Rejection> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let ask = if kind.starts_with("multipart/form-data") {
        parse_multipart(req, state).await?
    } else if kind.starts_with("application/json") {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| error(e.status(), e.body_text()))?;
        let j: JsonAsk = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("JSON body: {e}")))?;
        let b64 = match j.image.split_once(";base64,") {
            Some((_, data)) => data,
            None => j.image.as_str(),
        };
        let image = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("`image` is not base64: {e}"),
                )
            })?;
        Ask {
            image: Bytes::from(image),
            text: j.text,
            threshold: j.threshold,
            laterality: j.laterality,
        }
    } else {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send multipart/form-data (fields image, text) or application/json ({\"image\": base64, \"text\": ...})",
        ));
    };
    validate(ask, &state.limits)
}

async fn parse_multipart(req: Request, state: &Shared) -> Result<Ask, Rejection> {
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| error(e.status(), e.body_text()))?;
    let (mut image, mut text, mut threshold, mut laterality) = (None, None, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| error(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| error(e.status(), e.body_text()))?;
        let as_text = || {
            String::from_utf8(data.to_vec()).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("field `{name}` is not UTF-8"),
                )
            })
        };
        match name.as_str() {
            "image" => image = Some(data.clone()),
            "text" => text = Some(as_text()?),
            "threshold" => threshold = Some(as_text()?),
            "laterality" => laterality = Some(as_text()?),
            // Unknown fields are ignored, as forms carry extras; none of them names a server file.
            _ => {}
        }
    }
    let threshold = match threshold {
        Some(t) if !t.trim().is_empty() => Some(t.trim().parse::<f32>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("`threshold` = {t:?} is not a number"),
            )
        })?),
        _ => None,
    };
    let laterality = match laterality {
        Some(l) if !l.trim().is_empty() => Some(
            l.parse::<SideConvention>()
                .map_err(|e| error(StatusCode::BAD_REQUEST, e))?,
        ),
        _ => None,
    };
    Ok(Ask {
        image: image.ok_or_else(|| error(StatusCode::BAD_REQUEST, "no `image` field"))?,
        text: text.ok_or_else(|| error(StatusCode::BAD_REQUEST, "no `text` field"))?,
        threshold,
        laterality,
    })
}

fn validate(ask: Ask, limits: &Limits) -> Result<Ask, Rejection> {
    if ask.image.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "the picture is empty"));
    }
    if ask.text.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the report is empty; tgcnet segments what the text describes",
        ));
    }
    let chars = ask.text.chars().count();
    if chars > limits.max_caption_chars {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "the report has {chars} characters, more than {}",
                limits.max_caption_chars
            ),
        ));
    }
    if let Some(t) = ask.threshold
        && !(t.is_finite() && (0.0..=1.0).contains(&t))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("`threshold` = {t} is not in [0, 1]"),
        ));
    }
    Ok(ask)
}

async fn segment(State(s): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    let t0 = Instant::now();
    let ask = match parse(req, &s).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let threshold = ask.threshold.unwrap_or(s.limits.threshold);
    let (reply, wait) = tokio::sync::oneshot::channel();
    let job = Job {
        image: ask.image,
        text: ask.text,
        options: SegmentOptions {
            laterality: ask.laterality,
            decode: DecodeOptions::default(),
            ..SegmentOptions::default()
        },
        max_pixels: s.limits.max_pixels,
        queued: Instant::now(),
        reply,
    };
    if let Err(busy) = s.pool.submit(job) {
        return busy;
    }
    let done = match tokio::time::timeout(s.limits.timeout, wait).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the worker stopped"),
        Err(_) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no result within {} s", s.limits.timeout.as_secs()),
            );
        }
    };
    let done = match done {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let wants_png = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("image/png") && !a.contains("application/json"));
    respond(done, threshold, wants_png, t0)
}

/// A worker's result: the decoded picture and its segmentation, with the queue wait.
struct Done {
    picture: image::GrayImage,
    result: Segmentation,
    queue_ms: f64,
    decode_ms: f64,
}

/// A failed job: status and message.
struct Failed(StatusCode, String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn png(img: &impl PngEncodable) -> Result<Vec<u8>, Response> {
    img.png().map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding PNG: {e}"),
        )
    })
}

trait PngEncodable {
    fn png(&self) -> image::ImageResult<Vec<u8>>;
}

impl<P: image::Pixel<Subpixel = u8> + image::PixelWithColorType> PngEncodable
    for image::ImageBuffer<P, Vec<u8>>
{
    fn png(&self) -> image::ImageResult<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
        Ok(out)
    }
}

fn respond(done: Done, threshold: f32, wants_png: bool, t0: Instant) -> Response {
    let r = &done.result;
    let t_encode = Instant::now();
    let fg = r.foreground_fraction(threshold);
    if wants_png {
        return match png(&r.mask_image(threshold)) {
            Ok(bytes) => {
                let mut res = (StatusCode::OK, bytes).into_response();
                let h = res.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
                if let Ok(v) = HeaderValue::from_str(&format!("{fg:.6}")) {
                    h.insert("x-foreground-fraction", v);
                }
                res
            }
            Err(e) => e,
        };
    }
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let encoded = (|| -> Result<Value, Response> {
        Ok(json!({
            "mask_png": b64(png(&r.mask_image(threshold))?),
            "overlay_png": b64(png(&r.overlay(&done.picture, threshold))?),
            "heatmap_png": match r.heatmap(&done.picture) {
                Some(h) => Value::String(b64(png(&h)?)),
                None => Value::Null,
            },
            "probability_png": b64(png(&r.probability_image())?),
            "picture_png": b64(png(&done.picture)?),
        }))
    })();
    let mut body = match encoded {
        Ok(v) => v,
        Err(e) => return e,
    };
    let encode_ms = t_encode.elapsed().as_secs_f64() * 1e3;
    let extra = json!({
        "foreground_fraction": fg,
        "width": r.width,
        "height": r.height,
        "threshold": threshold,
        "caption": r.caption,
        "timings_ms": {
            "queue": done.queue_ms,
            "decode": done.decode_ms,
            "preprocess": r.timings.preprocess_ms,
            "model": r.timings.model_ms,
            "postprocess": r.timings.postprocess_ms,
            "encode": encode_ms,
            "total": t0.elapsed().as_secs_f64() * 1e3,
        },
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    axum::Json(body).into_response()
}

/// One segmentation to run on the pool.
pub struct Job {
    image: Bytes,
    text: String,
    options: SegmentOptions,
    max_pixels: u64,
    queued: Instant,
    reply: tokio::sync::oneshot::Sender<Result<Done, Failed>>,
}

/// Worker threads behind a bounded queue.
pub struct Pool {
    queue: SyncSender<Job>,
}

impl Pool {
    pub fn start(segmenter: Arc<Segmenter>, workers: usize, capacity: usize) -> Self {
        let (queue, jobs) = sync_channel::<Job>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..workers {
            let (jobs, segmenter) = (jobs.clone(), segmenter.clone());
            std::thread::Builder::new()
                .name(format!("tgcnet-serve-{i}"))
                .spawn(move || work(&segmenter, &jobs))
                .ok();
        }
        Self { queue }
    }

    /// Queues `job`, or answers 503 at once when the queue is full.
    fn submit(&self, job: Job) -> Result<(), Response> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                let mut r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: every worker and queue place is taken; retry",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Err(r)
            }
            Err(TrySendError::Disconnected(_)) => Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no inference worker is running",
            )),
        }
    }
}

fn work(segmenter: &Segmenter, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let queue_ms = job.queued.elapsed().as_secs_f64() * 1e3;
        let run = || {
            run_job(
                segmenter,
                &job.image,
                &job.text,
                &job.options,
                job.max_pixels,
            )
        };
        // The model's kernels split every op across rayon's pool; running on it avoids a wake-up per op.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tgcnet_kernels::on_pool(run)
        }))
        .unwrap_or_else(|_| {
            Err(Failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the segmentation panicked".into(),
            ))
        })
        .map(|(picture, result, decode_ms)| Done {
            picture,
            result,
            queue_ms,
            decode_ms,
        });
        // The client may have gone (timeout): nothing to do then.
        let _ = job.reply.send(out);
    }
}

fn run_job(
    segmenter: &Segmenter,
    image: &[u8],
    text: &str,
    options: &SegmentOptions,
    max_pixels: u64,
) -> Result<(image::GrayImage, Segmentation, f64), Failed> {
    let t0 = Instant::now();
    let plane = tgcnet_data::imageio::decode_image_bytes(
        Path::new("the uploaded picture"),
        image,
        &options.decode,
        max_pixels,
    )
    .map_err(|e| Failed(StatusCode::BAD_REQUEST, e.to_string()))?;
    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
    let result = segmenter
        .segment(&plane, text, options)
        .map_err(|e| Failed(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((gray(&plane), result, decode_ms))
}
