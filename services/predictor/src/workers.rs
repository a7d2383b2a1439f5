//! Inference workers: N independent `ort` sessions, each with its own input and output
//! buffers and feature builder, that run the chunks of a tick concurrently.
//!
//! Why data parallelism and not more intra-op threads: the model is small (hidden 8) and
//! elementwise-bound, so one session with 2 intra-op threads gains far less than 2x over one
//! thread (see BENCHMARKS.md), while two single-threaded sessions on two chunks scale almost
//! linearly. Each worker also fills its own chunk's features, runs the statistical methods
//! on its chunk's windows (`methods.rs`), and scores its servers' matured forecasts and
//! chooses their published methods (`domain/scoring.rs`), so that work is parallel too.
//!
//! The chunks' outputs are handed to the caller on the calling thread in chunk order, as soon
//! as each is ready, so the caller's post-processing (the stateful domain, encoding) stays
//! sequential and deterministic while it overlaps the inference of later chunks (measured on
//! 2 cores, 1,000 servers: a few ms better than post-processing after the last chunk, within
//! the noise; kept because it costs nothing).
//!
//! Threads are scoped and started per tick (tens of microseconds against a tick of tens of
//! milliseconds or more); a session with one intra-op thread runs on the thread that calls it,
//! so nothing spins or waits between ticks.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use schemas::{Method, TARGET_COUNT};

use crate::domain::scoring::Scoring;
use crate::features::FeatureBuilder;
use crate::methods::Statistical;
use crate::model::{Manifest, Model, Outputs, Sizes};
use crate::registry::Registry;
use crate::snapshot::{drop_unobserved, forecast_from};
use crate::stats::ms;
use crate::step::step_start;

struct Worker {
    model: Model,
    features: FeatureBuilder,
    statistical: Statistical,
}

/// Where a tick's parallel part spent its time (milliseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Feature filling, the statistical methods and the model's forecasts from its outputs per
    /// worker (the mean over workers, as they run side by side).
    pub features_ms: f64,
    /// Wall time from the start until the last chunk's outputs were ready, less `features_ms`.
    pub inference_ms: f64,
}

pub struct Workers {
    workers: Vec<Worker>,
    max_chunk: usize,
    /// Output buffers handed back after their chunk was processed, reused on the next chunks.
    spare: Vec<Outputs>,
}

/// Chunk size for `n` servers: the fewest chunks of at most `max_chunk`, evenly sized.
///
/// It must not depend on the number of workers: ONNX Runtime's vectorised kernels treat the
/// tail of a tensor differently from its body, so a server's outputs can differ in the last
/// bit with the batch it ran in (measured: chunks of 7 vs 16 changed a forecast). With the
/// same chunks, which worker ran which chunk does not matter, and the snapshot is the same
/// bytes on 1 or N workers (`tests/determinism.rs`).
///
/// A fleet of at least [`MIN_CHUNK_SERVERS`] per chunk is cut into at least [`MIN_CHUNKS`]
/// chunks, so a small fleet still spreads over the workers of a few cores (100 servers with a
/// 128 cap: 4 chunks of 25, not one chunk on one worker). Like the rest, this depends on the
/// fleet size only.
pub fn chunk_size(n: usize, max_chunk: usize) -> usize {
    let chunks = n.div_ceil(max_chunk.max(1)).max((n / MIN_CHUNK_SERVERS).min(MIN_CHUNKS)).max(1);
    n.div_ceil(chunks).max(1)
}

/// See [`chunk_size`].
pub const MIN_CHUNKS: usize = 4;

/// The predictor's default most servers per chunk (`--chunk-size`). Side by side on 2 cores
/// (`bench_engine --servers 1000 --ticks 20 --chunk C`, alternated, one run): the whole engine
/// 124-130 ms p50 at 32 against 134-136 ms at 64 (forecasts alone 107-110 against 109-111 ms;
/// 16: 116 / 144 ms); the model alone is a little faster at 64, but the methods, the choice and
/// the judging of a chunk stay in cache at 32 and the judging overlaps the inference more
/// finely. `bench_tick` (inference alone) also finds 32 fastest.
pub const DEFAULT_CHUNK: usize = 32;
/// See [`chunk_size`].
pub const MIN_CHUNK_SERVERS: usize = 16;

