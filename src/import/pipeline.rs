//! The threads of an import: one reader thread decrypts (whole-file encryption) and parses
//! the issuer file into batches of records, worker threads transform the batches
//! ([`transform`](super::transform)), and the calling thread writes the results in file
//! order — records to the XOF, rejects to the report — and reconciles the counts.
//!
//! Memory is bounded: permits limit the batches read but not yet written, so a slow batch
//! cannot make the reader run ahead of the writer.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
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

/// A batch of records read: its index in the file, the records, and the buffers to
/// prepare its XOF records in (a written batch's, handed back with its permit).
type Batch = (u64, Vec<RawRecord>, Prepared);
/// A batch transformed: its index and what became of each record.
type Done = (u64, Result<BatchOut>);

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
    W: Write,
    J: Write,
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

    let (declared, absent) = std::thread::scope(|s| {
        let in_flight = workers * 2;
        let (job_tx, job_rx) = sync_channel::<Batch>(in_flight);
        let (done_tx, done_rx) = sync_channel::<Done>(in_flight);
        // Permits bound the batches read but not yet written: a slow batch cannot make the
        // writer's `pending` grow while the reader runs ahead.
        // A permit carries a written batch's buffers back for the next batch: no fresh
        // pages for every batch.
        let (permit_tx, permit_rx) = sync_channel::<Prepared>(in_flight);
        for _ in 0..in_flight {
            let _ = permit_tx.send(Prepared::default());
        }
        let bytes = &bytes;
        // Named threads (`top -H`, `perf report --sort comm` show the import's parts).
        let reader = std::thread::Builder::new()
            .name("pmp-import-read".into())
            .spawn_scoped(s, move || {
                read_batches(plan, product, input, bytes, batch, job_tx, permit_rx)
            })
            .map_err(|e| Error::io("import reader thread", e))?;
        // When every worker has stopped, the job channel closes and the reader stops too.
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..workers {
            let rx = job_rx.clone();
            let tx = done_tx.clone();
            let header = &header;
            std::thread::Builder::new()
                .name(format!("pmp-import-w{i}"))
                .spawn_scoped(s, move || work(plan, header, &rx, &tx))
                .map_err(|e| Error::io("import worker thread", e))?;
        }
        drop(job_rx);
        drop(done_tx);
        let w = write_in_order(
            &done_rx,
            permit_tx,
            &mut xof,
            &mut rejects_out,
            &mut summary,
            opts.progress,
            bytes,
        );
        drop(done_rx);
        let r = reader.join().unwrap_or_else(|_| {
            Err(Error::invalid("issuer file", "the reader thread panicked").into())
        });
        // A reader error explains a short write; report it first.
        let read = r?;
        w?;
        Ok::<_, Failure>(read)
    })?;
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

/// What the reader thread found beside the records: the issuer's declared count, if the
/// layout has one, and the optional fields the file never had.
type ReadResult = (Option<u64>, Vec<usize>);

/// The reader thread: decrypt (if the file is encrypted), parse, batch. A failure to read
/// the input itself is [`Failure::Input`], however it surfaced.
fn read_batches<R: Read + Send>(
    plan: &Plan<'_>,
    product: &Product,
    input: R,
    bytes: &AtomicU64,
    batch: usize,
    tx: SyncSender<Batch>,
    permits: Receiver<Prepared>,
) -> core::result::Result<ReadResult, Failure> {
    let failure = Mutex::new(None);
    let input = Input {
        inner: input,
        bytes,
        failure: &failure,
    };
    let r = parse_into_batches(plan, product, input, batch, tx, permits);
    match (r, failure.into_inner().unwrap_or_else(|p| p.into_inner())) {
        (Ok(declared), _) => Ok(declared),
        (Err(_), Some(e)) => Err(Failure::Input(e)),
        (Err(e), None) => Err(Failure::Other(e)),
    }
}

fn parse_into_batches<R: Read + Send>(
    plan: &Plan<'_>,
    product: &Product,
    mut input: Input<'_, R>,
    batch: usize,
    tx: SyncSender<Batch>,
    permits: Receiver<Prepared>,
) -> Result<ReadResult> {
    let origin = match product.layout.file_encryption {
        Some(_) => issuer::Origin::Decrypted,
        None => issuer::Origin::File,
    };
    let clear: Box<dyn Read + Send + '_> = match &product.layout.file_encryption {
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
    let mut src = issuer::open_from(product, clear, origin).map_err(explain_file_error)?;
    let mut idx = 0u64;
    let mut cur = Vec::with_capacity(batch);
    while let Some(rec) = src.next_record().map_err(explain_file_error)? {
        cur.push(rec);
        if cur.len() == batch {
            let Ok(prepared) = permits.recv() else {
                return Ok((None, Vec::new())); // the writer stopped; its error is reported
            };
            if tx.send((idx, core::mem::take(&mut cur), prepared)).is_err() {
                return Ok((None, Vec::new())); // the writer stopped; its error is reported
            }
            idx += 1;
            cur.reserve(batch);
        }
    }
    if !cur.is_empty()
        && let Ok(prepared) = permits.recv()
    {
        let _ = tx.send((idx, core::mem::take(&mut cur), prepared));
    }
    Ok((src.declared_count(), src.absent_fields()))
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

/// A worker thread: transforms batches until the reader is done or a batch fails.
fn work(plan: &Plan<'_>, header: &Header, rx: &Mutex<Receiver<Batch>>, tx: &SyncSender<Done>) {
    let mut scratch = BatchScratch::default();
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok((idx, records, prepared)) = job else {
            return;
        };
        // A panic (a bug, or a backend's) becomes an error for the whole import, which then
        // leaves no output; it must not re-panic out of the thread scope.
        let out: Result<BatchOut> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan.process_batch(header, &records, &mut scratch, prepared)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Integrity {
                what: "import".into(),
                reason: "a worker thread panicked while translating a batch of records".into(),
            })
        });
        drop(records);
        let failed = out.is_err();
        if tx.send((idx, out)).is_err() || failed {
            return;
        }
    }
}

/// The calling thread: writes the transformed batches in file order.
fn write_in_order<W: Write, J: Write>(
    rx: &Receiver<Done>,
    permits: SyncSender<Prepared>,
    xof: &mut xof::Writer<'_, W>,
    rejects: &mut J,
    summary: &mut Summary,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    bytes: &AtomicU64,
) -> Result<()> {
    let mut pending: BTreeMap<u64, BatchOut> = BTreeMap::new();
    let mut next = 0u64;
    for (idx, out) in rx {
        pending.insert(idx, out?);
        while let Some(batch) = pending.remove(&next) {
            next += 1;
            for o in &batch.outcomes {
                summary.read += 1;
                match o {
                    Outcome::Written(i) => {
                        summary.written += 1;
                        xof.write_prepared(&batch.records, *i)?;
                    }
                    Outcome::Rejected(j) => {
                        summary.rejected += 1;
                        *summary.reasons.entry(j.reason).or_default() += 1;
                        writeln!(rejects, "{}", j.line())
                            .map_err(|e| Error::io("reject report", e))?;
                    }
                }
            }
            // Attributes come in field order, as `summary.attributes` lists them.
            for ((_, n), m) in summary.attributes.iter_mut().zip(&batch.attributes) {
                *n += m;
            }
            // The batch is written: the reader may read one more.
            let _ = permits.try_send(batch.records);
            if let Some(f) = progress {
                f(Progress {
                    bytes: bytes.load(Ordering::Relaxed),
                    records: summary.read,
                });
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::Integrity {
            what: "import".into(),
            reason: "a batch of records was not processed".into(),
        });
    }
    Ok(())
}
