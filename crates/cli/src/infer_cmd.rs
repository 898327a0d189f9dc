//! `tgcnet infer`: one picture, a CT volume (a NIfTI file or a DICOM series folder), every row of a
//! manifest, or every picture of a folder with one caption, through the inference library
//! ([`tgcnet_infer::Segmenter`]) in batches. Masks, overlays and heatmaps come back at each input's own
//! size; a volume's mask is a NIfTI volume with the input's geometry; a folder or manifest run also
//! writes `results.csv`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use tgcnet_data::imageio::{parse_window, read_image, read_mask};
use tgcnet_data::nifti::is_nifti_path;
use tgcnet_data::{
    BadSamplePolicy, Dataset, DecodeOptions, Plane, Sample, ScanVolume, SideConvention,
};
use tgcnet_eval::Confusion;
use tgcnet_infer::{
    SegmentOptions, Segmentation, Segmenter, VolumeOptions, VolumeSegmentation, gray, overlay_strip,
};
use tgcnet_train::evaluate::{safe_name, write_png};

use crate::device::DeviceArg;

#[derive(Args, Debug)]
pub struct InferArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// One picture, or a CT volume: a NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series,
    /// segmented slice by slice (with --text and --out) ...
    #[arg(long, requires_all = ["text", "out"], conflicts_with_all = ["manifest", "images"])]
    pub image: Option<PathBuf>,
    /// The caption: of --image, or of every picture in --images.
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    /// The mask of --image: a PNG (0/255) for a picture; for a volume a NIfTI mask volume
    /// (MASK.nii.gz or .nii: uint8 0/1, the input's dimensions, voxel size, qform and sform).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// For a volume: a PNG of overlays (mask in red) of the slices with lesion, 8 to a row (at most
    /// 64 slices, evenly picked).
    #[arg(long, conflicts_with_all = ["manifest", "images"])]
    pub overlay_strip: Option<PathBuf>,
    /// With --overlay-strip: every K-th slice instead of the slices with lesion.
    #[arg(long, value_name = "K", requires = "overlay_strip")]
    pub strip_every: Option<usize>,
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// VLCM's text-pixel similarity (finest VLCM scale), upsampled, over the image.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
    /// ... or every row of a manifest CSV (`image,text`, optional `mask`, `id`, `slice`) ...
    #[arg(long, requires = "out_dir", conflicts_with = "images")]
    pub manifest: Option<PathBuf>,
    /// ... or every picture (PNG, JPEG, DICOM) of a folder, all with --text.
    #[arg(long, requires_all = ["out_dir", "text"])]
    pub images: Option<PathBuf>,
    /// Where a manifest or folder run writes NAME_mask.png, NAME_overlay.png, NAME_heatmap.png and
    /// results.csv (NAME: the row's `id`, else the picture's file name; rows that would share a name
    /// get their row number appended).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Pictures (or a volume's slices) per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Probability above which a pixel is lesion. Default: the model's (`[model] threshold`, else 0.5;
    /// `tgcnet info --checkpoint` shows it).
    #[arg(long, value_parser = crate::train_cmd::probability)]
    pub threshold: Option<f32>,
    /// `fail` (default): stop at the first picture that cannot be read; `skip`: leave it out, list it in
    /// results.csv (column `error`) and go on.
    #[arg(long, default_value = "fail")]
    pub on_bad_sample: BadSamplePolicy,
    #[arg(long)]
    pub no_normalize_captions: bool,
    /// What "left" in your text names: `patient` (the patient's left, as a radiologist writes) or
    /// `image` (the image's left half). Left and right are exchanged when it differs from the model's
    /// convention (`tgcnet info --checkpoint` shows it; QaTa-COV19 models use `image`). Default: the model's.
    #[arg(long)]
    pub laterality: Option<SideConvention>,
    /// CT window for DICOM/NIfTI input: lung, mediastinum, abdomen, none, or WIDTH,LEVEL.
    #[arg(long, default_value = "lung")]
    pub window: String,
    /// Test-time views whose logits are averaged with the model's own: input sides in pixels and/or
    /// `flip`, comma-separated (e.g. `--tta 160`); `none`: one forward pass. Default: the model's
    /// `[model.tta]` (`tgcnet info --checkpoint` shows it).
    #[arg(long, value_parser = crate::train_cmd::tta_views)]
    pub tta: Option<tgcnet_model::TtaConfig>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// One picture to segment.
