//! The threads of an import: `workers` threads (the calling thread and `workers - 1`
//! spawned ones), each running the whole loop. Under the input lock a worker reads the
//! next batch of records (decrypting the file, when it is encrypted, and parsing it) and
//! takes the batch's number; it transforms the batch ([`transform`](super::transform))
//! without a lock; it waits for the batch's turn (a condition variable on the number of the
//! next batch to write) and, under the output lock, writes it — records to the XOF (the MAC
//! chain), rejects to the report; then it reads the next. The calling thread reconciles the
//! counts at the end.
//!
//! Memory is bounded: a worker holds one batch at a time, and one that has transformed its
//! batch waits for its turn before reading another, so at most `workers` batches are read
//! but not written. The first failure (or panic) stops every worker, including those
//! waiting for a turn.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::plan::{Plan, key_ref};
use super::transform::{BatchOut, BatchScratch, Outcome};
use super::{Failure, Options, Progress, Summary, clock};
use crate::hsm::CipherSpec;
use crate::order::issuer::{self, RawRecord};
use crate::order::product::{IvSource, Product};
use crate::xof::write::Prepared;
use crate::xof::{self, Header};
use crate::{Error, Result};

/// The issuer's input as the parser reads it: counts the bytes, and keeps the input's own
/// read error aside so that the import reports it as the input's (whatever the decrypting
/// reader or the parser made of it on the way up).
struct Input<'a, R> {
    inner: R,
    bytes: &'a AtomicU64,
    failure: &'a Mutex<Option<io::Error>>,
}

impl<R: Read> Read for Input<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Err(io::Error::new(kind, "the issuer file could not be read"))
            }
        }
    }
}

