//! The Slurm executor: every stale stage becomes an `sbatch` job running `hudd exec <key>` in the same workspace
//! (the store on a shared file system), a matrix stage one job array, and the DAG's edges `afterok` dependencies
//! with `--kill-on-invalid-dep=yes`, so the whole DAG is submitted at once and Slurm orders it.
//!
//! Keys, specs and entries are the local executor's: a stage computed by a job is the same artefact, and a rerun
//! submits nothing. Jobs already queued or running for a key (another run, another user) are depended on, not
//! submitted twice: `.hudd/slurm/jobs/<key>` remembers the job that computes each key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::executor::ExecutorConfig;
use crate::engine::manifest::Workflow;
use crate::engine::progress::Reporter;
use crate::engine::schedule::Schedule;
use crate::engine::stage::Registry;
use crate::engine::store::{EntryState, Store, now};
use crate::engine::{EngineError, Finish, Outcome, Planned, RunReport, finish, prepare};

/// How `hudd run --executor slurm` behaves.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Submit and return; `hudd status` follows up.
    pub detach: bool,
    /// The `hudd` binary the jobs run (visible from every node: a shared file system).
    pub program: PathBuf,
}

/// A log path as `sbatch --output` takes it: the folder's `%` doubled, the file name's `%A`, `%a`, `%j` kept.
fn slurm_pattern(path: &Path) -> String {
    let dir = path.parent().map_or(String::new(), |d| d.display().to_string().replace('%', "%%"));
    let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    format!("{dir}/{name}")
}

/// Quotes a value for a POSIX shell: `'...'` with every `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn slurm_error(message: impl Into<String>) -> EngineError {
    EngineError::Scheduler(message.into())
}

/// Runs a Slurm command; its stdout, or an error with its stderr.
fn slurm(program: &str, args: &[String]) -> Result<String, EngineError> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        slurm_error(format!("cannot run `{program}` ({e}); is Slurm installed and on PATH (Debian: slurm-wlm)?"))
    })?;
    if !out.status.success() {
        return Err(slurm_error(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A job's state as `squeue` shows it.
#[derive(Debug, Clone, PartialEq)]
struct JobState {
    state: String,
    reason: String,
}

impl JobState {
    fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }
}

/// States of jobs (array tasks expanded as `123_4`), finished ones included while Slurm remembers them.
fn job_states(ids: &BTreeSet<String>) -> Result<BTreeMap<String, JobState>, EngineError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let args = ["-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j"].iter().map(|s| s.to_string());
    let args: Vec<String> = args.chain([ids.iter().cloned().collect::<Vec<_>>().join(",")]).collect();
    let text = match slurm("squeue", &args) {
        Ok(text) => text,
        // Every job listed is gone from the controller's memory.
        Err(EngineError::Scheduler(m)) if m.contains("Invalid job id") => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            Some((id.to_string(), JobState { state: state.to_string(), reason: reason.to_string() }))
        })
        .collect())
}

/// The exit code `scontrol` recorded for a finished job, while it remembers the job.
fn exit_code(job: &str) -> Option<u8> {
    let text = slurm("scontrol", &["show".into(), "job".into(), job.into()]).ok()?;
    let code = text.split_whitespace().find_map(|w| w.strip_prefix("ExitCode="))?;
    code.split(':').next()?.parse().ok()
}

/// The job that computes `key`, as recorded at submission (`123` or `123_4`), with its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: String,
    pub log: PathBuf,
    pub workflow: String,
    pub stage: String,
    pub submitted: String,
}

pub fn job_record(store: &Store, key: &str) -> Option<JobRecord> {
    store.read_job_record(key)
}

