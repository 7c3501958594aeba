//! `hudd run --executor slurm` against a real single-node Slurm cluster (Debian's slurm-wlm and munge, installed by
//! scripts/deps.sh) that this test starts with its own configuration and ports, and stops by PID at its end, also
//! when it fails. Everything runs through the `hudd` binary, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hudd::engine::store::Store;

/// A running slurmctld and slurmd (and munged, when this test had to start it).
struct Cluster {
    dir: tempfile::TempDir,
    pids: Vec<i32>,
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    // Generous: a loaded machine (a case study training beside the tests) can take a minute to start a process.
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(300), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Cluster {
    fn start() -> Cluster {
        for tool in ["slurmctld", "slurmd", "munged", "sbatch"] {
            let found = ["/usr/sbin", "/usr/bin"].iter().any(|d| Path::new(d).join(tool).exists());
            assert!(found, "{tool} is not installed: run scripts/deps.sh (scripts/test does)");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster { dir, pids: Vec::new() };
        // munge authenticates Slurm's messages; use the machine's daemon if one runs, else start it (stopped at the end).
        let munge_pid = Path::new("/run/munge/munged.pid");
        if !read_pid(munge_pid).is_some_and(alive) {
            std::fs::create_dir_all("/run/munge").unwrap();
            assert!(Command::new("chown").args(["munge:munge", "/run/munge"]).status().unwrap().success());
            let ok =
                Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged"]).status().unwrap().success();
            assert!(ok, "munged did not start");
            wait_for("munged", || read_pid(munge_pid).is_some_and(alive));
            cluster.pids.push(read_pid(munge_pid).unwrap());
        }
        let d = cluster.dir.path();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap()))
            .unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Free ports, so that two test runs on one machine (a clone beside a checkout) do not meet.
        let listeners = [0, 1].map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let [ctld_port, slurmd_port] = listeners.each_ref().map(|l| l.local_addr().unwrap().port());
        drop(listeners);
        let conf = format!(
            "ClusterName=hudd-test\nSlurmctldHost=localhost\nSlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\nSlurmUser=root\n\
             AuthType=auth/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nJobAcctGatherType=jobacct_gather/none\n\
             JobCompType=jobcomp/filetxt\nJobCompLoc={d}/log/jobcomp.log\nAccountingStorageType=accounting_storage/none\n\
             MpiDefault=none\nReturnToService=2\nSchedulerParameters=sched_interval=1\n\
             NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={} State=UNKNOWN\n\
             PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            mem_kb / 1024 * 9 / 10,
            d = d.display()
        );
        std::fs::write(cluster.conf(), conf).unwrap();
        let conf = cluster.conf();
        assert!(
            Command::new("/usr/sbin/slurmctld").arg("-f").arg(&conf).status().unwrap().success(),
            "slurmctld did not start"
        );
        wait_for("slurmctld", || read_pid(&d.join("slurmctld.pid")).is_some_and(alive));
        cluster.pids.push(read_pid(&d.join("slurmctld.pid")).unwrap());
        let ok =
            Command::new("/usr/sbin/slurmd").arg("-f").arg(&conf).args(["-N", "localhost"]).status().unwrap().success();
        assert!(ok, "slurmd did not start");
        wait_for("slurmd", || read_pid(&d.join("slurmd.pid")).is_some_and(alive));
        cluster.pids.push(read_pid(&d.join("slurmd.pid")).unwrap());
        wait_for("an idle node", || {
            let out = cluster.command("sinfo").args(["-h", "-o", "%T"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "idle"
        });
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A command that talks to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// `hudd` run from inside the workspace, as a user would.
    fn hudd(&self, ws: &Path, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_hudd")).current_dir(ws).args(args).output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("scontrol").arg("shutdown").output();
        let start = Instant::now();
        while self.pids.iter().any(|&p| alive(p)) && start.elapsed() < Duration::from_secs(15) {
            for &p in self.pids.iter().rev().filter(|&&p| alive(p)) {
                if start.elapsed() > Duration::from_secs(3) {
                    let _ = Command::new("kill").args(["-TERM", &p.to_string()]).status();
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for &p in self.pids.iter().filter(|&&p| alive(p)) {
            let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
        }
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Data, a matrix of two trainings (a job array), their tests, and a model imported from a file that the test
/// first writes as garbage (its stage fails, its dependent is cancelled) and later fixes.
fn manifest() -> String {
    format!(
        r#"[workflow]
name = "on-slurm"
seed = 5

[executor]
cpus = 1
poll_seconds = 0.5

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = {{ class = {{ weights = {{ stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 }} }} }}
splits = {{ train = {{ count = 48 }}, test = {{ count = 24 }} }}

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "{tiny}"
epochs = 1
batch_size = 8
validation = 0.0
device = "cpu"
matrix = {{ seed = [1, 2] }}

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"
matrix = {{ seed = [1, 2] }}

[[stage]]
id = "imported-model"
kind = "model"
dataset = "data.dataset"
architecture = "{tiny}"
weights = "weights it's $(here).safetensors"

[[stage]]
id = "test-imported"
kind = "test"
model = "imported-model.model"
dataset = "data.dataset"
"#,
        tiny = fixture("tiny.toml")
    )
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every stage's key and the digests of its outputs.
fn results(ws: &Path, w: &hudd::engine::manifest::Workflow) -> Vec<(String, String, String)> {
    let store = Store::open(ws).unwrap();
    let planned = hudd::engine::plan(&store, w, &hudd::stages::registry()).unwrap();
    w.stages
        .iter()
        .zip(&planned.specs)
        .filter_map(|(s, spec)| {
            let entry = store.entry(&spec.key)?;
            Some((s.id.clone(), spec.key.clone(), serde_json::to_string(&entry.outputs).unwrap()))
        })
        .collect()
}

#[test]
fn a_workflow_on_slurm_gives_the_local_artefacts_fails_cleanly_and_reruns_nothing() {
    let cluster = Cluster::start();
    // A workspace path with a space and a quote: the job scripts must quote it.
    let root = tempfile::tempdir().unwrap();
    let (ws, local) = (root.path().join("slurm ws 'q'"), root.path().join("local"));
    for w in [&ws, &local] {
        std::fs::create_dir_all(w).unwrap();
        std::fs::write(w.join("w.toml"), manifest()).unwrap();
        std::fs::write(w.join("weights it's $(here).safetensors"), b"not a safetensors file").unwrap();
    }

    // Submit and return; hold the jobs so that the follow-up finds them queued.
    let out = cluster.hudd(&ws, &["run", "w.toml", "--executor", "slurm", "--detach"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let jobs: Vec<String> = log
        .lines()
        .filter_map(|l| l.split("submitted as Slurm job ").nth(1))
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().to_string())
        .collect();
    assert_eq!(jobs.len(), 5, "data, the train array, the test array, the import, its test: {log}");
    assert!(log.contains("(array of 2)"), "{log}");
    for j in &jobs {
        let _ = cluster.command("scontrol").args(["hold", j]).output();
    }
    // squeue may not answer at once on a loaded machine: `status` then says the state is unknown; ask again.
    let mut status = String::new();
    for _ in 0..10 {
        status = text(&cluster.hudd(&ws, &["status", "w.toml"]));
        if !status.contains("its state unknown") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(status.contains("queued as Slurm job"), "{status}");

    // Ctrl-C while following (no terminal to ask on): the jobs stay queued, and the run says so.
    let interrupted_log = ws.join("interrupted.log");
    let mut follow = cluster
        .command(env!("CARGO_BIN_EXE_hudd"))
        .current_dir(&ws)
        .args(["run", "w.toml", "--executor", "slurm"])
        .stderr(std::fs::File::create(&interrupted_log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the follower to start", || {
        std::fs::read_to_string(&interrupted_log).is_ok_and(|t| t.contains("7 of 7 stages on Slurm"))
    });
    assert!(Command::new("kill").args(["-INT", &follow.id().to_string()]).status().unwrap().success());
    assert_eq!(follow.wait().unwrap().code(), Some(130));
    let log = std::fs::read_to_string(&interrupted_log).unwrap();
    assert!(log.contains("interrupted: Slurm jobs") && log.contains("go on"), "{log}");
    let status = text(&cluster.hudd(&ws, &["status", "w.toml"]));
    assert!(status.contains("queued as Slurm job"), "still queued after Ctrl-C: {status}");

    // Following up does not submit the held jobs again; it waits for them once released.
    let follow_log = ws.join("follow.log");
    let mut follow = cluster
        .command(env!("CARGO_BIN_EXE_hudd"))
        .current_dir(&ws)
        .args(["run", "w.toml", "--executor", "slurm"])
        .stderr(std::fs::File::create(&follow_log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the follow-up to find the queued jobs", || {
        std::fs::read_to_string(&follow_log).is_ok_and(|t| t.matches("already submitted as Slurm job").count() == 7)
    });
    for j in &jobs {
        let _ = cluster.command("scontrol").args(["release", j]).output();
    }
    let code = follow.wait().unwrap().code();
    let log = std::fs::read_to_string(&follow_log).unwrap();
    assert_eq!(code, Some(2), "the import fails: {log}");
    assert!(!log.contains(": submitted as Slurm job "), "nothing submitted twice: {log}");
    assert!(log.contains("failed: imported-model: Slurm job") && log.contains("log: "), "{log}");
    assert!(log.contains("skipped: test-imported (needs `imported-model`, which failed)"), "{log}");
    let failure_log = log.split("log: ").nth(1).unwrap().lines().next().unwrap();
    assert!(std::fs::read_to_string(failure_log).unwrap().contains("safetensors"), "the job's log says why");

    // The same stages run locally (one thread, like the jobs) give the same keys and the same bytes.
    let out = Command::new(env!("CARGO_BIN_EXE_hudd"))
        .current_dir(&local)
        .args(["run", "w.toml", "--keep-going", "--threads", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let registry = hudd::stages::registry();
    let w = |dir: &Path| hudd::engine::manifest::load(&dir.join("w.toml"), &[], &registry).unwrap();
    let on_slurm = results(&ws, &w(&ws));
    assert_eq!(on_slurm.len(), 5, "{on_slurm:?}");
    assert_eq!(on_slurm, results(&local, &w(&local)));

    // Fixing the weights (those a training wrote) reruns only the import and its test; then a rerun submits nothing.
    let trained = Store::open(&ws).unwrap().output_path(&on_slurm[1].1, "model").unwrap().join("weights.safetensors");
    std::fs::copy(trained, ws.join("weights it's $(here).safetensors")).unwrap();
    let out = cluster.hudd(&ws, &["run", "w.toml", "--executor", "slurm"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(log.matches(": submitted as Slurm job ").count(), 2, "{log}");
    let out = cluster.hudd(&ws, &["run", "w.toml", "--executor", "slurm"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!log.contains("submitted"), "{log}");
    assert!(log.contains("0 ran, 7 cached"), "{log}");
}
