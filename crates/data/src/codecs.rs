//! Decoders for compressed DICOM pixel data: the frames of encapsulated pixel data (PS3.5 A.4) that
//! [`crate::dicom`] has split into fragments become plain stored values.
//!
//! | transfer syntax | UID | decoder |
//! |---|---|---|
//! | RLE lossless | 1.2.840.10008.1.2.5 | here (PS3.5 Annex G: PackBits segments, one per byte plane) |
//! | JPEG baseline (8-bit, lossy) | 1.2.840.10008.1.2.4.50 | `jpeg-decoder` |
//! | JPEG extended (8-bit; 12-bit is refused by the decoder) | 1.2.840.10008.1.2.4.51 | `jpeg-decoder` |
//! | JPEG lossless (process 14, any predictor; SV1) | 1.2.840.10008.1.2.4.57, .70 | `jpeg-decoder` |
//! | JPEG 2000 (lossless only; lossless or lossy) | 1.2.840.10008.1.2.4.90, .91 | `jpeg2k` on `openjp2` (OpenJPEG ported to Rust) |
//!
//! These are the decoders dicom-rs's `dicom-transfer-syntax-registry` uses for the same syntaxes
//! (features `jpeg`, `rle`, `openjp2`), without the rest of its stack; all pure Rust, so the build needs
//! no C toolchain or system library. JPEG-LS (no maintained pure-Rust decoder), MPEG-2/4, HEVC,
//! JPEG XL and HTJ2K stay unsupported: [`unsupported`] names them.
//!
//! Decoders return *stored* values (before rescale), planar per frame, as unsigned words that
//! [`crate::dicom`] masks to Bits Stored and sign-extends like native pixel data, so that rescale,
//! windows and MONOCHROME1 inversion apply to compressed and uncompressed files alike.

use std::panic::{AssertUnwindSafe, catch_unwind};

const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const J2K: &str = "1.2.840.10008.1.2.4.91";

/// True for the compressed transfer syntaxes this module decodes.
pub fn can_decode(uid: &str) -> bool {
    [
        RLE,
        JPEG_BASELINE,
        JPEG_EXTENDED,
        JPEG_LOSSLESS,
        JPEG_LOSSLESS_SV1,
        J2K_LOSSLESS,
        J2K,
    ]
    .contains(&uid)
}

/// True where the decoder returns colour images as RGB whatever the photometric interpretation says
/// (JPEG's and JPEG 2000's colour transforms are undone by the decoder).
pub fn converts_to_rgb(uid: &str) -> bool {
    can_decode(uid) && uid != RLE
}

/// The name of a transfer syntax, for messages.
pub fn ts_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "implicit VR little endian",
        "1.2.840.10008.1.2.1" => "explicit VR little endian",
        "1.2.840.10008.1.2.1.99" => "deflated explicit VR little endian",
        "1.2.840.10008.1.2.2" => "explicit VR big endian",
        RLE => "RLE lossless",
        JPEG_BASELINE => "JPEG baseline",
        JPEG_EXTENDED => "JPEG extended",
        JPEG_LOSSLESS => "JPEG lossless",
        JPEG_LOSSLESS_SV1 => "JPEG lossless, first-order prediction",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS near-lossless",
        J2K_LOSSLESS => "JPEG 2000 lossless",
        J2K => "JPEG 2000",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "JPEG 2000 Part 2 multi-component",
        "1.2.840.10008.1.2.4.94" | "1.2.840.10008.1.2.4.95" => "JPIP referenced",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "MPEG-2 video",
        "1.2.840.10008.1.2.4.102"
        | "1.2.840.10008.1.2.4.103"
        | "1.2.840.10008.1.2.4.104"
        | "1.2.840.10008.1.2.4.105"
        | "1.2.840.10008.1.2.4.106" => "MPEG-4 AVC/H.264 video",
        "1.2.840.10008.1.2.4.107" | "1.2.840.10008.1.2.4.108" => "HEVC/H.265 video",
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            "JPEG XL"
        }
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "High-Throughput JPEG 2000"
        }
        "1.2.840.10008.1.2.8.1" => "deflated image frame compression",
        _ => "unknown transfer syntax",
    }
}