/// One line on the job computing a stale key, for `hudd status`: queued, running, or how it ended.
pub fn job_status(store: &Store, key: &str) -> Option<String> {
    let record = job_record(store, key)?;
    // A controller too busy to answer is said, not taken for a job that never was.
    let states = match job_states(&BTreeSet::from([base_job(&record.job).to_string()])) {
        Ok(states) => states,
        Err(e) => return Some(format!("submitted as Slurm job {}, its state unknown ({e})", record.job)),
    };
    Some(match states.get(&record.job) {
        Some(s) if s.state == "PENDING" => format!("queued as Slurm job {} ({})", record.job, s.reason),
        Some(s) if s.active() => format!("{} as Slurm job {}", s.state.to_lowercase(), record.job),
        Some(s) => format!("Slurm job {} ended {}; log: {}", record.job, s.state, record.log.display()),
        None => format!("Slurm job {} ended; log: {}", record.job, record.log.display()),
    })
}

/// The first group whose members' unfinished parents (stale, without a job) are all inside it.
fn next_ready(groups: &[Group], schedule: &Schedule<'_>) -> Option<usize> {
    groups
        .iter()
        .position(|g| g.members.iter().all(|&m| schedule.unfinished_parents(m).all(|p| g.members.contains(&p))))
}

/// `123` of `123_4`.
fn base_job(job: &str) -> &str {
    job.split('_').next().unwrap_or(job)
}

/// One `sbatch` submission: a stage, or every stale instance of a matrix stage as an array.
struct Group {
    base_id: String,
    kind: String,
    /// Stage indices, array task `i` computing `members[i]`.
    members: Vec<usize>,
}

/// Runs a workflow's stale stages on Slurm, following the jobs to the end unless `options.detach`.
pub fn run(
    store: &Store,
    workflow: &Workflow,
    registry: &Registry,
    config: &ExecutorConfig,
    options: &SlurmOptions,
    reporter: &Reporter,
) -> Result<RunReport, EngineError> {
    let started = now();
    let _lock = store.lock(|message| reporter.line(message))?;
    let (planned, stale, mut outcomes) = prepare(store, workflow, registry)?;
    let n = workflow.stages.len();
    let mut jobs = live_jobs(store, workflow, &planned, &stale, reporter)?;
    let mut groups = groups(workflow, &stale, &jobs);

    let submission = Submission {
        store,
        workflow,
        config,
        options,
        stamp: started.replace([':', '.'], "-"),
        workspace: std::fs::canonicalize(store.workspace()).unwrap_or_else(|_| store.workspace().to_path_buf()),
    };
    // A group goes when every stale parent of its members has a job. Edges join stage ids as written, which form a
    // DAG, so one group is always ready (a stage may depend on an early instance of a matrix whose later instances
    // come after it in DAG order, so the DAG order of instances alone would not do).
    // A stage with a job counts as finished for the schedule: Slurm's dependencies order the rest.
    let mut schedule = Schedule::new(&workflow.dag, &stale);
    for &i in jobs.keys() {
        schedule.finish(i);
    }
    let mut g = 0;
    while !groups.is_empty() {
        let ready = next_ready(&groups, &schedule).expect("stage ids form a DAG");
        let group = groups.remove(ready);
        for &m in &group.members {
            schedule.start(m, &group.members);
        }
        g += 1;
        // A parent in an array depends on its task (`123_4`), not on the whole array.
        let after: BTreeSet<String> = (group.members.iter())
            .flat_map(|&m| workflow.dag.parents(m))
            .filter(|p| !group.members.contains(p))
            .filter_map(|p| jobs.get(&p).map(|job| job.job.clone()))
            .collect();
        for (m, record) in submission.submit(&group, g, &after, &planned, reporter)? {
            jobs.insert(m, record);
            schedule.finish(m);
        }
    }
    if !stale.is_empty() {
        reporter.line(&format!("{}: {} of {n} stages on Slurm ({g} new jobs)", workflow.name, stale.len()));
    }

    let threads = config.defaults.cpus.map_or(1, |c| c as usize);
    let how = Finish { started, jobs: jobs.len(), threads, device: None, executor: "slurm" };
    if options.detach {
        for (&i, record) in &jobs {
            outcomes[i] = Some(Outcome::Submitted { job: record.job.clone() });
        }
        let outcomes = outcomes.into_iter().map(|o| o.expect("every stage is fresh or submitted")).collect();
        return finish(store, workflow, registry, &planned, outcomes, how);
    }

    follow(store, workflow, &planned.specs, &jobs, &mut outcomes, config, reporter)?;
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Skipped { because: "interrupted before its job ended".into() }))
        .collect();
    finish(store, workflow, registry, &planned, outcomes, how)
}

