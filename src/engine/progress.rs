//! Progress of a run on stderr: bars with ETA on a terminal, sparse plain lines otherwise, nothing in tests.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Hidden,
}

/// Hands out one [`Progress`] per stage and prints run-level lines without tearing the bars.
pub struct Reporter {
    mode: Mode,
    multi: MultiProgress,
}

impl Reporter {
    /// Bars when stderr is a terminal, plain lines when it is not.
    pub fn stderr() -> Self {
        let mode = if std::io::stderr().is_terminal() { Mode::Bars } else { Mode::Lines };
        Reporter { mode, multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()) }
    }

    /// Prints nothing at all (library use and tests).
    pub fn hidden() -> Self {
        Reporter { mode: Mode::Hidden, multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) }
    }

    /// A run-level message such as "train: done in 12.1 s".
    pub fn line(&self, message: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(message);
            }
            Mode::Lines => eprintln!("{message}"),
            Mode::Hidden => {}
        }
    }

    pub fn stage(&self, stage_id: &str) -> Progress {
        let bar = match self.mode {
            Mode::Bars => {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>24.bold} {bar:30} {pos}/{len} {msg} eta {eta}")
                        .expect("static template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(stage_id.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            _ => None,
        };
        Progress {
            stage_id: stage_id.to_string(),
            mode: self.mode,
            bar,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Mutex::new(Instant::now()),
            last_line: Mutex::new(Instant::now()),
        }
    }
}

/// Per-item progress of one stage. Cheap to call from a stage's inner loop.
pub struct Progress {
    stage_id: String,
    mode: Mode,
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    started: Mutex<Instant>,
    last_line: Mutex<Instant>,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn hidden() -> Self {
        Reporter::hidden().stage("")
    }

    /// Starts a phase of `total` items with a short description ("epoch 3/10", "heatmaps").
    pub fn start(&self, total: u64, message: &str) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_length(total);
            bar.set_message(message.to_string());
        } else if self.mode == Mode::Lines {
            eprintln!("  {}: {message} ({total} items)", self.stage_id);
        }
    }

    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.mode == Mode::Lines {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= LINE_EVERY {
                *last = Instant::now();
                let total = self.total.load(Ordering::Relaxed).max(1);
                let elapsed = self.started.lock().unwrap_or_else(|e| e.into_inner()).elapsed().as_secs_f64();
                let eta = elapsed / done.max(1) as f64 * total.saturating_sub(done) as f64;
                eprintln!(
                    "  {}: {done}/{total} ({:.0}%), eta {eta:.0} s",
                    self.stage_id,
                    100.0 * done as f64 / total as f64
                );
            }
        }
    }

    pub fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        } else if self.mode == Mode::Lines {
            eprintln!("  {}: {message}", self.stage_id);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