/// The message for a transfer syntax that is not read (the caller adds the file name).
pub fn unsupported(uid: &str) -> String {
    format!(
        "transfer syntax {uid} ({}) is not supported: tgcnet reads uncompressed, deflated, RLE lossless, \
         JPEG baseline/extended (8-bit), JPEG lossless and JPEG 2000 DICOM; convert the file first \
         (e.g. `gdcmconv --raw` or dcmtk's `dcmdjpls`/`dcmdjpeg`)",
        ts_name(uid)
    )
}

/// The size of one frame as the data set declares it.
#[derive(Debug, Clone, Copy)]
pub struct FrameShape {
    /// Rows of a frame.
    pub rows: usize,
    /// Columns of a frame.
    pub cols: usize,
    /// Samples per pixel.
    pub spp: usize,
    /// Bits allocated per sample.
    pub bits_alloc: u32,
}

impl FrameShape {
    fn samples(&self) -> usize {
        self.rows * self.cols * self.spp
    }
}

/// Decodes every frame: stored values as unsigned words, `[frames, spp, rows, cols]`. `table` is the
/// Basic Offset Table (empty when the file has none), `fragments` the items after it.
pub fn decode_frames(
    uid: &str,
    shape: &FrameShape,
    frames: usize,
    table: &[u32],
    fragments: &[&[u8]],
) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(shape.samples() * frames);
    for (f, data) in frame_data(frames, table, fragments)?
        .into_iter()
        .enumerate()
    {
        let words = match uid {
            RLE => decode_rle(&data, shape),
            J2K | J2K_LOSSLESS => guarded(|| decode_j2k(&data, shape)),
            _ => guarded(|| decode_jpeg(&data, shape)),
        }
        .map_err(|e| format!("{} frame {}: {e}", ts_name(uid), f + 1))?;
        out.extend(words);
    }
    Ok(out)
}

/// Runs a third-party decoder, turning a panic on malformed data into an error (a server must not
/// lose a worker to one upload).
fn guarded(f: impl FnOnce() -> Result<Vec<u32>, String>) -> Result<Vec<u32>, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the decoder failed on malformed data".into()))
}

/// The compressed bytes of each frame (PS3.5 A.4): with one frame, all fragments; else the Basic
/// Offset Table's ranges; else one fragment per frame; else split where a fragment starts a new
/// JPEG/JPEG 2000 code stream.
fn frame_data(frames: usize, table: &[u32], fragments: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    if frames == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if table.len() == frames {
        // Offsets count from the first fragment item's tag: 8 header bytes per item.
        let mut at = 0u64;
        let mut out = vec![Vec::new(); frames];
        for frag in fragments {
            let f = table.iter().rposition(|&o| o as u64 <= at).unwrap_or(0);
            out[f].extend_from_slice(frag);
            at += 8 + frag.len() as u64;
        }
        return Ok(out);
    }
    if fragments.len() == frames {
        return Ok(fragments.iter().map(|f| f.to_vec()).collect());
    }
    let starts_stream = |f: &[u8]| f.starts_with(&[0xff, 0xd8]) || f.starts_with(&[0xff, 0x4f]);
    let mut out: Vec<Vec<u8>> = Vec::new();
    for frag in fragments {
        match out.last_mut() {
            Some(cur) if !starts_stream(frag) => cur.extend_from_slice(frag),
            _ => out.push(frag.to_vec()),
        }
    }
    if out.len() != frames {
        return Err(format!(
            "{frames} frames but {} fragments and no Basic Offset Table to group them",
            fragments.len()
        ));
    }
    Ok(out)
}

