//! A small DICOM reader: implicit VR little endian (1.2.840.10008.1.2), explicit VR little endian
//! (…1.2.1), deflated explicit VR little endian (…1.2.1.99) and explicit VR big endian (…1.2.2), with or
//! without the 128-byte preamble and `DICM` prefix, and the compressed syntaxes of [`codecs`] (RLE
//! lossless, JPEG baseline/extended 8-bit, JPEG lossless, JPEG 2000): the encapsulated pixel data's
//! fragments are found here and handed to the decoder. It reads the top-level image attributes (rows,
//! columns, samples per pixel, bits allocated/stored, pixel representation, photometric interpretation,
//! number of frames, modality, rescale slope/intercept, window) and the slice geometry (image
//! position/orientation, pixel spacing, slice thickness, instance number, series UID) for reading a
//! series as a volume; sequences are skipped (defined or undefined length, nested). Other transfer
//! syntaxes (JPEG-LS, MPEG, HEVC, JPEG XL, …) are a clear error naming the syntax.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::codecs;
use crate::error::{DataError, Result};

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

type Tag = (u16, u16);
const PIXEL_DATA: Tag = (0x7fe0, 0x0010);
const TS_UID: Tag = (0x0002, 0x0010);
const ROWS: Tag = (0x0028, 0x0010);
const COLS: Tag = (0x0028, 0x0011);
const SPP: Tag = (0x0028, 0x0002);
const PHOTOMETRIC: Tag = (0x0028, 0x0004);
const PLANAR: Tag = (0x0028, 0x0006);
const FRAMES: Tag = (0x0028, 0x0008);
const BITS_ALLOC: Tag = (0x0028, 0x0100);
const BITS_STORED: Tag = (0x0028, 0x0101);
const PIXEL_REPR: Tag = (0x0028, 0x0103);
const WINDOW_CENTER: Tag = (0x0028, 0x1050);
const WINDOW_WIDTH: Tag = (0x0028, 0x1051);
const INTERCEPT: Tag = (0x0028, 0x1052);
const SLOPE: Tag = (0x0028, 0x1053);
const MODALITY: Tag = (0x0008, 0x0060);
const SLICE_THICKNESS: Tag = (0x0018, 0x0050);
const SLICE_SPACING: Tag = (0x0018, 0x0088);
const SERIES_UID: Tag = (0x0020, 0x000e);
const INSTANCE_NUMBER: Tag = (0x0020, 0x0013);
const POSITION: Tag = (0x0020, 0x0032);
const ORIENTATION: Tag = (0x0020, 0x0037);
const PIXEL_SPACING: Tag = (0x0028, 0x0030);

const WANTED: [Tag; 22] = [
    ROWS,
    COLS,
    SPP,
    PHOTOMETRIC,
    PLANAR,
    FRAMES,
    BITS_ALLOC,
    BITS_STORED,
    PIXEL_REPR,
    WINDOW_CENTER,
    WINDOW_WIDTH,
    INTERCEPT,
    SLOPE,
    MODALITY,
    TS_UID,
    SLICE_THICKNESS,
    SLICE_SPACING,
    SERIES_UID,
    INSTANCE_NUMBER,
    POSITION,
    ORIENTATION,
    PIXEL_SPACING,
];

/// Where a slice lies in the patient (DICOM patient coordinates, LPS, millimetres); `None` where the
/// file lacks the attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceGeometry {
    /// Image Position (Patient): the centre of the first transmitted pixel.
    pub position: Option<[f64; 3]>,
    /// Image Orientation (Patient): the direction cosines of a row (towards increasing column index),
    /// then of a column (towards increasing row index).
    pub orientation: Option<[f64; 6]>,
    /// Pixel Spacing: (between rows, between columns).
    pub pixel_spacing: Option<[f64; 2]>,
    /// Slice Thickness in millimetres.
    pub slice_thickness: Option<f64>,
    /// Spacing Between Slices in millimetres.
    pub spacing_between_slices: Option<f64>,
    /// Instance Number (the slice's place in the series as the scanner numbered it).
    pub instance_number: Option<i64>,
    /// Series Instance UID ("" when absent).
    pub series_uid: String,
}

