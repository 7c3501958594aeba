//! Pictures for people: images back from the dataset's C×H×W layout, PNG files, animated GIFs that play a set of
//! images, and relevance overlaid on an image; contact sheets ([`sheet`]) and small SVG charts ([`svg`]).

pub mod group;
pub mod sheet;
pub mod svg;

use std::path::{Path, PathBuf};

use crate::dataset::DatasetError;

/// Why a picture could not be made or written, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Picture { path: PathBuf, message: String },
}

impl MediaError {
    fn picture(path: &Path, message: impl std::fmt::Display) -> MediaError {
        MediaError::Picture { path: path.to_path_buf(), message: message.to_string() }
    }
}

impl From<MediaError> for crate::engine::stage::StageError {
    fn from(e: MediaError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// The longest stem [`file_name`] gives, in bytes: room for an extension within the 255 bytes file systems allow.
pub const MAX_STEM: usize = 200;

/// An image id or layer name as one file name: itself when it holds only ASCII letters, digits and `._-` and fits in
/// [`MAX_STEM`] bytes; otherwise those characters kept (the first ones, when the name is longer), the others written
/// `_`, and `~` with a short hash of the whole name appended, so that two names never share a file (`ä304.png` and
/// `ö304.png` become `_304~1c0f9a2b` and `_304~7e51d3c8`) and no name is too long for the file system (ids of
/// nested folders can run to hundreds of bytes).
pub fn file_name(name: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if !name.is_empty() && name.len() <= MAX_STEM && name.chars().all(safe) && name != "." && name != ".." {
        return name.to_string();
    }
    let hash = &blake3::hash(name.as_bytes()).to_hex()[..8];
    let kept: String = name.chars().map(|c| if safe(c) { c } else { '_' }).take(MAX_STEM - 1 - hash.len()).collect();
    format!("{kept}~{hash}")
}

/// Interleaved RGB from a C×H×W image (grey images repeat their channel).
pub fn chw_to_rgb(chw: &[u8], channels: usize, pixels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels * 3);
    for i in 0..pixels {
        for c in 0..3 {
            out.push(chw[if channels == 1 { i } else { c * pixels + i }]);
        }
    }
    out
}

/// Writes interleaved RGB as a PNG, enlarged by an integer `scale` (nearest neighbour) so small images stay visible.
pub fn write_png(path: &Path, rgb: &[u8], width: usize, height: usize, scale: usize) -> Result<(), MediaError> {
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb.to_vec()).ok_or_else(|| {
        MediaError::picture(path, format!("{} bytes are not a {width}×{height} RGB image", rgb.len()))
    })?;
    let img = if scale > 1 {
        image::imageops::resize(
            &img,
            (width * scale) as u32,
            (height * scale) as u32,
            image::imageops::FilterType::Nearest,
        )
    } else {
        img
    };
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| MediaError::picture(path, e))
}

/// An animated GIF playing `frames` (interleaved RGB, all `width × height`), each shown for `delay_cs` hundredths of
/// a second, looping forever.
pub fn write_gif(
    path: &Path,
    frames: &[Vec<u8>],
    width: usize,
    height: usize,
    delay_cs: u16,
) -> Result<(), MediaError> {
    let fail = |e: gif::EncodingError| MediaError::picture(path, e);
    let file = std::fs::File::create(path).map_err(|source| MediaError::Io { path: path.to_path_buf(), source })?;
    let file = std::io::BufWriter::new(file);
    let mut encoder = gif::Encoder::new(file, width as u16, height as u16, &[]).map_err(fail)?;
    encoder.set_repeat(gif::Repeat::Infinite).map_err(fail)?;
    for rgb in frames {
        let mut frame = gif::Frame::from_rgb_speed(width as u16, height as u16, rgb, 10);
        frame.delay = delay_cs;
        encoder.write_frame(&frame).map_err(fail)?;
    }
    Ok(())
}