struct Job {
    /// 1-based position in the manifest or folder listing.
    row: usize,
    name: String,
    sample: Sample,
}

/// One line of results.csv.
#[derive(serde::Serialize)]
struct ResultRow {
    row: usize,
    id: String,
    image: String,
    caption: String,
    mask_file: String,
    foreground_fraction: Option<f64>,
    dice: Option<f64>,
    iou: Option<f64>,
    error: String,
}

impl InferArgs {
    /// `--threshold`; `infer_cmd` fills it with the model's when it is not given.
    fn threshold(&self) -> f32 {
        self.threshold.unwrap_or(0.5)
    }
}

pub fn infer_cmd(mut a: InferArgs) -> anyhow::Result<i32> {
    let device = a.device.device()?;
    let segmenter = Segmenter::load(&a.checkpoint, &device)?;
    a.threshold = Some(a.threshold.unwrap_or(segmenter.config().mask_threshold()));
    let options = SegmentOptions {
        normalize_captions: !a.no_normalize_captions,
        laterality: a.laterality,
        decode: DecodeOptions {
            window: parse_window(&a.window)?,
        },
        tta: match &a.tta {
            Some(t) => {
                t.validate(segmenter.config().clip.model.vision.patch_size)?;
                Some(t.clone())
            }
            None => None,
        },
    };
    let views = options.tta.as_ref().unwrap_or(&segmenter.config().tta);
    if views.is_active() {
        eprintln!("test-time views averaged: {views}");
    }
    let model_sides = segmenter.config().laterality;
    if let Some(user) = a.laterality
        && user != model_sides
    {
        eprintln!(
            "your text names sides in the `{user}` convention, the model in `{model_sides}`: left and right are exchanged before segmenting"
        );
    }
    if let (Some(image), Some(text), Some(out)) = (&a.image, &a.text, &a.out) {
        if is_volume(image, out)? {
            return volume(&a, &segmenter, &options, image, text, out);
        }
        if a.overlay_strip.is_some() {
            bail!(
                "--overlay-strip is for volumes (a NIfTI file or a DICOM series folder); use --overlay"
            );
        }
        return one(&a, &segmenter, &options, image, text, out);
    }
    let Some(dir) = &a.out_dir else {
        bail!(
            "give --image IMG --text TEXT --out MASK, --manifest CSV --out-dir DIR, or --images DIR --text TEXT --out-dir DIR"
        );
    };
    let samples: Vec<Sample> = match (&a.manifest, &a.images, &a.text) {
        (Some(m), _, _) => Dataset::open(m, None)?
            .splits
            .into_values()
            .flatten()
            .collect(),
        (None, Some(folder), Some(text)) => folder_samples(folder, text)?,
        _ => bail!("give --manifest CSV or --images DIR with --text"),
    };
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let jobs = name_jobs(samples);
    let rows = run_jobs(&a, &segmenter, &options, &jobs, dir)?;
    let failed = rows.iter().filter(|r| !r.error.is_empty()).count();
    let path = dir.join("results.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        w.serialize(r)?;
    }
    tgcnet_io::write_atomic(&path, &w.into_inner()?)?;
    println!(
        "{} pictures segmented, {failed} skipped; masks, overlays and {} in {}",
        rows.len() - failed,
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        dir.display()
    );
    if failed > 0 {
        eprintln!("skipped (see the `error` column of {}):", path.display());
        for r in rows.iter().filter(|r| !r.error.is_empty()) {
            eprintln!("  row {}: {}", r.row, r.error);
        }
    }
    Ok(0)
}

fn one(
    a: &InferArgs,
    segmenter: &Segmenter,
    options: &SegmentOptions,
    image: &Path,
    text: &str,
    out: &Path,
) -> anyhow::Result<i32> {
    // The error names the picture already.
    let (plane, r) = segmenter.segment_file(image, text, options)?;
    let picture = gray(&plane);
    write_png(&r.mask_image(a.threshold()), out)?;
    if let Some(o) = &a.overlay {
        write_png(&r.overlay(&picture, a.threshold()), o)?;
    }
    if let Some(h) = &a.heatmap {
        match r.heatmap(&picture) {
            Some(img) => write_png(&img, h)?,
            None => bail!("--heatmap: this model has no VLCM similarity map (text or VLCM is off)"),
        }
    }
    let fg = r.mask(a.threshold()).iter().filter(|&&m| m).count();
    println!(
        "{}: {} foreground pixels of {}",
        out.display(),
        fg,
        r.probabilities.len()
    );
    Ok(0)
}

