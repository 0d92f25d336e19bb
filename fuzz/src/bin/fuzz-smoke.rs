//! The stable-toolchain fuzz runner: for each target, every input of its seed corpus
//! (`fuzz/corpus/TARGET/`), then random mutations of those inputs (bit flips, byte
//! changes, insertions, deletions, duplications, splices, structural tokens) for a fixed
//! time. It is not coverage-guided (libFuzzer through `cargo fuzz` is, on nightly); it
//! finds panics, unbounded loops (an input over `--max-ms`) and crashes on this toolchain.
//!
//! A failing input is written to `fuzz/artifacts/TARGET/` and the runner exits with 1.
//!
//! Usage: `fuzz-smoke [--seconds N] [--seed S] [--max-ms M] [--write-seeds] [TARGET...]`

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Tokens the mutator inserts: XML, CSV and key-block structure.
const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"/>",
    b"\"",
    b"'",
    b"&",
    b"&amp;",
    b"<!DOCTYPE x>",
    b"<![CDATA[",
    b"=",
    b",",
    b";",
    b"|",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"\0",
    b"0",
    b"9",
    b"F",
    b"A",
    b"D0",
    b"B",
    b"00",
    b"9999999999",
    b"-1",
    b"\xff",
    b"\xc3\xa9",
];

/// xorshift64*: deterministic for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(512));
                    let at = rng.below(len + 1);
                    input.truncate(at.max(rng.below(len + 1)));
                    input.extend_from_slice(&other[from..from + n]);
                }
            }
            6 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, t.iter().copied());
            }
            _ if len > 1 => {
                input.truncate(rng.below(len));
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(1 << 20);
}

struct Config {
    seconds: f64,
    seed: u64,
    max_ms: u128,
    write_seeds: bool,
    targets: Vec<String>,
}

fn parse_args() -> Result<Config, String> {
    let mut c = Config {
        seconds: 5.0,
        seed: 0x005E_ED0F_F022,
        max_ms: 2000,
        write_seeds: false,
        targets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                c.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds: a number")?
            }
            "--seed" => c.seed = value("--seed")?.parse().map_err(|_| "--seed: a number")?,
            "--max-ms" => {
                c.max_ms = value("--max-ms")?
                    .parse()
                    .map_err(|_| "--max-ms: a number")?
            }
            "--write-seeds" => c.write_seeds = true,
            t if pmp_fuzz::TARGETS.contains(&t) => c.targets.push(t.to_owned()),
            other => return Err(format!("unknown argument or target: {other}")),
        }
    }
    if c.targets.is_empty() {
        c.targets = pmp_fuzz::TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(c)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Runs one input; `Err` with a description on a panic or an input over the time limit.
fn run_one(target: &str, input: &[u8], max_ms: u128) -> Result<(), String> {
    let start = Instant::now();
    let r = panic::catch_unwind(AssertUnwindSafe(|| pmp_fuzz::run(target, input)));
    let ms = start.elapsed().as_millis();
    match r {
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string payload)")
        )),
        Ok(()) if ms > max_ms => Err(format!("slow input: {ms} ms")),
        Ok(()) => Ok(()),
    }
}

fn save_artifact(target: &str, input: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("artifacts").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let p = dir.join(format!("crash-{h:016x}"));
    let _ = std::fs::write(&p, input);
    p
}

fn write_seeds() -> std::io::Result<()> {
    for (target, name, bytes) in pmp_fuzz::generated_seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let c = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fuzz-smoke: {e}");
            return ExitCode::from(2);
        }
    };
    if c.write_seeds
        && let Err(e) = write_seeds()
    {
        eprintln!("fuzz-smoke: writing seeds: {e}");
        return ExitCode::from(1);
    }
    // Panics are expected to be caught and reported here, not printed by the hook.
    panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for (t, target) in c.targets.iter().enumerate() {
        let corpus = load_corpus(target);
        if corpus.is_empty() {
            eprintln!(
                "{target}: no seed corpus in {}",
                Path::new("fuzz/corpus").join(target).display()
            );
            failed = true;
            continue;
        }
        let mut rng = Rng(c.seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut execs = 0u64;
        let mut failure = None;
        for input in &corpus {
            execs += 1;
            if let Err(e) = run_one(target, input, c.max_ms) {
                failure = Some((e, input.clone()));
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs_f64(c.seconds);
        while failure.is_none() && Instant::now() < deadline {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut input, &corpus);
            execs += 1;
            if let Err(e) = run_one(target, &input, c.max_ms) {
                failure = Some((e, input));
            }
        }
        match failure {
            None => println!(
                "{target}: {execs} executions, {} seeds, no failure",
                corpus.len()
            ),
            Some((e, input)) => {
                let p = save_artifact(target, &input);
                println!(
                    "{target}: FAILED after {execs} executions: {e}; input saved to {}",
                    p.display()
                );
                failed = true;
            }
        }
    }
    pmp_fuzz::cleanup();
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
