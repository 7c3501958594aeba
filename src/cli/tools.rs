//! Subcommands that need no workflow: `doctor`, `simulate` and `model` (`describe`, `import`).

use std::io::Write;
use std::path::Path;

use crate::engine::store::Store;

use super::{CliError, Workspace};

pub(super) fn doctor(ws: &Workspace<'_>, out: &mut dyn Write) -> Result<u8, CliError> {
    let mut rows = crate::runtime::doctor(&Store::root_of(ws.dir));
    let shipped: Vec<&str> = crate::model::SHIPPED.iter().map(|(n, _)| *n).collect();
    rows.push(("shipped architectures".into(), format!("{} (compiled into the binary)", shipped.join(", "))));
    rows.push((
        "entries".to_string(),
        match ws.store {
            Some(shared) => format!("{} (a store shared by workspaces: --store or HUDD_STORE)", shared.display()),
            None => format!("{} (this workspace's own)", Store::root_of(ws.dir).display()),
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{k:width$}  {v}")?;
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn simulate(
    simulator: &str,
    task: Option<String>,
    n: usize,
    seed: u64,
    dir: &Path,
    sheet: bool,
    size: u32,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let sim = crate::sim::simulator(simulator).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown simulator `{simulator}` (simulators: {})",
            crate::sim::simulator_names().join(", ")
        ))
    })?;
    let task = task.unwrap_or_else(|| sim.tasks()[0].to_string());
    if !sim.tasks().contains(&task.as_str()) {
        return Err(CliError::Usage(format!(
            "simulator `{simulator}` has no task `{task}` (tasks: {})",
            sim.tasks().join(", ")
        )));
    }
    if !(16..=512).contains(&size) {
        return Err(CliError::Usage(format!("--size must be between 16 and 512, got {size}")));
    }
    crate::sim::folder::write_folder(sim, &task, n, seed, size, dir, sheet)?;
    writeln!(
        err,
        "{n} {simulator} images, params.csv{} in {}",
        if sheet { " and sheet.png" } else { "" },
        dir.display()
    )?;
    Ok(0)
}

pub(super) fn describe_model(
    architecture: &Path,
    input: Option<&[usize]>,
    outputs: usize,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let path = architecture;
    let arch = crate::model::Architecture::resolve(architecture, Path::new("."))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let input = match input {
        Some([c, h, w]) => [*c, *h, *w],
        Some(other) => return Err(CliError::Usage(format!("--input takes C,H,W, got {other:?}"))),
        None => arch.model.input,
    };
    let rows = arch.describe(input, outputs).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    writeln!(
        out,
        "{} ({}), input {}×{}×{}, {outputs} outputs",
        arch.model.name,
        path.display(),
        input[0],
        input[1],
        input[2]
    )?;
    // A graph shows what each layer takes; a chain's layers each take the one before.
    let inputs = |r: &crate::model::LayerInfo| if arch.is_graph() { r.inputs.join(" + ") } else { String::new() };
    let width = |f: &dyn Fn(&crate::model::LayerInfo) -> String, min: usize| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(min)
    };
    let (wn, wi) = (width(&|r| r.name.clone(), 16), width(&inputs, if arch.is_graph() { 6 } else { 0 }));
    let line = |out: &mut dyn Write, name: &str, kind: &str, input: &str, output: &str, params: &str| {
        let taken = if arch.is_graph() { format!("{input:<wi$} ") } else { String::new() };
        writeln!(out, "{name:<wn$} {kind:<20} {taken}{output:>16} {params:>12}")
    };
    line(out, "layer", "kind", "inputs", "output", "parameters")?;
    for r in &rows {
        line(out, &r.name, r.kind, &inputs(r), &r.output.to_string(), &r.params.to_string())?;
    }
    writeln!(out, "total parameters: {}", rows.iter().map(|r| r.params).sum::<usize>())?;
    Ok(0)
}

/// `hudd model import`: the architecture as TOML and the weights as safetensors beside it, each written whole or not
/// at all through a temporary file of a fresh name (created, never followed if a link), and neither replacing an
/// existing file without `--force`.
pub(super) fn import_onnx(onnx: &Path, output: &Path, force: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let weights = output.with_extension("safetensors");
    let usage = |message: String| CliError::Usage(message);
    if weights == output {
        return Err(usage(format!(
            "{}: the architecture file is TOML; its weights go beside it as .safetensors, so give another name \
             (e.g. {})",
            output.display(),
            output.with_extension("toml").display()
        )));
    }
    if output.is_dir() {
        return Err(usage(format!(
            "{} is a folder; give the architecture file to write (e.g. {})",
            output.display(),
            output.join("model.toml").display()
        )));
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!("{}: no such folder to write {} in", dir.display(), output.display())));
    }
    for file in [output, weights.as_path()] {
        if !force && std::fs::symlink_metadata(file).is_ok() {
            return Err(usage(format!("{} exists; `hudd model import` replaces it only with --force", file.display())));
        }
    }
    let imported = crate::model::onnx::import(onnx).map_err(|e| usage(e.to_string()))?;
    let text = format!(
        "# Imported from {} by `hudd model import`; its weights are {}.\n{}",
        onnx.display(),
        weights.file_name().map_or(String::new(), |f| f.to_string_lossy().to_string()),
        imported.architecture.to_toml()
    );
    let write = |path: &Path, save: &dyn Fn(&Path) -> Result<(), String>| -> Result<(), CliError> {
        let fail = |e: String| usage(format!("cannot write {}: {e}", path.display()));
        let tmp = tempfile::Builder::new().prefix(".hudd-import.").tempfile_in(dir).map_err(|e| fail(e.to_string()))?;
        save(tmp.path()).map_err(fail)?;
        tmp.persist(path).map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    };
    write(&weights, &|tmp| tch::Tensor::write_safetensors(&imported.weights, tmp).map_err(|e| e.to_string()))?;
    // Weights without their architecture would be a half import.
    write(output, &|tmp| std::fs::write(tmp, &text).map_err(|e| e.to_string()))
        .inspect_err(|_| drop(std::fs::remove_file(&weights)))?;
    let a = &imported.architecture;
    writeln!(
        out,
        "{}: {} layers, input {}×{}×{}; wrote {} and {}",
        onnx.display(),
        a.layers.len(),
        a.model.input[0],
        a.model.input[1],
        a.model.input[2],
        output.display(),
        weights.display()
    )?;
    Ok(0)
}
