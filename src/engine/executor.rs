//! The manifest's `[executor]` table: which executor `hudd run` uses by default and the resources each job asks
//! for (defaults, per stage kind, per stage). Plain data, checked by the manifest and read by the Slurm executor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Resources of a job, as `[executor]`, `[executor.kind.<kind>]` and `[executor.stage.<stage-id>]` declare them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `minutes`, `HH:MM:SS`, `D-HH:MM:SS`, ... as `sbatch --time` takes it.
    pub time: Option<String>,
    pub cpus: Option<u32>,
    /// `sbatch --mem`: `4000` (MB), `16G`, ...
    pub memory: Option<String>,
    pub gpus: Option<u32>,
    /// Further `sbatch` options, one argument each (`["--qos=high", "--constraint=a100"]`).
    #[serde(default)]
    pub sbatch: Vec<String>,
}

/// The manifest's `[executor]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Unknown keys are found by the manifest checker (serde cannot deny them beside a flattened field).
pub struct ExecutorConfig {
    /// `local` (default) or `slurm`: the executor `hudd run` uses without `--executor`.
    #[serde(default)]
    pub default: Option<ExecutorKind>,
    /// Seconds between two looks at the queue while following the jobs (default 5).
    pub poll_seconds: Option<f64>,
    /// Every job's resources.
    #[serde(flatten)]
    pub defaults: Resources,
    /// Per stage kind.
    #[serde(default)]
    pub kind: BTreeMap<String, Resources>,
    /// Per stage id (a matrix stage's id as written: its instances form one job array).
    #[serde(default)]
    pub stage: BTreeMap<String, Resources>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Local,
    Slurm,
}

impl Resources {
    /// `self` with every value `over` sets replacing it (extra options are appended).
    pub(crate) fn with(&self, over: &Resources) -> Resources {
        Resources {
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            account: over.account.clone().or_else(|| self.account.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            cpus: over.cpus.or(self.cpus),
            memory: over.memory.clone().or_else(|| self.memory.clone()),
            gpus: over.gpus.or(self.gpus),
            sbatch: self.sbatch.iter().chain(&over.sbatch).cloned().collect(),
        }
    }

    /// The `sbatch` arguments.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                args.push(format!("--{flag}={v}"));
            }
        };
        push("partition", self.partition.clone());
        push("account", self.account.clone());
        push("time", self.time.clone());
        push("cpus-per-task", self.cpus.map(|c| c.to_string()));
        push("mem", self.memory.clone());
        push("gpus", self.gpus.filter(|&g| g > 0).map(|g| g.to_string()));
        args.extend(self.sbatch.iter().cloned());
        args
    }

    /// Problems as (field, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(t) = &self.time {
            let (days, clock) = t.split_once('-').unwrap_or(("0", t));
            let parts: Vec<&str> = clock.split(':').collect();
            let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            if !digits(days) || parts.len() > 3 || !parts.iter().all(|p| digits(p)) {
                out.push(("time", format!("`{t}` is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)")));
            }
        }
        if let Some(m) = &self.memory {
            let number = m.trim_end_matches(['K', 'M', 'G', 'T']);
            if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) || m.len() - number.len() > 1 {
                out.push(("memory", format!("`{m}` is not a Slurm memory size (`4000` MB, `16G`, ...)")));
            }
        }
        if self.cpus == Some(0) {
            out.push(("cpus", "must be at least 1".into()));
        }
        for o in &self.sbatch {
            if !o.starts_with('-') {
                out.push((
                    "sbatch",
                    format!("`{o}` is not an option (each entry is one argument such as `--qos=high`)"),
                ));
            }
        }
        out
    }
}

impl ExecutorConfig {
    /// The keys of `[executor]` besides a job's resources.
    pub const OWN_KEYS: [&'static str; 4] = ["default", "poll_seconds", "kind", "stage"];

    /// What a job of `kind` for stage `base_id` asks for: defaults, then the kind's, then the stage's.
    pub fn resources(&self, kind: &str, base_id: &str) -> Resources {
        let none = Resources::default();
        self.defaults.with(self.kind.get(kind).unwrap_or(&none)).with(self.stage.get(base_id).unwrap_or(&none))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_resources_override_kind_resources_override_defaults() {
        let config: ExecutorConfig = toml::from_str(
            "partition = \"cpu\"\ntime = \"01:00:00\"\ncpus = 2\nsbatch = [\"--qos=low\"]\n\
             [kind.train]\npartition = \"gpu\"\ngpus = 1\n[stage.report]\ncpus = 1\ntime = \"5\"\n",
        )
        .unwrap();
        let args = config.resources("train", "train").args();
        assert_eq!(args, ["--partition=gpu", "--time=01:00:00", "--cpus-per-task=2", "--gpus=1", "--qos=low"]);
        let args = config.resources("report", "report").args();
        assert_eq!(args, ["--partition=cpu", "--time=5", "--cpus-per-task=1", "--qos=low"]);
    }

    #[test]
    fn bad_times_and_memory_sizes_are_named() {
        let r = Resources { time: Some("1h".into()), memory: Some("16GB".into()), cpus: Some(0), ..Default::default() };
        let fields: Vec<&str> = r.validate().iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["time", "memory", "cpus"]);
        let ok = Resources { time: Some("1-02:00:00".into()), memory: Some("4000".into()), ..Default::default() };
        assert!(ok.validate().is_empty());
    }
}
