//! Pictures of a group of dataset images for a person: one PNG each, a GIF that plays them, a contact sheet.

use std::path::Path;

use super::{MediaError, file_name};
use crate::dataset::Dataset;

/// A group of images for a person: `<base>/<name>/<image>.png`, `<base>/<name>.gif` playing them at `per_minute`
/// images a minute, and `<base>/<name>-sheet.png` with the first `sheet` of them. `rows` are dataset rows, `names`
/// their image ids. Returns the images as RGB, in order.
pub fn write_group(
    base: &Path,
    name: &str,
    ds: &Dataset,
    rows: &[usize],
    names: &[&str],
    per_minute: f64,
    sheet: usize,
) -> Result<Vec<Vec<u8>>, MediaError> {
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).map_err(|source| MediaError::Io { path: dir.clone(), source })?;
    let chw = ds.images(rows)?;
    let frames: Vec<Vec<u8>> =
        chw.chunks_exact(ch * w * h).map(|img| crate::media::chw_to_rgb(img, ch, w * h)).collect();
    for (id, rgb) in names.iter().zip(&frames) {
        let path = dir.join(format!("{}.png", file_name(id)));
        super::write_png(&path, rgb, w, h, 1)?;
    }
    let delay = (6000.0 / per_minute).round().clamp(1.0, 65535.0) as u16;
    let path = base.join(format!("{name}.gif"));
    super::write_gif(&path, &frames, w, h, delay)?;
    let tiles: Vec<&[u8]> = frames.iter().take(sheet).map(Vec::as_slice).collect();
    let grid: Vec<Vec<&[u8]>> = tiles.chunks(8).map(<[&[u8]]>::to_vec).collect();
    let path = base.join(format!("{name}-sheet.png"));
    super::sheet::write_sheet(&path, &grid, w).map_err(|e| MediaError::Picture { path, message: e.to_string() })?;
    Ok(frames)
}
