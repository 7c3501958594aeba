//! Subcommands over the store and the reports' evidence: `verify`, `gc`, `diff` and `annotate`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::engine;
use crate::engine::progress::Reporter;
use crate::engine::stage::Registry;

use super::{CliError, Workspace};

/// Re-hashes every entry and drops the corrupt ones; removes what lies in `store/` but is no entry. Exit code 1
/// when it dropped or removed anything, so scripts can tell.
pub(super) fn verify(ws: &Workspace<'_>, out: &mut dyn Write, reporter: &Reporter) -> Result<u8, CliError> {
    let store = ws.open()?;
    let _lock = store.lock(|m| reporter.line(m))?;
    let keys = store.keys()?;
    let mut corrupt = 0;
    for key in &keys {
        if let Some(reason) = store.verify_entry(key)? {
            corrupt += 1;
            writeln!(out, "dropped {key}: {reason}")?;
            store.remove_entry(key)?;
        }
    }
    let strays = store.strays()?;
    for path in &strays {
        store.remove_stray(path)?;
        writeln!(out, "removed {}: not an entry in its place", path.display())?;
    }
    writeln!(out, "verified {} entries, dropped {corrupt} corrupt, removed {} stray paths", keys.len(), strays.len())?;
    Ok(if corrupt + strays.len() > 0 { 1 } else { 0 })
}

/// `hudd gc`: what `engine::gc` finds dead is dropped (or, with `--dry-run`, listed); the policy is the engine's.
pub(super) fn gc(
    ws: &Workspace<'_>,
    registry: &Registry,
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let store = ws.open()?;
    let live = engine::gc::live(&store, ws.store, registry, !dry_run, &mut |line| {
        let _ = writeln!(err, "{line}");
    });
    let live = live.map_err(|e| match e {
        engine::gc::GcError::Store(e) => CliError::from(e),
        unplannable => CliError::Usage(unplannable.to_string()),
    })?;
    let mut dropped = BTreeSet::new();
    for (key, what) in engine::gc::dead(&store, &live.keep)? {
        if dry_run {
            writeln!(out, "would drop {key}  {what}")?;
        } else {
            engine::gc::drop_entry(&store, &key)?;
            writeln!(out, "dropped {key}  {what}")?;
        }
        dropped.insert(key);
    }
    if !dry_run {
        engine::gc::finish(&store, &dropped)?;
    }
    drop(live.held);
    let verb = if dry_run { "would drop" } else { "dropped" };
    writeln!(out, "{verb} {} entries, kept {}", dropped.len(), live.keep.len())?;
    Ok(0)
}

/// `hudd diff`; `flags` are `--json`, `--md`, `--all` and `--check`.
pub(super) fn diff(
    ws: &Workspace<'_>,
    before: &str,
    after: &str,
    flags: [bool; 4],
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let [json, md, all, check] = flags;
    let store = ws.open()?;
    let a = crate::diff::resolve(&store, ws.dir, before)?;
    let b = crate::diff::resolve(&store, ws.dir, after)?;
    let outputs =
        |key: &str| store.entry(key).map(|e| e.outputs.iter().map(|(name, o)| (name.clone(), o.digest())).collect());
    let d = crate::diff::diff(&a, &b, ws.dir, all, &outputs);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&d).expect("a diff serialises"))?;
    } else if md {
        write!(out, "{}", d.markdown())?;
    } else {
        write!(out, "{}", d.text())?;
    }
    if !check {
        return Ok(0);
    }
    // A side without figures leaves nothing checked, which is not a reproduction.
    if d.compared == 0 {
        let why = match [&a, &b].into_iter().find(|side| side.evidence.is_none()) {
            Some(side) => format!("`{}` has no report (no evidence.json)", side.label),
            None => "neither evidence.json holds a figure".into(),
        };
        return Err(CliError::Usage(format!(
            "diff --check: nothing to compare, {why}: run the workflow through its report stage, or name a report folder"
        )));
    }
    // The exit code says it in every format; the words only where they do not break JSON.
    let differ = d.differing();
    if !json {
        match differ {
            0 => writeln!(out, "\nevery figure equal ({} compared)", d.compared)?,
            n => writeln!(out, "\n{n} figure{} differ (of {} compared)", if n == 1 { "" } else { "s" }, d.compared)?,
        }
    }
    Ok(u8::from(differ > 0))
}

pub(super) fn annotate(
    ws: &Workspace<'_>,
    run: &str,
    output: Option<&Path>,
    force: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    use crate::artefact::annotations::{self, Annotations, Current};
    let store = ws.open()?;
    let side = crate::diff::resolve(&store, ws.dir, run)?;
    let evidence =
        side.evidence.ok_or_else(|| CliError::Usage(format!("`{run}` has no report to read clusters from")))?;
    let clusters: Vec<Current> = crate::diff::clusters(&evidence)
        .into_iter()
        .map(|(id, members)| Current { id, fingerprint: crate::artefact::evidence::fingerprint(&members), members })
        .collect();
    let existing_path = evidence["annotations_file"].as_str().map(|p| ws.dir.join(p));
    let existing: Annotations = match existing_path.as_ref().filter(|p| p.exists()) {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => Annotations::default(),
    };
    let describe = |id: usize| {
        let c = evidence["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["id"] == id));
        let size = c.and_then(|c| c["size"].as_u64()).unwrap_or(0);
        match c.and_then(|c| c["description"].as_str()).filter(|d| !d.is_empty()) {
            Some(d) => format!("cluster {id}: {size} images; what they share: {d}"),
            None => format!("cluster {id}: {size} images"),
        }
    };
    let mut text = annotations::template(&clusters, &existing, describe);
    // Notes that match no current cluster are kept, commented out, for the engineer to carry over by hand.
    let (bound, flags) = annotations::bind(&existing, &clusters);
    for f in &flags {
        let Some(a) = f.table.strip_prefix("cluster.").and_then(|k| existing.cluster.get(k)) else { continue };
        if bound.values().any(|b| &b.annotation == a && !b.by_number_only) {
            continue;
        }
        text.push_str(&format!("\n# [{}] not carried over: {}\n", f.table, f.problem));
        for (field, value) in [
            ("triggering_condition", &a.triggering_condition),
            ("hazard", &a.hazard),
            ("countermeasure", &a.countermeasure),
            ("reviewer", &a.reviewer),
            ("status", &a.status),
        ] {
            if !value.is_empty() {
                text.push_str(&format!("# {field} = {value:?}\n"));
            }
        }
        writeln!(err, "warning: [{}] not carried over ({}): kept as comments", f.table, f.problem)?;
    }
    match output {
        Some(path) => {
            match annotations::write(path, &text, force).map_err(|e| CliError::Usage(e.to_string()))? {
                annotations::Written::New => {}
                annotations::Written::Replaced { backup } => {
                    writeln!(err, "kept the previous notes as {}", backup.display())?;
                }
                annotations::Written::ReplacedLink { target } => {
                    writeln!(err, "replaced the link {} (to {}) with a file", path.display(), target.display())?;
                }
            }
            writeln!(err, "wrote {} ({} clusters)", path.display(), clusters.len())?;
        }
        None => write!(out, "{text}")?,
    }
    Ok(0)
}