/// A DICOM file's attributes without its pixels ([`read_dicom_header`]).
#[derive(Debug, Clone)]
pub struct DicomHeader {
    /// Rows of a frame.
    pub rows: usize,
    /// Columns of a frame.
    pub cols: usize,
    /// Number of frames (1 for a single image).
    pub frames: usize,
    /// Samples per pixel (1 for grey, 3 for colour).
    pub samples_per_pixel: usize,
    /// E.g. "CT", "CR", "DX", "MR"; empty when absent.
    pub modality: String,
    /// The transfer syntax UID ("" for a file without meta information).
    pub transfer_syntax: String,
    /// Where the slice lies in the patient.
    pub geometry: SliceGeometry,
}

/// A decoded DICOM image (all frames).
#[derive(Debug, Clone)]
pub struct DicomImage {
    /// Rows of a frame.
    pub rows: usize,
    /// Columns of a frame.
    pub cols: usize,
    /// Number of frames (1 for a single image).
    pub frames: usize,
    /// Samples per pixel (1 for grey, 3 for colour).
    pub samples_per_pixel: usize,
    /// E.g. "MONOCHROME2", "MONOCHROME1" (inverted grey scale), "RGB" (also for JPEG and JPEG 2000
    /// colour images written as YBR: their decoders return RGB).
    pub photometric: String,
    /// E.g. "CT", "CR", "DX", "MR"; empty when absent.
    pub modality: String,
    /// Rescale Slope (1 when absent): modality value = stored × slope + intercept.
    pub rescale_slope: f64,
    /// Rescale Intercept (0 when absent).
    pub rescale_intercept: f64,
    /// The file's first (center, width) window, when present.
    pub window: Option<(f64, f64)>,
    /// Raw stored values (sign-extended, no rescale), `[frames, samples_per_pixel, rows, cols]`.
    pub pixels: Vec<f32>,
    /// The transfer syntax UID the file was written in ("" without meta information).
    pub transfer_syntax: String,
    /// Where the slice lies in the patient.
    pub geometry: SliceGeometry,
}

impl DicomImage {
    /// Frame `f` as `[samples_per_pixel, rows, cols]` raw stored values.
    pub fn frame(&self, path: &Path, f: usize) -> Result<&[f32]> {
        let n = self.samples_per_pixel * self.rows * self.cols;
        if f >= self.frames {
            return Err(DataError::image(
                path,
                format!(
                    "frame {f} is out of range (the file has {} frames)",
                    self.frames
                ),
            ));
        }
        Ok(&self.pixels[f * n..(f + 1) * n])
    }

    /// Applies rescale slope/intercept (to Hounsfield units for CT).
    pub fn rescale(&self, v: f32) -> f32 {
        (v as f64 * self.rescale_slope + self.rescale_intercept) as f32
    }
}

/// True when the bytes look like DICOM (the `DICM` prefix after the preamble).
pub fn has_dicom_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// True when the path names a DICOM file by extension (`.dcm`, `.dicom`, `.dic`).
pub fn is_dicom_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        e == "dcm" || e == "dicom" || e == "dic"
    })
}

/// Reads and decodes a DICOM file.
pub fn read_dicom(path: &Path) -> Result<DicomImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_dicom(path, &bytes)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    explicit: bool,
    le: bool,
}