/// RLE lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one segment per sample and
/// byte (most significant byte first), each a PackBits run of `rows * cols` bytes.
fn decode_rle(data: &[u8], shape: &FrameShape) -> Result<Vec<u32>, String> {
    let le32 = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    if data.len() < 64 {
        return Err(format!("RLE header truncated ({} bytes)", data.len()));
    }
    let bytes_per = (shape.bits_alloc / 8) as usize;
    let n_segments = le32(0) as usize;
    if n_segments != shape.spp * bytes_per {
        return Err(format!(
            "{n_segments} RLE segments, {} expected ({} samples of {bytes_per} bytes)",
            shape.spp * bytes_per,
            shape.spp
        ));
    }
    let offsets: Vec<usize> = (0..n_segments).map(|s| le32(4 + 4 * s) as usize).collect();
    let plane = shape.rows * shape.cols;
    let mut words = vec![0u32; plane * shape.spp];
    for (seg, &start) in offsets.iter().enumerate() {
        let end = offsets.get(seg + 1).copied().unwrap_or(data.len());
        if start < 64 || start > end || end > data.len() {
            return Err(format!("RLE segment {} has a bad offset {start}", seg + 1));
        }
        let bytes = unpack_bits(&data[start..end], plane)
            .map_err(|m| format!("RLE segment {}: {m}", seg + 1))?;
        let (sample, byte) = (seg / bytes_per, seg % bytes_per);
        let shift = 8 * (bytes_per - 1 - byte);
        for (w, b) in words[sample * plane..(sample + 1) * plane]
            .iter_mut()
            .zip(bytes)
        {
            *w |= (b as u32) << shift;
        }
    }
    Ok(words)
}

/// PackBits: a header byte n ≥ 0 copies n + 1 literal bytes, −127 ≤ n ≤ −1 repeats the next byte
/// 1 − n times, −128 does nothing. Exactly `len` bytes are expected (a segment may be padded).
fn unpack_bits(mut src: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let Some((&h, rest)) = src.split_first() else {
            return Err(format!("{} bytes decoded, {len} expected", out.len()));
        };
        src = rest;
        let n = h as i8;
        if n >= 0 {
            let k = n as usize + 1;
            if src.len() < k {
                return Err("a literal run goes past the segment's end".into());
            }
            out.extend_from_slice(&src[..k]);
            src = &src[k..];
        } else if n != -128 {
            let Some((&b, rest)) = src.split_first() else {
                return Err("a repeat run goes past the segment's end".into());
            };
            src = rest;
            out.extend(std::iter::repeat_n(b, 1 + (-(n as i32)) as usize));
        }
    }
    out.truncate(len);
    Ok(out)
}

fn check_size(
    what: &str,
    w: usize,
    h: usize,
    comps: usize,
    shape: &FrameShape,
) -> Result<(), String> {
    if (w, h, comps) != (shape.cols, shape.rows, shape.spp) {
        return Err(format!(
            "the {what} code stream is {w}x{h} with {comps} components, the data set says {}x{} with {}",
            shape.cols, shape.rows, shape.spp
        ));
    }
    Ok(())
}

/// JPEG baseline, extended (8-bit) and lossless (process 14) through `jpeg-decoder`.
fn decode_jpeg(data: &[u8], shape: &FrameShape) -> Result<Vec<u32>, String> {
    let mut dec = jpeg_decoder::Decoder::new(data);
    // Bound the decoder's buffers by what the data set declares (plus slack for padding to MCUs).
    dec.set_max_decoding_buffer_size(shape.samples().saturating_mul(4).saturating_add(1 << 16));
    let bytes = dec.decode().map_err(|e| e.to_string())?;
    let info = dec.info().ok_or("no frame header")?;
    let comps = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::L16 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::CMYK32 => 4,
    };
    let (w, h) = (info.width as usize, info.height as usize);
    check_size("JPEG", w, h, comps, shape)?;
    let n = w * h * comps;
    // Lossless JPEG of 9-16 bits comes back as native-endian u16, everything else as bytes.
    let words: Vec<u32> = if bytes.len() == 2 * n {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32)
            .collect()
    } else if bytes.len() == n {
        bytes.iter().map(|&b| b as u32).collect()
    } else {
        return Err(format!("{} bytes decoded for {n} samples", bytes.len()));
    };
    Ok(interleaved_to_planar(&words, comps))
}