/// Whether `--image` is segmented as a volume: a folder (a DICOM series), or a NIfTI file written to a
/// NIfTI mask or holding more than one slice (whose mask cannot be one PNG).
fn is_volume(image: &Path, out: &Path) -> anyhow::Result<bool> {
    if image.is_dir() {
        if !is_nifti_path(out) {
            bail!(
                "--out {}: a DICOM series' mask is a NIfTI volume: give --out NAME.nii.gz",
                out.display()
            );
        }
        return Ok(true);
    }
    if !is_nifti_path(image) {
        if is_nifti_path(out) {
            bail!(
                "--out {}: NIfTI masks are written for volumes (a .nii/.nii.gz file or a DICOM series folder); {} is a picture: give --out NAME.png",
                out.display(),
                image.display()
            );
        }
        return Ok(false);
    }
    let slices = ScanVolume::open_nifti(image)?.n_slices();
    if slices > 1 && !is_nifti_path(out) {
        bail!(
            "{}: a volume of {slices} slices: its mask is a volume too: give --out NAME.nii.gz",
            image.display()
        );
    }
    Ok(is_nifti_path(out))
}

/// Segments every axial slice of a volume and writes the mask volume (and the overlay strip).
fn volume(
    a: &InferArgs,
    segmenter: &Segmenter,
    options: &SegmentOptions,
    image: &Path,
    text: &str,
    out: &Path,
) -> anyhow::Result<i32> {
    if a.overlay.is_some() || a.heatmap.is_some() {
        bail!(
            "--overlay and --heatmap are for pictures; for a volume use --overlay-strip FILE.png"
        );
    }
    let vol = ScanVolume::open(image)?;
    let vopts = VolumeOptions {
        batch_size: a.batch_size,
        threshold: a.threshold(),
    };
    let r = segmenter.segment_volume(&vol, text, options, &vopts)?;
    vol.write_mask(out, &r.voxels)?;
    if let Some(strip) = &a.overlay_strip {
        let ks = strip_slices(&r, a.strip_every);
        write_png(&overlay_strip(&vol, &r, &ks, 8, options)?, strip)?;
    }
    let lesion = r.slices_with_lesion().len();
    println!(
        "{}: {} lesion voxels ({:.2} ml) in {lesion} of {} slices ({}x{} voxels each), {:.1} s",
        out.display(),
        r.foreground(),
        r.foreground() as f64 * vol.voxel_volume_mm3() / 1000.0,
        vol.n_slices(),
        vol.dims[0],
        vol.dims[1],
        r.total_ms / 1000.0
    );
    Ok(0)
}

/// The slices of the overlay strip: every K-th, else those with lesion (else 8 evenly spaced, so that
/// the strip still shows the scan), at most 64 evenly picked.
fn strip_slices(r: &VolumeSegmentation, every: Option<usize>) -> Vec<usize> {
    let n = r.slice_foreground.len();
    let mut ks = match every {
        Some(k) => (0..n).step_by(k.max(1)).collect(),
        None => r.slices_with_lesion(),
    };
    if ks.is_empty() {
        ks = (0..8.min(n)).map(|t| t * n / 8.min(n)).collect();
    }
    if ks.len() > 64 {
        ks = (0..64).map(|t| ks[t * ks.len() / 64]).collect();
    }
    ks
}

/// The pictures of a folder (PNG, JPEG, DICOM), sorted by name, each with `text`.
fn folder_samples(folder: &Path, text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("{}: cannot list the folder", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["png", "jpg", "jpeg", "dcm", "dicom"]
                        .contains(&e.to_ascii_lowercase().as_str())
                })
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!(
            "{}: no PNG, JPEG or DICOM picture in the folder",
            folder.display()
        );
    }
    Ok(paths
        .into_iter()
        .map(|p| Sample {
            id: p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: tgcnet_data::SourceRef {
                file: p.clone(),
                location: "--images".into(),
            },
            image_path: p,
            mask_path: None,
            slice: None,
            label: None,
            caption: text.to_string(),
            meta: tgcnet_data::CaptionMeta::parse(text),
        })
        .collect())
}