enum Len {
    Defined(usize),
    Undefined,
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize, what: &str) -> std::result::Result<(), String> {
        if self.pos + n > self.b.len() {
            Err(format!(
                "truncated at byte {} while reading {what} ({} bytes needed, {} left)",
                self.pos,
                n,
                self.b.len().saturating_sub(self.pos)
            ))
        } else {
            Ok(())
        }
    }

    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        self.need(2, what)?;
        let a = [self.b[self.pos], self.b[self.pos + 1]];
        self.pos += 2;
        Ok(if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        self.need(4, what)?;
        let a = [
            self.b[self.pos],
            self.b[self.pos + 1],
            self.b[self.pos + 2],
            self.b[self.pos + 3],
        ];
        self.pos += 4;
        Ok(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    /// Reads a tag, VR and length. Item and delimiter tags (group FFFE) never carry a VR.
    fn header(&mut self) -> std::result::Result<(Tag, Option<[u8; 2]>, Len), String> {
        let g = self.u16("a tag")?;
        let e = self.u16("a tag")?;
        let what = format!("element ({g:04X},{e:04X})");
        let (vr, len) = if g == 0xfffe || !self.explicit {
            (None, self.u32(&what)?)
        } else {
            self.need(2, &what)?;
            let vr = [self.b[self.pos], self.b[self.pos + 1]];
            self.pos += 2;
            if matches!(
                &vr,
                b"OB"
                    | b"OD"
                    | b"OF"
                    | b"OL"
                    | b"OV"
                    | b"OW"
                    | b"SQ"
                    | b"SV"
                    | b"UC"
                    | b"UN"
                    | b"UR"
                    | b"UT"
                    | b"UV"
            ) {
                self.need(2, &what)?;
                self.pos += 2;
                (Some(vr), self.u32(&what)?)
            } else {
                (Some(vr), self.u16(&what)? as u32)
            }
        };
        let len = if len == 0xffff_ffff {
            Len::Undefined
        } else {
            Len::Defined(len as usize)
        };
        Ok(((g, e), vr, len))
    }

    fn skip(&mut self, n: usize, tag: Tag) -> std::result::Result<(), String> {
        self.need(n, &format!("the value of ({:04X},{:04X})", tag.0, tag.1))?;
        self.pos += n;
        Ok(())
    }

    /// Skips the items of an undefined-length sequence up to and including its delimiter.
    fn skip_sequence(&mut self, depth: usize) -> std::result::Result<(), String> {
        if depth > 64 {
            return Err("sequences nested deeper than 64 levels".into());
        }
        loop {
            let (tag, _, len) = self.header()?;
            match (tag, len) {
                ((0xfffe, 0xe0dd), _) => return Ok(()),
                ((0xfffe, 0xe000), Len::Defined(n)) => self.skip(n, tag)?,
                ((0xfffe, 0xe000), Len::Undefined) => self.skip_item(depth + 1)?,
                (t, _) => {
                    return Err(format!(
                        "unexpected element ({:04X},{:04X}) inside a sequence at byte {}",
                        t.0, t.1, self.pos
                    ));
                }
            }
        }
    }

    /// Skips the elements of an undefined-length item up to and including its delimiter.
    fn skip_item(&mut self, depth: usize) -> std::result::Result<(), String> {
        loop {
            let (tag, _, len) = self.header()?;
            match (tag, len) {
                ((0xfffe, 0xe00d), _) => return Ok(()),
                (_, Len::Undefined) => self.skip_sequence(depth + 1)?,
                (t, Len::Defined(n)) => self.skip(n, t)?,
            }
        }
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

fn numbers(v: &[u8]) -> Vec<f64> {
    text(v)
        .split('\\')
        .map_while(|s| s.trim().parse().ok())
        .collect()
}

fn first_number(v: &[u8]) -> Option<f64> {
    numbers(v).first().copied()
}

/// Where the pixel data element's value starts in the data set.
enum PixelLoc {
    /// Native pixels: `len` bytes from `start`.
    Native { start: usize, len: usize },
    /// Encapsulated (compressed) pixels: the items from `start` (Basic Offset Table, then fragments).
    Encapsulated { start: usize },
}

/// The data set up to the pixel data: the attributes tgcnet reads, and where the pixels are.
struct Elements<'a> {
    body: Cow<'a, [u8]>,
    le: bool,
    /// The transfer syntax UID ("" when the file has no meta information).
    ts: String,
    values: HashMap<Tag, Vec<u8>>,
    pixel: Option<PixelLoc>,
}

/// How the data set after the file meta information is encoded.
struct Body<'a> {
    bytes: Cow<'a, [u8]>,
    explicit: bool,
    le: bool,
    /// Where the data set starts in `bytes`.
    start: usize,
    /// The transfer syntax UID ("" without meta information).
    ts: String,
    /// The file meta information's values.
    meta: HashMap<Tag, Vec<u8>>,
}

/// Reads the file meta information and picks how the data set is encoded.
fn open_body(bytes: &[u8]) -> std::result::Result<Body<'_>, String> {
    let mut values = HashMap::new();
    if !has_dicom_magic(bytes) {
        // No preamble: guess explicit VR if bytes 4..6 look like a VR, else implicit (little endian).
        if bytes.len() < 8 {
            return Err(format!("not a DICOM file ({} bytes)", bytes.len()));
        }
        let vr_like = bytes[4].is_ascii_uppercase() && bytes[5].is_ascii_uppercase();
        let group = u16::from_le_bytes([bytes[0], bytes[1]]);
        if ![0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028].contains(&group) {
            return Err("not a DICOM file (no DICM prefix and no known leading group)".into());
        }
        return Ok(Body {
            bytes: bytes.into(),
            explicit: vr_like,
            le: true,
            start: 0,
            ts: String::new(),
            meta: values,
        });
    }
    // File meta information: always explicit VR little endian, group 0002.
    let mut r = Reader {
        b: bytes,
        pos: 132,
        explicit: true,
        le: true,
    };
    while r.pos + 4 <= bytes.len() && u16::from_le_bytes([bytes[r.pos], bytes[r.pos + 1]]) == 0x0002
    {
        let (tag, _, len) = r.header()?;
        let Len::Defined(n) = len else {
            return Err("undefined length in the file meta information".into());
        };
        r.need(n, "the file meta information")?;
        values.insert(tag, bytes[r.pos..r.pos + n].to_vec());
        r.pos += n;
    }
    let ts = values.get(&TS_UID).map(|v| text(v)).unwrap_or_default();
    let start = r.pos;
    let (explicit, le) = match ts.as_str() {
        IMPLICIT_LE | "" => (false, true),
        EXPLICIT_BE => (true, false),
        DEFLATED_LE => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(&bytes[start..])
                .read_to_end(&mut out)
                .map_err(|e| format!("deflated data set is corrupt: {e}"))?;
            return Ok(Body {
                bytes: out.into(),
                explicit: true,
                le: true,
                start: 0,
                ts,
                meta: values,
            });
        }
        uid if uid == EXPLICIT_LE || codecs::can_decode(uid) => (true, true),
        other => return Err(codecs::unsupported(other)),
    };
    Ok(Body {
        bytes: bytes.into(),
        explicit,
        le,
        start,
        ts,
        meta: values,
    })
}