/// Runs the import of `input` along `plan`, writing the XOF to `xof_out` and the reject
/// report to `rejects_out`. On error the writers hold partial output, for the caller to
/// discard.
pub(super) fn run<R, W, J>(
    plan: &Plan<'_>,
    product: &Product,
    input: R,
    xof_out: W,
    mut rejects_out: J,
    opts: &Options<'_>,
) -> core::result::Result<(Summary, W, J), Failure>
where
    R: Read + Send,
    W: Write + Send,
    J: Write + Send,
{
    let t0 = Instant::now();
    let now = clock::now();
    let order_id = match &opts.order_id {
        Some(id) => id.clone(),
        None => {
            // A random suffix: two imports of one product within the same second still get
            // different order ids.
            let mut r = [0u8; 3];
            crate::fill_random(&mut r)?;
            format!("{}-{}-{}", product.name, now.basic, hex::encode_upper(r))
        }
    };
    let header = Header {
        order_id: order_id.clone(),
        issuer: product.issuer.clone(),
        product: product.name.clone(),
        created: now.extended,
        keys: plan.keys.iter().map(key_ref).collect(),
        mac_key: plan.mac.spec.label.clone(),
        test: plan.hsm.capabilities().is_test(),
    };
    let workers = if opts.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.workers
    };
    let batch = opts.batch.max(1);
    let bytes = AtomicU64::new(0);

    let mut xof = xof::Writer::new(xof_out, &header, plan.hsm, &plan.mac.handle)?;
    let io = |e| Error::io("reject report", e);
    writeln!(
        rejects_out,
        "# pmp import reject report: order={order_id} product={} issuer={}",
        product.name, product.issuer
    )
    .map_err(io)?;
    writeln!(
        rejects_out,
        "# one line per rejected record: record=N id=ISSUER_ID field=NAME reason=CODE (values are never written)"
    )
    .map_err(io)?;

    let mut summary = Summary {
        order_id,
        workers,
        keys: plan.keys.clone(),
        transport_key: plan.transport.clone(),
        attributes: plan
            .attribute_names
            .iter()
            .map(|a| (a.clone(), 0))
            .collect(),
        host_fallbacks: plan.host_fallbacks.clone(),
        ..Summary::default()
    };

    let (declared, absent) = {
        let failure = Mutex::new(None);
        let input = Input {
            inner: input,
            bytes: &bytes,
            failure: &failure,
        };
        let src = match open_source(plan, product, input) {
            Ok(src) => src,
            Err(e) => return Err(input_failure(e, &failure)),
        };
        let shared = Shared {
            reading: Mutex::new(Reading {
                src,
                next: 0,
                end: None,
            }),
            failure: &failure,
            writing: Mutex::new(Writing {
                next: 0,
                xof: &mut xof,
                rejects: &mut rejects_out,
                summary: &mut summary,
            }),
            turn: Condvar::new(),
            failed: AtomicBool::new(false),
            read_error: Mutex::new(None),
            error: Mutex::new(None),
            batch,
            progress: opts.progress,
            bytes: &bytes,
        };
        std::thread::scope(|s| {
            let shared = &shared;
            let header = &header;
            // Named threads (`top -H`, `perf report --sort comm` show the workers); the
            // calling thread is the first worker.
            for i in 1..workers {
                let spawned = std::thread::Builder::new()
                    .name(format!("pmp-import-w{i}"))
                    .spawn_scoped(s, move || shared.work(plan, header));
                if let Err(e) = spawned {
                    shared.fail(Error::io("import worker thread", e).into());
                    break;
                }
            }
            shared.work(plan, header);
        });
        let Shared {
            reading,
            read_error,
            error,
            ..
        } = shared;
        // A read error explains a short write; report it first.
        let read_error = read_error.into_inner().unwrap_or_else(|p| p.into_inner());
        let error = error.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = read_error.or(error) {
            return Err(e);
        }
        let reading = reading.into_inner().unwrap_or_else(|p| p.into_inner());
        reading.end.ok_or_else(|| Error::Integrity {
            what: "import".into(),
            reason: "the issuer file was not read to its end".into(),
        })?
    };
    summary.declared = declared;
    summary.bytes = bytes.load(Ordering::Relaxed);
    if summary.read != summary.written + summary.rejected {
        return Err(Error::Integrity {
            what: "import".into(),
            reason: format!(
                "{} records read but {} written and {} rejected",
                summary.read, summary.written, summary.rejected
            ),
        }
        .into());
    }
    if let Some(d) = declared
        && d != summary.read
    {
        return Err(Error::Integrity {
            what: "issuer file".into(),
            reason: format!(
                "the issuer declares {d} records but the file holds {} (records lost or added in transit)",
                summary.read
            ),
        }
        .into());
    }
    for i in absent {
        let f = &product.fields[i];
        summary.warnings.push(format!(
            "field {} (column {}) is in none of the file's {} records{}",
            f.name,
            f.column,
            summary.read,
            f.attribute.as_ref().map_or(String::new(), |a| format!(
                ": no record carries attribute {a}"
            ))
        ));
    }
    let (xof_out, n) = xof.finish()?;
    debug_assert_eq!(n, summary.written);
    writeln!(
        rejects_out,
        "# totals: read={} written={} rejected={}{}",
        summary.read,
        summary.written,
        summary.rejected,
        declared.map_or(String::new(), |d| format!(" declared={d}"))
    )
    .map_err(io)?;
    rejects_out.flush().map_err(io)?;
    summary.elapsed = t0.elapsed();
    Ok((summary, xof_out, rejects_out))
}

/// What reading found beside the records: the issuer's declared count, if the layout has
/// one, and the optional fields the file never had.
type ReadResult = (Option<u64>, Vec<usize>);

/// The input side, under its lock: the record source and the next batch's number.
struct Reading<'a> {
    src: Box<dyn issuer::RecordSource + 'a>,
    /// The number of the next batch read (batches are written in this order).
    next: u64,
    /// Set when the source returned its last record.
    end: Option<ReadResult>,
}

