//! How results and progress reach the operator or a script: `--json` (one JSON document on
//! stdout, schema in `docs/cli-json.md`) and progress on stderr (a bar on a terminal,
//! plain lines with `--progress`, nothing otherwise).

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The output flags of this run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    /// `--json`: results as one JSON document on stdout.
    pub json: bool,
    /// `--progress`: progress as plain lines on stderr (for logs).
    pub progress: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Sets the flags once, from the command line.
pub fn set(mode: Mode) {
    let _ = MODE.set(mode);
}

/// Whether results are printed as JSON.
pub fn json() -> bool {
    MODE.get().is_some_and(|m| m.json)
}

/// Prints a JSON result on stdout (one line).
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Prints `human` on stdout, or `json` with `--json`.
pub fn result(human: impl FnOnce(), json: impl FnOnce() -> serde_json::Value) {
    if self::json() {
        print_json(&json());
    } else {
        human();
    }
}

/// How often a plain progress line is written.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// Progress of a long command: a bar on a terminal, plain lines with `--progress` (percent,
/// records, rate), nothing otherwise.
pub struct Reporter {
    what: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    lines: Option<Mutex<Lines>>,
}

struct Lines {
    start: Instant,
    last: Instant,
    bytes: u64,
    records: u64,
}

impl Reporter {
    /// Progress of `what` over `total` bytes (when known).
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let plain = MODE.get().is_some_and(|m| m.progress);
        let now = Instant::now();
        let lines = plain.then(|| {
            Mutex::new(Lines {
                start: now,
                last: now,
                bytes: 0,
                records: 0,
            })
        });
        let bar = (!plain && std::io::stderr().is_terminal()).then(|| bar(total));
        Self {
            what,
            total,
            bar,
            lines,
        }
    }

    /// `bytes` of the input and `records` done so far.
    pub fn update(&self, bytes: u64, records: u64) {
        if let Some(pb) = &self.bar {
            pb.set_position(bytes);
            pb.set_message(format!("{records} records"));
        }
        if let Some(l) = &self.lines {
            let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
            l.bytes = bytes;
            l.records = records;
            if l.last.elapsed() >= LINE_EVERY {
                l.last = Instant::now();
                self.line(&l);
            }
        }
    }

    fn line(&self, l: &Lines) {
        let secs = l.start.elapsed().as_secs_f64().max(1e-9);
        let percent = match self.total {
            Some(t) if t > 0 => format!("{:.0}%", (l.bytes as f64 * 100.0 / t as f64).min(100.0)),
            _ => "?%".to_string(),
        };
        eprintln!(
            "pmp: progress: {} {percent} {} records {:.0} records/s",
            self.what,
            l.records,
            l.records as f64 / secs
        );
    }

    /// Clears the bar; in plain mode, writes the last line (100% when all was read).
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
        if let Some(l) = &self.lines {
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            self.line(&l);
        }
    }
}

fn bar(total: Option<u64>) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A reader that counts the bytes read through it (for progress over a file).
pub struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> Counting<R> {
    /// Wraps `inner`; `count` grows by every byte read.
    pub fn new(inner: R, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A key as JSON (docs/cli-json.md, `key`).
pub fn key_json(k: &pmp_core::hsm::KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "label": k.spec.label,
        "usage": k.spec.usage.as_str(),
        "algorithm": k.spec.algorithm.to_string(),
        "bits": k.spec.len * 8,
        "mode": k.spec.mode_of_use.to_string(),
        "exportability": k.spec.exportability.to_string(),
        "kcv": k.kcv.to_string(),
    })
}
