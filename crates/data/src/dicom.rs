//! A small DICOM reader for uncompressed images: implicit VR little endian (1.2.840.10008.1.2), explicit
//! VR little endian (…1.2.1), deflated explicit VR little endian (…1.2.1.99) and explicit VR big endian
//! (…1.2.2), with or without the 128-byte preamble and `DICM` prefix. It reads the top-level image
//! attributes (rows, columns, samples per pixel, bits allocated/stored, pixel representation,
//! photometric interpretation, number of frames, modality, rescale slope/intercept, window) and the
//! native pixel data; sequences are skipped (defined or undefined length, nested). Compressed transfer
//! syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) are reported as a clear error.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

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

const WANTED: [Tag; 15] = [
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
];

/// A decoded DICOM image (all frames).
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    pub samples_per_pixel: usize,
    /// E.g. "MONOCHROME2", "MONOCHROME1" (inverted grey scale), "RGB".
    pub photometric: String,
    /// E.g. "CT", "CR", "DX", "MR"; empty when absent.
    pub modality: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// The file's first (center, width) window, when present.
    pub window: Option<(f64, f64)>,
    /// Raw stored values (sign-extended, no rescale), `[frames, samples_per_pixel, rows, cols]`.
    pub pixels: Vec<f32>,
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

fn first_number(v: &[u8]) -> Option<f64> {
    text(v).split('\\').next()?.trim().parse().ok()
}