fn interleaved_to_planar(words: &[u32], comps: usize) -> Vec<u32> {
    if comps == 1 {
        return words.to_vec();
    }
    let plane = words.len() / comps;
    let mut out = vec![0u32; words.len()];
    for (p, px) in words.chunks_exact(comps).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * plane + p] = v;
        }
    }
    out
}

/// JPEG 2000 (a J2K code stream or a JP2 file) through `jpeg2k` on the pure-Rust `openjp2`. Signed
/// components come back as negative integers; their two's complement bits are what DICOM stores.
fn decode_j2k(data: &[u8], shape: &FrameShape) -> Result<Vec<u32>, String> {
    let img = jpeg2k::Image::from_bytes(data).map_err(|e| e.to_string())?;
    let comps = img.components();
    let (w, h) = comps
        .first()
        .map(|c| (c.width() as usize, c.height() as usize))
        .unwrap_or((0, 0));
    check_size("JPEG 2000", w, h, comps.len(), shape)?;
    let mut out = Vec::with_capacity(shape.samples());
    for c in comps {
        if (c.width() as usize, c.height() as usize) != (w, h) {
            return Err(
                "JPEG 2000 components of different sizes (subsampled) are not supported".into(),
            );
        }
        out.extend(c.data().iter().map(|&v| v as u32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_runs() {
        // Literal "ab", repeat 'x' 3 times, a no-op, literal "c".
        let src = [1, b'a', b'b', (-2i8) as u8, b'x', 0x80, 0, b'c'];
        assert_eq!(unpack_bits(&src, 6).unwrap(), b"abxxxc");
        assert!(unpack_bits(&src[..3], 6).is_err());
    }

    #[test]
    fn rle_two_byte_samples() {
        // One 16-bit sample per pixel, 2 pixels: MSB plane then LSB plane.
        let mut data = vec![0u8; 64];
        data[0] = 2;
        data[4] = 64;
        data[8] = 67;
        data.extend_from_slice(&[1, 0x12, 0xab]); // MSBs
        data.extend_from_slice(&[1, 0x34, 0xcd]); // LSBs
        let shape = FrameShape {
            rows: 1,
            cols: 2,
            spp: 1,
            bits_alloc: 16,
        };
        assert_eq!(decode_rle(&data, &shape).unwrap(), vec![0x1234, 0xabcd]);
        let eight = FrameShape {
            bits_alloc: 8,
            ..shape
        };
        assert!(decode_rle(&data, &eight).unwrap_err().contains("segments"));
    }

    #[test]
    fn fragments_group_into_frames() {
        let (a, b, c): (&[u8], &[u8], &[u8]) = (&[1, 2], &[3], &[4, 5, 6]);
        // Offset table: frame 1 = fragments a and b, frame 2 = c.
        let table = [0, (8 + 2) + (8 + 1)];
        let frames = frame_data(2, &table, &[a, b, c]).unwrap();
        assert_eq!(frames, vec![vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(frame_data(3, &[], &[a, b, c]).unwrap().len(), 3);
        assert_eq!(
            frame_data(1, &[], &[a, b, c]).unwrap(),
            vec![vec![1, 2, 3, 4, 5, 6]]
        );
        assert!(frame_data(2, &[], &[a, b, c]).is_err());
    }

    #[test]
    fn unsupported_syntaxes_are_named() {
        let m = unsupported("1.2.840.10008.1.2.4.80");
        assert!(
            m.contains("1.2.840.10008.1.2.4.80") && m.contains("JPEG-LS"),
            "{m}"
        );
        assert!(unsupported("1.2.840.10008.1.2.4.102").contains("MPEG-4"));
        assert!(can_decode(J2K) && !can_decode("1.2.840.10008.1.2.4.81"));
    }
}