impl Workers {
    /// Loads `workers` sessions of the model, each taking up to `max_chunk` servers per run
    /// with `threads` intra-op threads (0 = ONNX Runtime's default, one per core).
    pub fn load(model: &Path, manifest: &Path, dylib: &Path, workers: usize, max_chunk: usize, threads: usize) -> anyhow::Result<Workers> {
        let max_chunk = max_chunk.max(1);
        let workers = (0..workers.max(1))
            .map(|_| {
                let model = Model::load(model, manifest, dylib, max_chunk, threads)?;
                let m = &model.manifest;
                let features = FeatureBuilder::new(m.encoder_steps, m.horizon_steps, model.sizes());
                Ok(Worker { model, features, statistical: Statistical::default() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(workers = workers.len(), max_chunk, intra_threads = threads, "inference workers ready");
        Ok(Workers { workers, max_chunk, spare: Vec::new() })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.workers[0].model.manifest
    }

    pub fn sizes(&self) -> Sizes {
        self.workers[0].model.sizes()
    }

    /// Runs the servers `ready` (each must have a closed step) in chunks on the workers and
    /// calls `each(chunk, outputs)` on this thread for every chunk, in order; `outputs` holds
    /// the chunk's rows in the chunk's order: model outputs, per row every method's forecasts
    /// (the statistical methods', the model's from its quantiles and the ensemble, targets
    /// never observed left out) and the published forecast `scoring` chose, and the chunk's
    /// scored points (`each` may take them out). The first error (a worker's or `each`'s)
    /// stops the remaining chunks and is returned.
    pub fn run<F>(&mut self, reg: &Registry, scoring: &Scoring, ready: &[u32], mut each: F) -> anyhow::Result<Timing>
    where
        F: FnMut(&[u32], &mut Outputs) -> anyhow::Result<()>,
    {
        if ready.is_empty() {
            return Ok(Timing::default());
        }
        let start = Instant::now();
        let size = chunk_size(ready.len(), self.max_chunk);
        let chunks: Vec<&[u32]> = ready.chunks(size).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let spare = std::sync::Mutex::new(std::mem::take(&mut self.spare));
        let used = self.workers.len().min(chunks.len());
        // Bounded: each worker may finish one chunk ahead of this thread, no more. Unbounded,
        // the workers ran ahead of the judging (which is slower per server at scale) and the
        // finished chunks piled up: about 45 KB of candidate curves per server queued, 1.6 GB
        // at 100,000 servers (heaptrack on bench_engine).
        let (tx, rx) = mpsc::sync_channel::<(usize, anyhow::Result<Outputs>)>(used);
        let result = std::thread::scope(|scope| {
            // Named, so `top -H` and profilers tell them from the tokio thread that started them.
            let spawned: std::io::Result<Vec<_>> = self.workers[..used]
                .iter_mut()
                .enumerate()
                .map(|(i, w)| {
                    let (tx, chunks, next, stop, spare) = (tx.clone(), &chunks, &next, &stop, &spare);
                    std::thread::Builder::new()
                        .name(format!("inference-{i}"))
                        .spawn_scoped(scope, move || w.work(reg, scoring, chunks, next, stop, spare, tx))
                })
                .collect();
            drop(tx);
            let (handles, delivered) = match spawned {
                Ok(handles) => {
                    let delivered = deliver(start, &rx, &chunks, &stop, &spare, &mut each);
                    // A worker blocked on the full channel after a failure gets an error from
                    // `send` and stops, instead of waiting forever for the join below.
                    drop(rx);
                    (handles, delivered)
                }
                Err(e) => {
                    // Threads already started stop at their next chunk; the scope joins them.
                    stop.store(true, Ordering::Relaxed);
                    return Err(anyhow!("starting the inference workers: {e}"));
                }
            };
            // When delivery ends every chunk was taken (or `stop` is set), so a join waits at
            // most for a chunk in progress. A worker that panicked already failed the delivery
            // (its chunk never arrived).
            let filled: Duration = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        tracing::error!("an inference worker panicked");
                        Duration::ZERO
                    })
                })
                .sum();
            delivered.map(|done| (done, filled))
        });
        self.spare = spare.into_inner().unwrap_or_default();
        let (done, filled) = result?;
        let features_ms = ms(filled) / used as f64;
        Ok(Timing { features_ms, inference_ms: (ms(done) - features_ms).max(0.0) })
    }
}

/// Receives the chunks' outputs and passes them to `each` in chunk order; returns the time
/// from `start` until the last chunk's outputs arrived (the inference's wall time, whatever
/// post-processing still follows).
fn deliver<F>(
    start: Instant,
    rx: &mpsc::Receiver<(usize, anyhow::Result<Outputs>)>,
    chunks: &[&[u32]],
    stop: &AtomicBool,
    spare: &std::sync::Mutex<Vec<Outputs>>,
    each: &mut F,
) -> anyhow::Result<Duration>
where
    F: FnMut(&[u32], &mut Outputs) -> anyhow::Result<()>,
{
    let mut pending: Vec<Option<Outputs>> = (0..chunks.len()).map(|_| None).collect();
    let (mut next, mut arrived, mut last) = (0, 0, Duration::ZERO);
    let fail = |e: anyhow::Error| {
        stop.store(true, Ordering::Relaxed);
        Err(e)
    };
    while next < chunks.len() {
        let Ok((k, out)) = rx.recv() else {
            return fail(anyhow!("an inference worker stopped before chunk {next} of {}", chunks.len()));
        };
        match out {
            Ok(out) => pending[k] = Some(out),
            Err(e) => return fail(e.context(format!("inference of chunk {k}"))),
        }
        arrived += 1;
        if arrived == chunks.len() {
            last = start.elapsed();
        }
        while let Some(mut out) = pending.get_mut(next).and_then(Option::take) {
            if let Err(e) = each(chunks[next], &mut out) {
                return fail(e);
            }
            if let Ok(mut spare) = spare.lock() {
                spare.push(out);
            }
            next += 1;
        }
    }
    Ok(last)
}