pub(crate) fn parse_dicom(path: &Path, bytes: &[u8]) -> Result<DicomImage> {
    let err = |m: String| DataError::image(path, m);
    let mut values: HashMap<Tag, Vec<u8>> = HashMap::new();
    let (body, explicit, le, body_start): (std::borrow::Cow<[u8]>, bool, bool, usize);
    if has_dicom_magic(bytes) {
        // File meta information: always explicit VR little endian, group 0002.
        let mut r = Reader {
            b: bytes,
            pos: 132,
            explicit: true,
            le: true,
        };
        while r.pos + 4 <= bytes.len()
            && u16::from_le_bytes([bytes[r.pos], bytes[r.pos + 1]]) == 0x0002
        {
            let (tag, _, len) = r.header().map_err(&err)?;
            let Len::Defined(n) = len else {
                return Err(err("undefined length in the file meta information".into()));
            };
            r.need(n, "the file meta information").map_err(&err)?;
            values.insert(tag, bytes[r.pos..r.pos + n].to_vec());
            r.pos += n;
        }
        let ts = values.get(&TS_UID).map(|v| text(v)).unwrap_or_default();
        let start = r.pos;
        match ts.as_str() {
            IMPLICIT_LE | "" => {
                (body, explicit, le, body_start) = (bytes.into(), false, true, start);
            }
            EXPLICIT_LE => (body, explicit, le, body_start) = (bytes.into(), true, true, start),
            EXPLICIT_BE => (body, explicit, le, body_start) = (bytes.into(), true, false, start),
            DEFLATED_LE => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(&bytes[start..])
                    .read_to_end(&mut out)
                    .map_err(|e| err(format!("deflated data set is corrupt: {e}")))?;
                (body, explicit, le, body_start) = (out.into(), true, true, 0);
            }
            other => {
                return Err(err(format!(
                    "transfer syntax {other} ({}) is not supported: only uncompressed DICOM is read; \
                     decompress it first (e.g. `gdcmconv --raw` or `dcmdjpeg`)",
                    ts_name(other)
                )));
            }
        }
    } else {
        // No preamble: guess explicit VR if bytes 4..6 look like a VR, else implicit (little endian).
        if bytes.len() < 8 {
            return Err(err(format!("not a DICOM file ({} bytes)", bytes.len())));
        }
        let vr_like = bytes[4].is_ascii_uppercase() && bytes[5].is_ascii_uppercase();
        let group = u16::from_le_bytes([bytes[0], bytes[1]]);
        if !(group == 0x0008
            || group == 0x0002
            || group == 0x0010
            || group == 0x0018
            || group == 0x0020
            || group == 0x0028)
        {
            return Err(err(
                "not a DICOM file (no DICM prefix and no known leading group)".into(),
            ));
        }
        (body, explicit, le, body_start) = (bytes.into(), vr_like, true, 0);
    }

    let mut r = Reader {
        b: &body,
        pos: body_start,
        explicit,
        le,
    };
    let mut pixel: Option<(usize, usize)> = None;
    while r.pos < body.len() {
        if body.len() - r.pos < 8 {
            break; // trailing padding
        }
        let (tag, vr, len) = r.header().map_err(&err)?;
        match len {
            Len::Undefined if tag == PIXEL_DATA => {
                return Err(err(
                    "encapsulated (compressed) pixel data is not supported".into()
                ));
            }
            Len::Undefined => r.skip_sequence(0).map_err(&err)?,
            Len::Defined(n) => {
                if tag == PIXEL_DATA {
                    let avail = body.len() - r.pos;
                    pixel = Some((r.pos, n.min(avail)));
                    if n > avail {
                        return Err(err(format!(
                            "truncated pixel data: {n} bytes declared, {avail} present"
                        )));
                    }
                    break;
                }
                if vr.as_ref() == Some(b"SQ") {
                    r.skip(n, tag).map_err(&err)?;
                    continue;
                }
                r.need(n, &format!("the value of ({:04X},{:04X})", tag.0, tag.1))
                    .map_err(&err)?;
                if WANTED.contains(&tag) {
                    values.insert(tag, body[r.pos..r.pos + n].to_vec());
                }
                r.pos += n;
            }
        }
    }
    let (pstart, plen) = pixel.ok_or_else(|| err("no pixel data element (7FE0,0010)".into()))?;

    let us = |tag: Tag, default: Option<u16>| -> Result<u16> {
        match values.get(&tag) {
            Some(v) if v.len() >= 2 => Ok(if le {
                u16::from_le_bytes([v[0], v[1]])
            } else {
                u16::from_be_bytes([v[0], v[1]])
            }),
            _ => default
                .ok_or_else(|| err(format!("missing attribute ({:04X},{:04X})", tag.0, tag.1))),
        }
    };
    let rows = us(ROWS, None)? as usize;
    let cols = us(COLS, None)? as usize;
    let spp = us(SPP, Some(1))? as usize;
    let bits_alloc = us(BITS_ALLOC, Some(16))? as u32;
    let bits_stored =
        (us(BITS_STORED, Some(bits_alloc as u16))? as u32).clamp(1, bits_alloc.max(1));
    let signed = us(PIXEL_REPR, Some(0))? == 1;
    let planar = us(PLANAR, Some(0))? == 1;
    let frames = values
        .get(&FRAMES)
        .and_then(|v| first_number(v))
        .map(|f| f.max(1.0) as usize)
        .unwrap_or(1);
    if rows == 0 || cols == 0 {
        return Err(err(format!("empty image ({rows} rows, {cols} columns)")));
    }
    if spp != 1 && spp != 3 {
        return Err(err(format!("{spp} samples per pixel (1 or 3 supported)")));
    }
    let bytes_per = match bits_alloc {
        8 => 1,
        16 => 2,
        32 => 4,
        b => return Err(err(format!("{b} bits allocated (8, 16 or 32 supported)"))),
    };
    let n = rows * cols * spp * frames;
    if plen < n * bytes_per {
        return Err(err(format!(
            "truncated pixel data: {rows}x{cols}x{spp}x{frames} samples of {bytes_per} bytes need {} bytes, {plen} present",
            n * bytes_per
        )));
    }
    let data = &body[pstart..pstart + n * bytes_per];
    let mask: u64 = if bits_stored >= 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits_stored) - 1
    };
    let decode = |i: usize| -> f32 {
        let o = i * bytes_per;
        let u: u64 = match bytes_per {
            1 => data[o] as u64,
            2 => {
                let a = [data[o], data[o + 1]];
                (if le {
                    u16::from_le_bytes(a)
                } else {
                    u16::from_be_bytes(a)
                }) as u64
            }
            _ => {
                let a = [data[o], data[o + 1], data[o + 2], data[o + 3]];
                (if le {
                    u32::from_le_bytes(a)
                } else {
                    u32::from_be_bytes(a)
                }) as u64
            }
        };
        let u = u & mask;
        if signed && (u >> (bits_stored - 1)) & 1 == 1 {
            (u as i64 - (1i64 << bits_stored)) as f32
        } else {
            u as f32
        }
    };
    // Output is planar per frame: [frames, spp, rows, cols].
    let plane = rows * cols;
    let mut pixels = vec![0f32; n];
    for f in 0..frames {
        for s in 0..spp {
            for p in 0..plane {
                let src = if planar || spp == 1 {
                    f * spp * plane + s * plane + p
                } else {
                    f * spp * plane + p * spp + s
                };
                pixels[f * spp * plane + s * plane + p] = decode(src);
            }
        }
    }
    let num = |tag: Tag| values.get(&tag).and_then(|v| first_number(v));
    let window = match (num(WINDOW_CENTER), num(WINDOW_WIDTH)) {
        (Some(c), Some(w)) if w > 0.0 => Some((c, w)),
        _ => None,
    };
    Ok(DicomImage {
        rows,
        cols,
        frames,
        samples_per_pixel: spp,
        photometric: values
            .get(&PHOTOMETRIC)
            .map(|v| text(v))
            .unwrap_or_default(),
        modality: values.get(&MODALITY).map(|v| text(v)).unwrap_or_default(),
        rescale_slope: num(SLOPE).filter(|s| *s != 0.0).unwrap_or(1.0),
        rescale_intercept: num(INTERCEPT).unwrap_or(0.0),
        window,
        pixels,
    })
}