/// A box blur of radius `r` (two passes: rows, then columns) of a `width × height` map.
pub fn box_blur(map: &[f32], width: usize, height: usize, r: usize) -> Vec<f32> {
    let pass = |src: &[f32], along_rows: bool| -> Vec<f32> {
        let (outer, inner) = if along_rows { (height, width) } else { (width, height) };
        let at = |o: usize, i: usize| if along_rows { o * width + i } else { i * width + o };
        let mut out = vec![0.0; src.len()];
        for o in 0..outer {
            for i in 0..inner {
                let (lo, hi) = (i.saturating_sub(r), (i + r).min(inner - 1));
                out[at(o, i)] = (lo..=hi).map(|j| src[at(o, j)]).sum::<f32>() / (hi - lo + 1) as f32;
            }
        }
        out
    };
    pass(&pass(map, true), false)
}

/// Relevance `heat` (one value per pixel, H×W) over a greyed copy of `rgb`: positive relevance in red, negative in
/// blue, opaque where the magnitude nears the largest and transparent below a fifth of it.
pub fn overlay(rgb: &[u8], heat: &[f32], pixels: usize) -> Vec<u8> {
    let max = heat.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut out = Vec::with_capacity(pixels * 3);
    for i in 0..pixels {
        let p = &rgb[i * 3..i * 3 + 3];
        let grey = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
        let base = 0.35 * grey + 80.0;
        let v = if max > 0.0 { heat[i] / max } else { 0.0 };
        let alpha = ((v.abs() - 0.2) / 0.8).clamp(0.0, 1.0).sqrt() * 0.85;
        let colour = if v >= 0.0 { [230.0, 30.0, 30.0] } else { [30.0, 80.0, 230.0] };
        out.extend(colour.iter().map(|c| (base * (1.0 - alpha) + c * alpha).round().clamp(0.0, 255.0) as u8));
    }
    out
}

#[cfg(test)]
mod file_names {
    use super::{MAX_STEM, file_name};

    #[test]
    fn ids_that_differ_get_different_file_names() {
        assert_eq!(file_name("test-000123.png"), "test-000123.png", "a safe id stays itself");
        let (a, b) = (file_name("ä304.png"), file_name("ö304.png"));
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.starts_with("_304.png~") && name.is_ascii(), "{name}");
        }
        assert_ne!(file_name("img,12.png"), file_name("img_12.png"));
        assert_ne!(file_name(".."), "..");
        assert_ne!(file_name("a/b"), file_name("a_b"));
        // Ids of 250 bytes and more stay under the file system's 255 with an extension, and stay apart.
        let (long_a, long_b) = ("a".repeat(250), format!("{}b", "a".repeat(249)));
        let nested = format!("{}/img.png", ["folder_of_thirty_four_characters__"; 7].join("/"));
        for id in [&long_a, &long_b, &nested, &"ä".repeat(200)] {
            let name = file_name(id);
            assert!(name.len() <= MAX_STEM && format!("{name}.png").len() <= 255, "{} bytes", name.len());
        }
        assert_ne!(file_name(&long_a), file_name(&long_b));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{}.png", file_name(&nested))), b"").unwrap();
    }
}

#[cfg(test)]
mod errors {
    use super::{MediaError, write_gif, write_png};

    #[test]
    fn a_picture_that_cannot_be_written_names_its_file_once() {
        let dir = std::env::temp_dir().join(format!("hudd-media-{}", std::process::id()));
        let missing = dir.join("no-such-folder").join("a.png");
        let e = write_png(&missing, &[0; 12], 2, 2, 1).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&missing.display().to_string()), "{text}");
        assert_eq!(text.matches("a.png").count(), 1, "{text}");
        let e = write_png(&missing, &[0; 5], 2, 2, 1).unwrap_err();
        assert!(e.to_string().ends_with("5 bytes are not a 2×2 RGB image"), "{e}");
        let e = write_gif(&dir.join("no-such-folder").join("a.gif"), &[vec![0; 12]], 2, 2, 10).unwrap_err();
        assert!(matches!(e, MediaError::Io { .. }), "{e}");
    }
}