impl Worker {
    /// Takes chunks until none are left (or `stop`), filling and running each; returns the
    /// time spent filling features.
    #[allow(clippy::too_many_arguments)]
    fn work(
        &mut self,
        reg: &Registry,
        scoring: &Scoring,
        chunks: &[&[u32]],
        next: &AtomicUsize,
        stop: &AtomicBool,
        spare: &std::sync::Mutex<Vec<Outputs>>,
        tx: mpsc::SyncSender<(usize, anyhow::Result<Outputs>)>,
    ) -> Duration {
        let mut filled = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(k) else { break };
            let clock = Instant::now();
            for (row, id) in chunk.iter().enumerate() {
                self.features.fill(&mut self.model.inputs, row, reg.server(*id));
            }
            filled += clock.elapsed();
            let mut out = spare.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default();
            let clock = Instant::now();
            let h = self.model.manifest.horizon_steps;
            out.statistical.resize_with(chunk.len(), Default::default);
            for (c, id) in out.statistical.iter_mut().zip(chunk.iter()) {
                self.statistical.recycle(c);
                self.statistical.fill(reg.server(*id), *id, reg.bands(*id), h, c);
                self.statistical.stock(c);
            }
            filled += clock.elapsed();
            let result = self.model.run(chunk.len(), &mut out);
            let clock = Instant::now();
            if result.is_ok() {
                model_forecasts(reg, chunk, h, self.model.sizes().quantiles, &mut out);
                choose(reg, scoring, chunk, &mut out);
            }
            filled += clock.elapsed();
            let result = result.map(|()| out);
            // The receiver is gone only when the tick already failed; nothing to report then.
            if tx.send((k, result)).is_err() {
                break;
            }
        }
        filled
    }
}

/// Each row's model forecast from its quantiles, into its candidates (in buffers they were
/// stocked with): here, in parallel, rather than on the thread that judges the servers one by
/// one.
fn model_forecasts(reg: &Registry, chunk: &[u32], h: usize, per_row: usize, out: &mut Outputs) {
    for (row, (c, id)) in out.statistical.iter_mut().zip(chunk).enumerate() {
        c.lend(Method::Model, TARGET_COUNT);
        let model = c.of_mut(Method::Model);
        forecast_from(&out.quantiles[row * per_row..(row + 1) * per_row], h, model);
        drop_unobserved(model, reg.server(*id).observed_mask());
    }
}

/// Each row's published forecast and its scored points (`domain/scoring.rs`).
fn choose(reg: &Registry, scoring: &Scoring, chunk: &[u32], out: &mut Outputs) {
    out.sums.clear();
    out.published.resize_with(chunk.len(), Vec::new);
    out.current.clear();
    for ((c, published), id) in out.statistical.iter_mut().zip(&mut out.published).zip(chunk) {
        let w = reg.server(*id);
        let current = w.latest().map(|v| v.to_metrics()).unwrap_or_default();
        match w.last_closed() {
            Some(last) => scoring.choose(*id, step_start(last), &current, c, published, &mut out.sums),
            None => published.clear(),
        }
        out.current.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn chunks_are_even_and_capped() {
        assert_eq!(chunk_size(1000, 64), 63, "16 chunks of at most 63");
        assert_eq!(chunk_size(100, 64), 25, "at least 4 chunks once each keeps 16 servers");
        assert_eq!(chunk_size(100, 128), 25);
        assert_eq!(chunk_size(64, 64), 16);
        assert_eq!(chunk_size(40, 64), 20, "40 servers: 2 chunks of 20");
        assert_eq!(chunk_size(15, 64), 15, "too few to split");
        assert_eq!(chunk_size(65, 64), 17);
        assert_eq!(chunk_size(1, 64), 1);
        assert_eq!(chunk_size(0, 64), 1);
        assert_eq!(chunk_size(10_000, 256), 250);
        for (n, m) in [(1, 1), (7, 2), (999, 128), (10_000, 64)] {
            let size = chunk_size(n, m);
            assert!((1..=m).contains(&size), "{n}, max {m}: {size}");
            assert_eq!(n.div_ceil(size), n.div_ceil(m), "{n}, max {m}: no more chunks than needed");
        }
    }
}