/// The stale stages whose keys a live job already computes (another run, another user): depended on, not submitted
/// again.
fn live_jobs(
    store: &Store,
    workflow: &Workflow,
    planned: &Planned,
    stale: &BTreeSet<usize>,
    reporter: &Reporter,
) -> Result<BTreeMap<usize, JobRecord>, EngineError> {
    let recorded: BTreeMap<usize, JobRecord> =
        stale.iter().filter_map(|&i| Some((i, job_record(store, &planned.specs[i].key)?))).collect();
    let states = job_states(&recorded.values().map(|r| base_job(&r.job).to_string()).collect())?;
    let mut jobs = BTreeMap::new();
    for (i, record) in recorded {
        if states.get(&record.job).is_some_and(JobState::active) {
            reporter.line(&format!("{}: already submitted as Slurm job {}", workflow.stages[i].id, record.job));
            jobs.insert(i, record);
        }
    }
    Ok(jobs)
}

/// One submission per stage id as written, in DAG order; a matrix's stale instances form an array.
fn groups(workflow: &Workflow, stale: &BTreeSet<usize>, jobs: &BTreeMap<usize, JobRecord>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for &i in workflow.dag.order() {
        if !stale.contains(&i) || jobs.contains_key(&i) {
            continue;
        }
        let stage = &workflow.stages[i];
        match groups.iter_mut().find(|g| g.base_id == stage.base_id) {
            Some(g) => g.members.push(i),
            None => groups.push(Group { base_id: stage.base_id.clone(), kind: stage.kind.clone(), members: vec![i] }),
        }
    }
    groups
}

/// What every `sbatch` of one run shares.
struct Submission<'a> {
    store: &'a Store,
    workflow: &'a Workflow,
    config: &'a ExecutorConfig,
    options: &'a SlurmOptions,
    /// The run's start, as file names take it.
    stamp: String,
    workspace: PathBuf,
}