/// Parses the data set's elements up to the pixel data (sequences skipped).
fn read_elements(bytes: &[u8]) -> std::result::Result<Elements<'_>, String> {
    let Body {
        bytes: body,
        explicit,
        le,
        start,
        ts,
        meta: mut values,
    } = open_body(bytes)?;
    let mut r = Reader {
        b: &body,
        pos: start,
        explicit,
        le,
    };
    let mut pixel = None;
    while r.b.len() - r.pos >= 8 {
        // (Fewer than 8 bytes left: trailing padding.)
        let (tag, vr, len) = r.header()?;
        match len {
            Len::Undefined if tag == PIXEL_DATA => {
                pixel = Some(PixelLoc::Encapsulated { start: r.pos });
                break;
            }
            Len::Undefined => r.skip_sequence(0)?,
            Len::Defined(n) if tag == PIXEL_DATA => {
                let avail = r.b.len() - r.pos;
                if n > avail {
                    return Err(format!(
                        "truncated pixel data: {n} bytes declared, {avail} present"
                    ));
                }
                pixel = Some(PixelLoc::Native {
                    start: r.pos,
                    len: n,
                });
                break;
            }
            Len::Defined(n) if vr.as_ref() == Some(b"SQ") => r.skip(n, tag)?,
            Len::Defined(n) => {
                r.need(n, &format!("the value of ({:04X},{:04X})", tag.0, tag.1))?;
                if WANTED.contains(&tag) {
                    values.insert(tag, r.b[r.pos..r.pos + n].to_vec());
                }
                r.pos += n;
            }
        }
    }
    Ok(Elements {
        body,
        le,
        ts,
        values,
        pixel,
    })
}

/// The image attributes that say how to read the pixels.
struct Layout {
    rows: usize,
    cols: usize,
    spp: usize,
    frames: usize,
    bits_alloc: u32,
    bits_stored: u32,
    signed: bool,
    planar: bool,
}