/// Output names: the sample's id (the manifest's `id`, else the file name), file-safe; a name seen
/// before gets the row number appended, so that one picture with several captions keeps every result.
fn name_jobs(samples: Vec<Sample>) -> Vec<Job> {
    let mut used = HashSet::new();
    samples
        .into_iter()
        .enumerate()
        .map(|(i, sample)| {
            let row = i + 1;
            let mut name = safe_name(&sample.id);
            if !used.insert(name.clone()) {
                name = format!("{name}_{row}");
                used.insert(name.clone());
            }
            Job { row, name, sample }
        })
        .collect()
}

fn run_jobs(
    a: &InferArgs,
    segmenter: &Segmenter,
    options: &SegmentOptions,
    jobs: &[Job],
    dir: &Path,
) -> anyhow::Result<Vec<ResultRow>> {
    let mut rows = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(a.batch_size.max(1)) {
        let mut ready: Vec<(&Job, Plane)> = Vec::new();
        for job in chunk {
            match read_image(&job.sample.image_path, job.sample.slice, &options.decode) {
                Ok(p) => ready.push((job, p)),
                Err(e) if a.on_bad_sample == BadSamplePolicy::Skip => {
                    rows.push(row_for(job, None, None, &e.to_string()));
                }
                Err(e) => return Err(e).context(format!("row {}", job.row)),
            }
        }
        let items: Vec<(&Plane, &str)> = ready
            .iter()
            .map(|(j, p)| (p, j.sample.caption.as_str()))
            .collect();
        let results = segmenter.segment_batch(&items, options)?;
        for ((job, plane), r) in ready.iter().zip(results) {
            let written =
                write_outputs(a, dir, job, plane, &r).and_then(|()| scores(job, &r, a.threshold()));
            match written {
                Ok(score) => rows.push(row_for(job, Some((&r, a.threshold())), score, "")),
                Err(e) if a.on_bad_sample == BadSamplePolicy::Skip => {
                    rows.push(row_for(job, None, None, &format!("{e:#}")));
                }
                Err(e) => return Err(e.context(format!("row {}", job.row))),
            }
        }
    }
    rows.sort_by_key(|r| r.row);
    Ok(rows)
}

fn write_outputs(
    a: &InferArgs,
    dir: &Path,
    job: &Job,
    plane: &Plane,
    r: &Segmentation,
) -> anyhow::Result<()> {
    let picture = gray(plane);
    write_png(
        &r.mask_image(a.threshold()),
        &dir.join(format!("{}_mask.png", job.name)),
    )?;
    write_png(
        &r.overlay(&picture, a.threshold()),
        &dir.join(format!("{}_overlay.png", job.name)),
    )?;
    if let Some(h) = r.heatmap(&picture) {
        write_png(&h, &dir.join(format!("{}_heatmap.png", job.name)))?;
    }
    Ok(())
}

/// Dice and IoU against the row's mask, when it has one.
fn scores(job: &Job, r: &Segmentation, threshold: f32) -> anyhow::Result<Option<(f64, f64)>> {
    let Some(mask) = &job.sample.mask_path else {
        return Ok(None);
    };
    let raw = read_mask(mask, job.sample.slice)?;
    if (raw.width, raw.height) != (r.width, r.height) {
        bail!(
            "{}: the mask is {}x{}, the picture {}x{}",
            mask.display(),
            raw.width,
            raw.height,
            r.width,
            r.height
        );
    }
    let truth: Vec<bool> = raw
        .binarize(job.sample.label)
        .into_iter()
        .map(|v| v > 0)
        .collect();
    let c = Confusion::from_masks(&r.mask(threshold), &truth);
    Ok(Some((c.dice(), c.iou())))
}

fn row_for(
    job: &Job,
    result: Option<(&Segmentation, f32)>,
    score: Option<(f64, f64)>,
    error: &str,
) -> ResultRow {
    ResultRow {
        row: job.row,
        id: job.sample.id.clone(),
        image: job.sample.image_path.display().to_string(),
        caption: job.sample.caption.clone(),
        mask_file: if result.is_some() {
            format!("{}_mask.png", job.name)
        } else {
            String::new()
        },
        foreground_fraction: result.map(|(r, t)| r.foreground_fraction(t)),
        dice: score.map(|s| s.0),
        iou: score.map(|s| s.1),
        error: error.to_string(),
    }
}