fn ts_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2.4.50" => "JPEG baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG extended",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG lossless",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.5" => "RLE lossless",
        _ => "unknown or compressed",
    }
}

/// Options for [`write_dicom`] (a fixture writer for tests and examples).
#[derive(Clone, Debug)]
pub struct DicomWriteOptions {
    /// Explicit VR little endian (true) or implicit VR little endian (false).
    pub explicit: bool,
    pub modality: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// Signed (pixel representation 1) 16-bit samples.
    pub signed: bool,
}

impl Default for DicomWriteOptions {
    fn default() -> Self {
        DicomWriteOptions {
            explicit: true,
            modality: "CT".into(),
            rescale_slope: 1.0,
            rescale_intercept: -1024.0,
            signed: false,
        }
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
    let s = |t: &str| pad(t.as_bytes().to_vec(), b' ');
    let uid = |t: &str| pad(t.as_bytes().to_vec(), 0);
    let ts = if opts.explicit {
        EXPLICIT_LE
    } else {
        IMPLICIT_LE
    };
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
    let ex = opts.explicit;
    elem(&mut out, ex, MODALITY, b"CS", &s(&opts.modality));
    // A sequence of undefined length with one undefined-length item, to exercise skipping.
    out.extend_from_slice(&0x0008u16.to_le_bytes());
    out.extend_from_slice(&0x1140u16.to_le_bytes());
    if ex {
        out.extend_from_slice(b"SQ\0\0");
    }
    out.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    out.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0]);
    out.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    elem(&mut out, ex, (0x0008, 0x1150), b"UI", &uid("1.2.3"));
    out.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    elem(&mut out, ex, SPP, b"US", &1u16.to_le_bytes());
    elem(&mut out, ex, PHOTOMETRIC, b"CS", &s("MONOCHROME2"));
    elem(&mut out, ex, ROWS, b"US", &(rows as u16).to_le_bytes());
    elem(&mut out, ex, COLS, b"US", &(cols as u16).to_le_bytes());
    elem(&mut out, ex, BITS_ALLOC, b"US", &16u16.to_le_bytes());
    elem(&mut out, ex, BITS_STORED, b"US", &16u16.to_le_bytes());
    elem(&mut out, ex, (0x0028, 0x0102), b"US", &15u16.to_le_bytes());
    elem(
        &mut out,
        ex,
        PIXEL_REPR,
        b"US",
        &(opts.signed as u16).to_le_bytes(),
    );
    elem(
        &mut out,
        ex,
        INTERCEPT,
        b"DS",
        &s(&format!("{}", opts.rescale_intercept)),
    );
    elem(
        &mut out,
        ex,
        SLOPE,
        b"DS",
        &s(&format!("{}", opts.rescale_slope)),
    );
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