/// The output side, under its lock: the number of the batch whose turn it is to be
/// written, the XOF, the reject report and the counts.
struct Writing<'o, 'h, W: Write, J> {
    next: u64,
    xof: &'o mut xof::Writer<'h, W>,
    rejects: &'o mut J,
    summary: &'o mut Summary,
}

/// What the workers share.
struct Shared<'a, 'o, 'h, W: Write, J> {
    reading: Mutex<Reading<'a>>,
    /// The input's own read error, kept aside by [`Input`].
    failure: &'a Mutex<Option<io::Error>>,
    writing: Mutex<Writing<'o, 'h, W, J>>,
    /// Signalled when a batch is written (the next batch's turn) or the import failed.
    turn: Condvar,
    /// Set by the first failure: every worker stops at its next step.
    failed: AtomicBool,
    /// The first failure while reading the input (the input's own, the decryption's, the
    /// parser's).
    read_error: Mutex<Option<Failure>>,
    /// The first other failure.
    error: Mutex<Option<Failure>>,
    batch: usize,
    progress: Option<&'a (dyn Fn(Progress) + Sync)>,
    bytes: &'a AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens the clear record source over the input: the IV (when it prefixes the file), the
/// HSM's decrypting reader (whole-file encryption), the layout's parser.
fn open_source<'a, R: Read + Send + 'a>(
    plan: &'a Plan<'_>,
    product: &Product,
    mut input: Input<'a, R>,
) -> Result<Box<dyn issuer::RecordSource + 'a>> {
    let origin = match product.layout.file_encryption {
        Some(_) => issuer::Origin::Decrypted,
        None => issuer::Origin::File,
    };
    let clear: Box<dyn Read + Send + 'a> = match &product.layout.file_encryption {
        None => Box::new(input),
        Some(fe) => {
            let tk = plan.tk.as_ref().ok_or_else(|| {
                Error::invalid("product", "file encryption needs a transport key")
            })?;
            let bs = fe.algorithm.block_size();
            let iv = match &fe.iv {
                IvSource::Fixed(iv) => iv.clone(),
                IvSource::Prefix => {
                    let mut iv = vec![0u8; bs];
                    input.read_exact(&mut iv).map_err(|_| {
                        Error::invalid("encrypted file", "shorter than its IV block (truncated?)")
                    })?;
                    iv
                }
            };
            let spec = CipherSpec::cbc(tk, &iv, fe.padding);
            plan.hsm.decrypting_reader(&spec, Box::new(input))?
        }
    };
    issuer::open_from(product, clear, origin).map_err(explain_file_error)
}

/// A failure while reading: [`Failure::Input`] when the input itself failed to read,
/// however it surfaced.
fn input_failure(e: Error, failure: &Mutex<Option<io::Error>>) -> Failure {
    match lock(failure).take() {
        Some(io) => Failure::Input(io),
        None => Failure::Other(e),
    }
}

/// Makes a whole-file decryption failure say what it means.
fn explain_file_error(e: Error) -> Error {
    match e {
        Error::Crypto => Error::Integrity {
            what: "issuer file".into(),
            reason: "whole-file decryption under the transport key failed at the final padding: wrong key, altered or truncated file".into(),
        },
        e => e,
    }
}

