//! Contact sheets: a grid of images in one PNG, for a person to see at a glance what a set of images holds.

use std::path::Path;

/// A grid of `rows` of equally sized RGB tiles (interleaved bytes, `size × size`), 2-pixel gaps, dark background.
pub fn write_sheet(path: &Path, rows: &[Vec<&[u8]>], size: usize) -> Result<(), image::ImageError> {
    let gap = 2;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (w, h) = (cols * (size + gap) + gap, rows.len().max(1) * (size + gap) + gap);
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([24, 24, 28]));
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let (x0, y0) = (gap + c * (size + gap), gap + r * (size + gap));
            for y in 0..size {
                for x in 0..size {
                    let i = (y * size + x) * 3;
                    img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb([tile[i], tile[i + 1], tile[i + 2]]));
                }
            }
        }
    }
    img.save_with_format(path, image::ImageFormat::Png)
}