impl Submission<'_> {
    /// Writes group `g`'s script, submits it after the jobs `after`, and records each member's job (an array's task
    /// for a member of an array).
    fn submit(
        &self,
        group: &Group,
        g: usize,
        after: &BTreeSet<String>,
        planned: &Planned,
        reporter: &Reporter,
    ) -> Result<Vec<(usize, JobRecord)>, EngineError> {
        let (store, workflow) = (self.store, self.workflow);
        let keys: Vec<String> = group.members.iter().map(|&m| shell_quote(&planned.specs[m].key)).collect();
        let text = format!(
            "#!/bin/bash\n# Written by hudd for workflow {wf}: array task i computes the i-th key.\nset -euo pipefail\n\
             keys=({keys})\nexec {program} --workspace {ws} exec \"${{keys[${{SLURM_ARRAY_TASK_ID:-0}}]}}\" \
             --threads \"${{SLURM_CPUS_PER_TASK:-${{SLURM_CPUS_ON_NODE:-1}}}}\"\n",
            wf = shell_quote(&workflow.name),
            keys = keys.join(" "),
            program = shell_quote(&self.options.program.display().to_string()),
            ws = shell_quote(&self.workspace.display().to_string()),
        );
        let stamp = &self.stamp;
        let script = store.write_slurm_script(&format!("{stamp}-{g}"), &text)?;
        let array = group.members.len() > 1 || !workflow.stages[group.members[0]].matrix.is_empty();
        let log_pattern =
            store.slurm_log_pattern(&if array { format!("{stamp}-{g}-%A_%a") } else { format!("{stamp}-{g}-%j") })?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=hudd:{}:{}", workflow.name, group.base_id),
            format!("--chdir={}", self.workspace.display()),
            // Slurm expands `%` in `--output`: a `%` of the workspace's path is written `%%`.
            format!("--output={}", slurm_pattern(&log_pattern)),
        ];
        if array {
            args.push(format!("--array=0-{}", group.members.len() - 1));
        }
        let after = after.iter().cloned().collect::<Vec<_>>();
        if !after.is_empty() {
            args.push(format!("--dependency=afterok:{}", after.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        args.extend(self.config.resources(&group.kind, &group.base_id).args());
        args.push(script.display().to_string());
        let job_id = slurm("sbatch", &args)?.trim().split(';').next().unwrap_or("").to_string();
        if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(slurm_error(format!("sbatch answered `{job_id}` instead of a job id")));
        }
        let mut records = Vec::new();
        for (t, &m) in group.members.iter().enumerate() {
            let job = if array { format!("{job_id}_{t}") } else { job_id.clone() };
            let log = log_pattern.display().to_string().replace("%A", &job_id).replace("%a", &t.to_string());
            let record = JobRecord {
                job,
                log: PathBuf::from(log.replace("%j", &job_id)),
                workflow: workflow.name.clone(),
                stage: workflow.stages[m].id.clone(),
                submitted: now(),
            };
            store.write_job_record(&planned.specs[m].key, &record)?;
            records.push((m, record));
        }
        reporter.line(&format!(
            "{}: submitted as Slurm job {job_id}{}{}",
            group.base_id,
            if array { format!(" (array of {})", group.members.len()) } else { String::new() },
            if after.is_empty() { String::new() } else { format!(", after {}", after.join(", ")) }
        ));
        Ok(records)
    }
}

/// Polls the queue until every job has ended, reporting each stage as its job ends; Ctrl-C offers to cancel.
fn follow(
    store: &Store,
    workflow: &Workflow,
    specs: &[crate::engine::store::Spec],
    jobs: &BTreeMap<usize, JobRecord>,
    outcomes: &mut [Option<Outcome>],
    config: &ExecutorConfig,
    reporter: &Reporter,
) -> Result<(), EngineError> {
    // Ctrl-C sets a flag instead of ending the process, so that the jobs can be cancelled or left on purpose.
    let interrupted = Arc::new(AtomicBool::new(false));
    let handler = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))
        .map_err(|e| slurm_error(format!("cannot watch for Ctrl-C: {e}")))?;
    let _unregister = Unregister(handler);
    let poll = Duration::from_secs_f64(config.poll_seconds.unwrap_or(5.0).max(0.1));
    let mut waiting: BTreeSet<usize> = jobs.keys().copied().collect();
    let mut running: BTreeSet<usize> = BTreeSet::new();
    while !waiting.is_empty() {
        if interrupted.swap(false, Ordering::SeqCst) {
            let live: BTreeSet<String> = waiting.iter().map(|i| jobs[i].job.clone()).collect();
            return Err(on_interrupt(&live)?);
        }
        let states = job_states(&waiting.iter().map(|i| base_job(&jobs[i].job).to_string()).collect())?;
        for i in waiting.clone() {
            let (stage, record) = (&workflow.stages[i].id, &jobs[&i]);
            let state = states.get(&record.job);
            let outcome = if store.state(&store.resolve(&specs[i].key)) == EntryState::Intact {
                let seconds = store.entry(&store.resolve(&specs[i].key)).map_or(0.0, |e| e.seconds);
                reporter.line(&format!("{stage}: done in {seconds:.1} s (Slurm job {})", record.job));
                Outcome::Ran { seconds }
            } else {
                match state {
                    Some(s) if s.active() => {
                        if s.state == "RUNNING" && running.insert(i) {
                            reporter.line(&format!("{stage}: running (Slurm job {})", record.job));
                        }
                        continue;
                    }
                    Some(s) if s.state == "CANCELLED" && s.reason.contains("Dependency") => {
                        let failed = workflow
                            .dag
                            .ancestors(i)
                            .into_iter()
                            .find(|&a| matches!(outcomes[a], Some(Outcome::Failed { .. })));
                        let because = match failed {
                            Some(a) => format!("needs `{}`, which failed", workflow.stages[a].id),
                            None => format!("Slurm job {} cancelled: a dependency failed", record.job),
                        };
                        reporter.line(&format!("{stage}: skipped ({because})"));
                        Outcome::Skipped { because }
                    }
                    other => {
                        let (what, code) = match other {
                            Some(s) => (s.state.clone(), exit_code(&record.job)),
                            None => ("ended".to_string(), None),
                        };
                        let error = format!(
                            "Slurm job {} {}{} without an entry; log: {}{}",
                            record.job,
                            what.to_lowercase(),
                            code.map(|c| format!(" (exit code {c})")).unwrap_or_default(),
                            record.log.display(),
                            log_tail(&record.log)
                        );
                        reporter.line(&format!("{stage}: FAILED: {error}"));
                        Outcome::Failed { error, exit_code: code.filter(|c| (1..=3).contains(c)).unwrap_or(2) }
                    }
                }
            };
            outcomes[i] = Some(outcome);
            waiting.remove(&i);
        }
        if !waiting.is_empty() {
            std::thread::sleep(poll);
        }
    }
    Ok(())
}