impl<W: Write + Send, J: Write + Send> Shared<'_, '_, '_, W, J> {
    /// Records the first failure (outside reading) and stops every worker.
    fn fail(&self, f: Failure) {
        lock(&self.error).get_or_insert(f);
        self.stop();
    }

    /// Stops every worker: each stops at its next step, those waiting for a turn wake.
    fn stop(&self) {
        self.failed.store(true, Ordering::SeqCst);
        // Under the output lock: a worker between its check and its wait cannot miss it.
        drop(lock(&self.writing));
        self.turn.notify_all();
    }

    fn stopped(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// A worker: the whole import loop, until the input ends or the import fails. A panic
    /// (a bug, or a backend's) becomes an error for the whole import, which then leaves no
    /// output; it must not re-panic out of the thread scope, nor leave a worker waiting for
    /// a turn that never comes.
    fn work(&self, plan: &Plan<'_>, header: &Header) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.work_loop(plan, header)
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(f)) => self.fail(f),
            Err(_) => self.fail(
                Error::Integrity {
                    what: "import".into(),
                    reason: "a worker thread panicked while importing a batch of records".into(),
                }
                .into(),
            ),
        }
    }

    fn work_loop(&self, plan: &Plan<'_>, header: &Header) -> core::result::Result<(), Failure> {
        let mut scratch = BatchScratch::default();
        let mut records: Vec<RawRecord> = Vec::with_capacity(self.batch);
        // This worker's buffers for its batch's XOF records, back after each write.
        let mut prepared = Prepared::default();
        loop {
            records.clear();
            let Some(idx) = self.read_batch(&mut records) else {
                return Ok(());
            };
            let out = plan.process_batch(header, &records, &mut scratch, prepared)?;
            records.clear();
            prepared = match self.write_batch(idx, out)? {
                Some(p) => p,
                None => return Ok(()),
            };
        }
    }

    /// Under the input lock: reads (and decrypts) the next batch of records and takes its
    /// number; `None` when the input has ended or the import has failed (a read failure is
    /// recorded here).
    fn read_batch(&self, records: &mut Vec<RawRecord>) -> Option<u64> {
        // A worker that panicked while reading left the source in an unknown state; it
        // reports the panic, the others only stop.
        let Ok(mut r) = self.reading.lock() else {
            return None;
        };
        if self.stopped() || r.end.is_some() {
            return None;
        }
        while records.len() < self.batch {
            match r.src.next_record() {
                Ok(Some(rec)) => records.push(rec),
                Ok(None) => {
                    r.end = Some((r.src.declared_count(), r.src.absent_fields()));
                    break;
                }
                Err(e) => {
                    // Recorded and the workers stopped before the input lock is released: no
                    // other worker asks the failed source for more (which would only find a
                    // later, misleading error). A read failure explains any other; it is
                    // reported first.
                    let f = input_failure(explain_file_error(e), self.failure);
                    lock(&self.read_error).get_or_insert(f);
                    self.stop();
                    return None;
                }
            }
        }
        if records.is_empty() {
            return None;
        }
        let idx = r.next;
        r.next += 1;
        Some(idx)
    }

    /// Waits for batch `idx`'s turn, then under the output lock writes it in file order:
    /// records to the XOF (the MAC chain), rejects to the report. Returns the batch's
    /// buffers for the next one, or `None` when the import failed meanwhile.
    fn write_batch(
        &self,
        idx: u64,
        batch: BatchOut,
    ) -> core::result::Result<Option<Prepared>, Failure> {
        let guard = lock(&self.writing);
        let mut w = self
            .turn
            .wait_while(guard, |w| w.next != idx && !self.stopped())
            .unwrap_or_else(|p| p.into_inner());
        if self.stopped() {
            return Ok(None);
        }
        let w = &mut *w;
        for o in &batch.outcomes {
            w.summary.read += 1;
            match o {
                Outcome::Written(i) => {
                    w.summary.written += 1;
                    w.xof.write_prepared(&batch.records, *i)?;
                }
                Outcome::Rejected(j) => {
                    w.summary.rejected += 1;
                    *w.summary.reasons.entry(j.reason).or_default() += 1;
                    writeln!(w.rejects, "{}", j.line())
                        .map_err(|e| Error::io("reject report", e))?;
                }
            }
        }
        // Attributes come in field order, as `summary.attributes` lists them.
        for ((_, n), m) in w.summary.attributes.iter_mut().zip(&batch.attributes) {
            *n += m;
        }
        w.next += 1;
        self.turn.notify_all();
        if let Some(f) = self.progress {
            f(Progress {
                bytes: self.bytes.load(Ordering::Relaxed),
                records: w.summary.read,
            });
        }
        Ok(Some(batch.records))
    }
}
