//! `hudd simulate`: a quick look at a simulator without a manifest: PNG files, `params.csv` and a contact sheet.

use std::path::Path;

use super::SheetRows;
use super::{Distributions, ParamSpec, Simulator, SplitPlan, generate};
use crate::dataset::{DatasetError, build_table, write_csv};

/// Writes `n` images drawn from the simulator's default distributions into `out`.
pub fn write_folder(
    sim: &dyn Simulator,
    task: &str,
    n: usize,
    seed: u64,
    size: u32,
    out: &Path,
    sheet: bool,
) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io { path: out.to_path_buf(), source };
    std::fs::create_dir_all(out).map_err(io)?;
    let dists = Distributions::new(sim, &Default::default(), "params").expect("default distributions are valid");
    let plans = [SplitPlan::plain("all".into(), n, dists)];
    let pool = rayon::ThreadPoolBuilder::new().build().expect("a default thread pool builds");
    let (mut ids, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = SheetRows::default();
    generate(sim, task, size, seed, &plans, &pool, |g| {
        let name = format!("{:06}.png", g.index);
        let path = out.join(&name);
        image::save_buffer_with_format(
            &path,
            &g.sample.rgb,
            size,
            size,
            image::ColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| DatasetError::Table { path: path.clone(), message: e.to_string() })?;
        if sheet {
            rows.offer(&g.sample.label, &g.sample.rgb);
        }
        ids.push(name);
        labels.push(g.sample.label);
        values.push(g.values);
        Ok::<(), DatasetError>(())
    })?;
    let csv = out.join("params.csv");
    let mut df = build_table(
        &ids,
        None,
        &sim.target(task),
        &labels,
        &sim.params().iter().map(ParamSpec::column).collect::<Vec<_>>(),
        &values,
    )
    .map_err(|e| DatasetError::Table { path: csv.clone(), message: e.to_string() })?;
    write_csv(&csv, &mut df)?;
    if sheet {
        let grid: Vec<Vec<&[u8]>> = rows.rows.values().map(|r| r.iter().map(Vec::as_slice).collect()).collect();
        let path = out.join("sheet.png");
        crate::media::sheet::write_sheet(&path, &grid, size as usize)
            .map_err(|e| DatasetError::Table { path: path.clone(), message: e.to_string() })?;
    }
    Ok(())
}