impl Elements<'_> {
    fn us(&self, tag: Tag, default: Option<u16>) -> std::result::Result<u16, String> {
        match self.values.get(&tag) {
            Some(v) if v.len() >= 2 => Ok(if self.le {
                u16::from_le_bytes([v[0], v[1]])
            } else {
                u16::from_be_bytes([v[0], v[1]])
            }),
            _ => default.ok_or_else(|| format!("missing attribute ({:04X},{:04X})", tag.0, tag.1)),
        }
    }

    fn num(&self, tag: Tag) -> Option<f64> {
        self.values.get(&tag).and_then(|v| first_number(v))
    }

    fn text(&self, tag: Tag) -> String {
        self.values.get(&tag).map(|v| text(v)).unwrap_or_default()
    }

    fn layout(&self) -> std::result::Result<Layout, String> {
        let rows = self.us(ROWS, None)? as usize;
        let cols = self.us(COLS, None)? as usize;
        let spp = self.us(SPP, Some(1))? as usize;
        let bits_alloc = self.us(BITS_ALLOC, Some(16))? as u32;
        let bits_stored =
            (self.us(BITS_STORED, Some(bits_alloc as u16))? as u32).clamp(1, bits_alloc.max(1));
        let frames = self.num(FRAMES).map(|f| f.max(1.0) as usize).unwrap_or(1);
        if rows == 0 || cols == 0 {
            return Err(format!("empty image ({rows} rows, {cols} columns)"));
        }
        if spp != 1 && spp != 3 {
            return Err(format!("{spp} samples per pixel (1 or 3 supported)"));
        }
        if !matches!(bits_alloc, 8 | 16 | 32) {
            return Err(format!(
                "{bits_alloc} bits allocated (8, 16 or 32 supported)"
            ));
        }
        Ok(Layout {
            rows,
            cols,
            spp,
            frames,
            bits_alloc,
            bits_stored,
            signed: self.us(PIXEL_REPR, Some(0))? == 1,
            planar: self.us(PLANAR, Some(0))? == 1,
        })
    }

    fn geometry(&self) -> SliceGeometry {
        let fixed = |tag: Tag| -> Vec<f64> {
            self.values
                .get(&tag)
                .map(|v| numbers(v))
                .unwrap_or_default()
        };
        let position = fixed(POSITION);
        let orientation = fixed(ORIENTATION);
        let spacing = fixed(PIXEL_SPACING);
        SliceGeometry {
            position: <[f64; 3]>::try_from(position.as_slice()).ok(),
            orientation: <[f64; 6]>::try_from(orientation.as_slice()).ok(),
            pixel_spacing: <[f64; 2]>::try_from(spacing.as_slice()).ok(),
            slice_thickness: self.num(SLICE_THICKNESS),
            spacing_between_slices: self.num(SLICE_SPACING),
            instance_number: self.num(INSTANCE_NUMBER).map(|v| v as i64),
            series_uid: self.text(SERIES_UID),
        }
    }

    fn header(&self) -> std::result::Result<DicomHeader, String> {
        let l = self.layout()?;
        Ok(DicomHeader {
            rows: l.rows,
            cols: l.cols,
            frames: l.frames,
            samples_per_pixel: l.spp,
            modality: self.text(MODALITY),
            transfer_syntax: self.ts.clone(),
            geometry: self.geometry(),
        })
    }
}

/// Reads a DICOM file's attributes without decoding its pixels.
pub fn read_dicom_header(path: &Path) -> Result<DicomHeader> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_dicom_header(path, &bytes)
}

/// [`read_dicom_header`] of bytes in memory (`path` names them in errors).
pub fn parse_dicom_header(path: &Path, bytes: &[u8]) -> Result<DicomHeader> {
    let err = |m: String| DataError::image(path, m);
    let el = read_elements(bytes).map_err(err)?;
    if el.pixel.is_none() {
        return Err(err("no pixel data element (7FE0,0010)".into()));
    }
    el.header().map_err(err)
}