/// Restores Ctrl-C's default action when following ends.
struct Unregister(signal_hook::SigId);

impl Drop for Unregister {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.0);
    }
}

/// The last lines of a job's log, to show beside its failure.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() { String::new() } else { format!("\n    {}", tail.join("\n    ")) }
}

/// Ctrl-C while following: asks (on a terminal) whether to cancel the jobs still queued or running, and says
/// what became of them.
fn on_interrupt(live: &BTreeSet<String>) -> Result<EngineError, EngineError> {
    let ids: Vec<String> = live.iter().cloned().collect();
    let cancel = if std::io::stdin().is_terminal() {
        eprint!(
            "\ninterrupted: cancel the {} Slurm job(s) still queued or running ({})? [y/N] ",
            ids.len(),
            ids.join(" ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    } else {
        false
    };
    Ok(EngineError::Interrupted(if cancel {
        slurm("scancel", &ids)?;
        format!("cancelled Slurm jobs {}", ids.join(" "))
    } else {
        format!(
            "Slurm jobs {} go on (`hudd status <manifest>` follows them, `scancel {}` stops them)",
            ids.join(" "),
            ids.join(" ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_in_the_workspace_path_is_not_expanded_by_slurm() {
        assert_eq!(slurm_pattern(Path::new("/w/100%/logs/run-1-%j.log")), "/w/100%%/logs/run-1-%j.log");
    }

    #[test]
    fn quoting_survives_every_shell_character() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $(rm -rf /) `x` \"y\"; z"), r#"'it'\''s $(rm -rf /) `x` "y"; z'"#);
        // Check against a real shell: the value comes back unchanged.
        let hostile = "it's $(echo pwned) `id` \"q\"; & | \\ \n newline";
        let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", shell_quote(hostile))).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), hostile);
    }

    #[test]
    fn a_group_waits_for_every_parent_even_a_later_array_task() {
        // Stage 0 = a[1], stage 1 = b (reads a[1]), stage 2 = a[2]: DAG order 0, 1, 2, but b must follow array a.
        let dag = crate::engine::graph::Dag::new(3, [(0, 1)]).unwrap();
        let group = |id: &str, members: Vec<usize>| Group { base_id: id.into(), kind: "k".into(), members };
        let groups = [group("b", vec![1]), group("a", vec![0, 2])];
        let mut schedule = Schedule::new(&dag, &(0..3).collect());
        assert_eq!(next_ready(&groups, &schedule), Some(1), "the array goes first");
        for m in [0, 2] {
            schedule.start(m, &[0, 2]);
            schedule.finish(m);
        }
        assert_eq!(next_ready(&groups[..1], &schedule), Some(0));
    }
}