pub(crate) fn parse_dicom(path: &Path, bytes: &[u8]) -> Result<DicomImage> {
    let err = |m: String| DataError::image(path, m);
    let el = read_elements(bytes).map_err(err)?;
    let l = el.layout().map_err(err)?;
    let n = l.rows * l.cols * l.spp * l.frames;
    let (words, planar) = match el.pixel {
        None => return Err(err("no pixel data element (7FE0,0010)".into())),
        Some(PixelLoc::Native { start, len }) => {
            let bytes_per = (l.bits_alloc / 8) as usize;
            if len < n * bytes_per {
                return Err(err(format!(
                    "truncated pixel data: {}x{}x{}x{} samples of {bytes_per} bytes need {} bytes, {len} present",
                    l.rows,
                    l.cols,
                    l.spp,
                    l.frames,
                    n * bytes_per
                )));
            }
            let data = &el.body[start..start + n * bytes_per];
            (native_words(data, bytes_per, el.le), l.planar)
        }
        Some(PixelLoc::Encapsulated { .. }) if !codecs::can_decode(&el.ts) => {
            return Err(err(format!(
                "encapsulated (compressed) pixel data in the uncompressed transfer syntax {} ({})",
                el.ts,
                codecs::ts_name(&el.ts)
            )));
        }
        Some(PixelLoc::Encapsulated { start }) => {
            let items = encapsulated_items(&el.body[start..]).map_err(err)?;
            let frame = codecs::FrameShape {
                rows: l.rows,
                cols: l.cols,
                spp: l.spp,
                bits_alloc: l.bits_alloc,
            };
            let words =
                codecs::decode_frames(&el.ts, &frame, l.frames, &items.0, &items.1).map_err(err)?;
            (words, true)
        }
    };
    let pixels = to_planar(&words, &l, planar);
    let num = |tag: Tag| el.num(tag);
    let window = match (num(WINDOW_CENTER), num(WINDOW_WIDTH)) {
        (Some(c), Some(w)) if w > 0.0 => Some((c, w)),
        _ => None,
    };
    let mut photometric = el.text(PHOTOMETRIC);
    if l.spp == 3 && codecs::converts_to_rgb(&el.ts) {
        // JPEG and JPEG 2000 decoders undo the YCbCr transform themselves.
        photometric = "RGB".into();
    }
    Ok(DicomImage {
        rows: l.rows,
        cols: l.cols,
        frames: l.frames,
        samples_per_pixel: l.spp,
        photometric,
        modality: el.text(MODALITY),
        rescale_slope: num(SLOPE).filter(|s| *s != 0.0).unwrap_or(1.0),
        rescale_intercept: num(INTERCEPT).unwrap_or(0.0),
        window,
        pixels,
        transfer_syntax: el.ts.clone(),
        geometry: el.geometry(),
    })
}

/// The items of encapsulated pixel data: (the Basic Offset Table's offsets, the fragments).
fn encapsulated_items(b: &[u8]) -> std::result::Result<(Vec<u32>, Vec<&[u8]>), String> {
    let mut r = Reader {
        b,
        pos: 0,
        explicit: false,
        le: true,
    };
    let mut table: Option<Vec<u32>> = None;
    let mut fragments = Vec::new();
    loop {
        let (tag, _, len) = r.header()?;
        let n = match (tag, len) {
            ((0xfffe, 0xe0dd), _) => break,
            ((0xfffe, 0xe000), Len::Defined(n)) => n,
            (t, _) => {
                return Err(format!(
                    "encapsulated pixel data: unexpected element ({:04X},{:04X}) at byte {}",
                    t.0, t.1, r.pos
                ));
            }
        };
        r.need(n, "an encapsulated pixel data item")?;
        let value = &b[r.pos..r.pos + n];
        r.pos += n;
        match table {
            None => {
                table = Some(
                    value
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            Some(_) => fragments.push(value),
        }
    }
    if fragments.is_empty() {
        return Err("encapsulated pixel data without fragments".into());
    }
    Ok((table.unwrap_or_default(), fragments))
}

/// Native pixel samples as unsigned words, in file order.
fn native_words(data: &[u8], bytes_per: usize, le: bool) -> Vec<u32> {
    data.chunks_exact(bytes_per)
        .map(|c| match (c.len(), le) {
            (1, _) => c[0] as u32,
            (2, true) => u16::from_le_bytes([c[0], c[1]]) as u32,
            (2, false) => u16::from_be_bytes([c[0], c[1]]) as u32,
            (_, true) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            (_, false) => u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
        })
        .collect()
}

/// Stored values (masked to bits stored, sign-extended) as `[frames, spp, rows, cols]`; `planar`
/// says whether `words` is already planar per frame or interleaved (`R G B R G B ...`).
fn to_planar(words: &[u32], l: &Layout, planar: bool) -> Vec<f32> {
    let mask: u64 = if l.bits_stored >= 32 {
        u32::MAX as u64
    } else {
        (1u64 << l.bits_stored) - 1
    };
    let value = |w: u32| -> f32 {
        let u = w as u64 & mask;
        if l.signed && (u >> (l.bits_stored - 1)) & 1 == 1 {
            (u as i64 - (1i64 << l.bits_stored)) as f32
        } else {
            u as f32
        }
    };
    let (plane, spp) = (l.rows * l.cols, l.spp);
    let mut pixels = vec![0f32; plane * spp * l.frames];
    for f in 0..l.frames {
        for s in 0..spp {
            for p in 0..plane {
                let src = if planar || spp == 1 {
                    f * spp * plane + s * plane + p
                } else {
                    f * spp * plane + p * spp + s
                };
                pixels[f * spp * plane + s * plane + p] = value(words[src]);
            }
        }
    }
    pixels
}

/// Options for [`write_dicom`] (a fixture writer for tests and examples).
#[derive(Clone, Debug)]
pub struct DicomWriteOptions {
    /// Explicit VR little endian (true) or implicit VR little endian (false).
    pub explicit: bool,
    /// The Modality attribute.
    pub modality: String,
    /// Rescale Slope written.
    pub rescale_slope: f64,
    /// Rescale Intercept written.
    pub rescale_intercept: f64,
    /// Signed (pixel representation 1) 16-bit samples.
    pub signed: bool,
    /// Slice position, orientation, spacing, instance number and series UID (written where set).
    pub geometry: SliceGeometry,
}

impl Default for DicomWriteOptions {
    fn default() -> Self {
        DicomWriteOptions {
            explicit: true,
            modality: "CT".into(),
            rescale_slope: 1.0,
            rescale_intercept: -1024.0,
            signed: false,
            geometry: SliceGeometry::default(),
        }
    }
}

fn pad(mut v: Vec<u8>, with: u8) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(with);
    }
    v
}

fn elem(out: &mut Vec<u8>, explicit: bool, tag: Tag, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    if explicit {
        out.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
    } else {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// A text value padded to even length with spaces.
fn cs(t: &str) -> Vec<u8> {
    pad(t.as_bytes().to_vec(), b' ')
}

/// A decimal string (DS) of several values; each at most 16 characters as the standard asks.
fn ds(values: &[f64]) -> Vec<u8> {
    let one = |v: f64| {
        let s = format!("{v}");
        if s.len() <= 16 { s } else { format!("{v:.9e}") }
    };
    cs(&values
        .iter()
        .map(|&v| one(v))
        .collect::<Vec<_>>()
        .join("\\"))
}

/// The file preamble, `DICM` and the file meta information of a CT image in transfer syntax `ts`.
fn file_meta(ts: &str) -> Vec<u8> {
    let uid = |t: &str| pad(t.as_bytes().to_vec(), 0);
    let mut meta = Vec::new();
    elem(&mut meta, true, (0x0002, 0x0001), b"OB", &[0, 1]);
    elem(
        &mut meta,
        true,
        (0x0002, 0x0002),
        b"UI",
        &uid("1.2.840.10008.5.1.4.1.1.2"),
    );
    elem(
        &mut meta,
        true,
        (0x0002, 0x0003),
        b"UI",
        &uid("1.2.3.4.5.6.7"),
    );
    elem(&mut meta, true, TS_UID, b"UI", &uid(ts));
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    elem(
        &mut out,
        true,
        (0x0002, 0x0000),
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(&meta);
    out
}

/// The slice geometry elements of group 0018/0020 that are set (in tag order).
fn geometry_elements(out: &mut Vec<u8>, ex: bool, g: &SliceGeometry) {
    if let Some(t) = g.slice_thickness {
        elem(out, ex, SLICE_THICKNESS, b"DS", &ds(&[t]));
    }
    if let Some(t) = g.spacing_between_slices {
        elem(out, ex, SLICE_SPACING, b"DS", &ds(&[t]));
    }
    if !g.series_uid.is_empty() {
        elem(
            out,
            ex,
            SERIES_UID,
            b"UI",
            &pad(g.series_uid.as_bytes().to_vec(), 0),
        );
    }
    if let Some(n) = g.instance_number {
        elem(out, ex, INSTANCE_NUMBER, b"IS", &cs(&n.to_string()));
    }
    if let Some(p) = g.position {
        elem(out, ex, POSITION, b"DS", &ds(&p));
    }
    if let Some(o) = g.orientation {
        elem(out, ex, ORIENTATION, b"DS", &ds(&o));
    }
}

/// Writes a single-frame 16-bit monochrome DICOM file (Part 10, with preamble and file meta). The
/// data set also holds a small sequence, so readers must skip one. Values are stored as given
/// (`pixels` is `[rows, cols]`, row-major).
pub fn write_dicom(
    path: &Path,
    rows: usize,
    cols: usize,
    pixels: &[i32],
    opts: &DicomWriteOptions,
) -> Result<()> {
    if pixels.len() != rows * cols || rows > u16::MAX as usize || cols > u16::MAX as usize {
        return Err(DataError::invalid(
            "DICOM pixels",
            format!(
                "{}: {} values for {rows}x{cols}",
                path.display(),
                pixels.len()
            ),
        ));
    }
    let ex = opts.explicit;
    let mut out = file_meta(if ex { EXPLICIT_LE } else { IMPLICIT_LE });
    elem(&mut out, ex, MODALITY, b"CS", &cs(&opts.modality));
    // A sequence of undefined length with one undefined-length item, to exercise skipping.
    out.extend_from_slice(&0x0008u16.to_le_bytes());
    out.extend_from_slice(&0x1140u16.to_le_bytes());
    if ex {
        out.extend_from_slice(b"SQ\0\0");
    }
    out.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    out.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0]);
    out.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    elem(
        &mut out,
        ex,
        (0x0008, 0x1150),
        b"UI",
        &pad(b"1.2.3".to_vec(), 0),
    );
    out.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    geometry_elements(&mut out, ex, &opts.geometry);
    elem(&mut out, ex, SPP, b"US", &1u16.to_le_bytes());
    elem(&mut out, ex, PHOTOMETRIC, b"CS", &cs("MONOCHROME2"));
    elem(&mut out, ex, ROWS, b"US", &(rows as u16).to_le_bytes());
    elem(&mut out, ex, COLS, b"US", &(cols as u16).to_le_bytes());
    if let Some(s) = opts.geometry.pixel_spacing {
        elem(&mut out, ex, PIXEL_SPACING, b"DS", &ds(&s));
    }
    elem(&mut out, ex, BITS_ALLOC, b"US", &16u16.to_le_bytes());
    elem(&mut out, ex, BITS_STORED, b"US", &16u16.to_le_bytes());
    elem(&mut out, ex, (0x0028, 0x0102), b"US", &15u16.to_le_bytes());
    let repr = (opts.signed as u16).to_le_bytes();
    elem(&mut out, ex, PIXEL_REPR, b"US", &repr);
    elem(
        &mut out,
        ex,
        INTERCEPT,
        b"DS",
        &ds(&[opts.rescale_intercept]),
    );
    elem(&mut out, ex, SLOPE, b"DS", &ds(&[opts.rescale_slope]));
    let mut px = Vec::with_capacity(pixels.len() * 2);
    for &v in pixels {
        let v = if opts.signed {
            (v.clamp(i16::MIN as i32, i16::MAX as i32) as i16).to_le_bytes()
        } else {
            (v.clamp(0, u16::MAX as i32) as u16).to_le_bytes()
        };
        px.extend_from_slice(&v);
    }
    elem(&mut out, ex, PIXEL_DATA, b"OW", &px);
    std::fs::write(path, out).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_explicit_and_implicit() {
        let dir = tempfile::tempdir().unwrap();
        let px: Vec<i32> = (0..12).map(|v| v * 100 - 300).collect();
        for (explicit, signed) in [(true, true), (false, true), (true, false)] {
            let p = dir.path().join(format!("x{explicit}{signed}.dcm"));
            let opts = DicomWriteOptions {
                explicit,
                signed,
                rescale_slope: 2.0,
                rescale_intercept: -100.0,
                ..Default::default()
            };
            write_dicom(&p, 3, 4, &px, &opts).unwrap();
            let d = read_dicom(&p).unwrap();
            assert_eq!((d.rows, d.cols, d.frames), (3, 4, 1));
            assert_eq!(d.modality, "CT");
            let f = d.frame(&p, 0).unwrap();
            let expect0 = if signed { -300.0 } else { 0.0 };
            assert_eq!(f[0], expect0);
            assert_eq!(f[11], 800.0);
            assert_eq!(d.rescale(f[11]), 1500.0);
        }
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.dcm");
        write_dicom(&p, 8, 8, &[5; 64], &DicomWriteOptions::default()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 20]).unwrap();
        let e = read_dicom(&p).unwrap_err().to_string();
        assert!(e.contains("t.dcm") && e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello world, not dicom").unwrap();
        assert!(read_dicom(&p).is_err());
    }
}
