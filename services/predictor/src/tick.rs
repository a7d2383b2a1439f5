//! One tick, the CPU part: for every server whose step just closed, the inference workers
//! build its model inputs, run the model and the statistical methods and choose its published
//! forecast in chunks, concurrently (`workers.rs`); this thread assesses each server (the
//! domain seam, in order: the alert book is one) and encodes its
//! `ServerForecast` (for KV `forecasts`) and its `ServerSummary` (for the snapshot) once, chunk
//! by chunk in order, then plans the snapshot parts from every server's cached summary bytes
//! and writes the tick summary. Publishing is `publish.rs`'s job.

use std::time::Instant;

use bytes::Bytes;
use schemas::history::TickSummary;
use schemas::{
    AlertEvent, AlertState, ModelInfo, ProfileThresholds, ServerForecast, ServerSummary, SnapshotHeader, Warmup, SCHEMA_VERSION,
};

use crate::domain::fleet::ServerStatus;
use crate::domain::records;
use crate::domain::risk::Assessment;
use crate::domain::scoring::{Scoring, StepSums};
use crate::domain::{Domain, Observed, Published};
use crate::model::Manifest;
use crate::registry::Registry;
use crate::select::Candidates;
use crate::snapshot::{entry, explanation_from, PartPlan};
use crate::stats::{ms, Stages};
use crate::step::step_start;
use crate::window::ServerWindow;
use crate::workers::Workers;

/// A server's latest output, kept until its next step closes.
pub struct ServerOut {
    /// Its `ServerSummary`, MessagePack (copied into every snapshot until its next step; the
    /// `ServerForecast` went to KV and is not kept).
    pub encoded: Bytes,
    pub assessment: Assessment,
    pub warming: bool,
    /// Its forecast and open alerts as `/metrics` exposes them (`prom_series.rs`); empty unless
    /// [`Engine::keep_gauges`] is on.
    pub gauges: crate::prom_series::ServerGauges,
}

/// What a tick produced, ready to publish.
pub struct TickOutput {
    pub seq: u64,
    pub tick_ms: i64,
    /// The snapshot's header; its servers are every kept output in `order` (by name), split
    /// as `plan` says. [`Engine::part`] writes each part when it is published.
    pub header: SnapshotHeader,
    pub order: Vec<u32>,
    pub plan: PartPlan,
    /// `(server, ServerForecast msgpack)` of the servers updated on this tick, for KV
    /// `forecasts`; empty when they were streamed ([`Engine::compute_streaming`]).
    pub forecasts: Vec<(String, Bytes)>,
    pub summary: TickSummary,
    pub events: Vec<AlertEvent>,
    /// Servers forecast (ready) and warming on this tick.
    pub forecast_count: usize,
    pub warming_count: usize,
    pub stages: Stages,
    /// The domain state to persist (alert book, accuracy sums).
    pub state: Option<Bytes>,
    /// This tick's slice of the servers' method records to persist, `(slice, Slice msgpack)`
    /// (`domain/records.rs`).
    pub records: Option<(u64, Bytes)>,
}

/// Inference workers several engines share: a partitioned predictor runs one engine per
/// partition it owns, and their ticks take turns on the same sessions.
pub type SharedWorkers = std::sync::Arc<std::sync::Mutex<Workers>>;

pub struct Engine {
    workers: SharedWorkers,
    manifest: Manifest,
    info: ModelInfo,
    /// Every profile's thresholds, stamped on every snapshot.
    thresholds: Vec<ProfileThresholds>,
    /// Set on a partitioned predictor's engine: stamped on every snapshot.
    partition: Option<schemas::partition::PartitionInfo>,
    recent_steps: usize,
    outs: Vec<Option<ServerOut>>,
    domain: Domain,
    /// Every server's pending forecasts and method records, which the workers score and choose by.
    scoring: Scoring,
    seq: u64,
    enc: Vec<u8>,
    /// Whether each server's `/metrics` gauges are kept ([`Engine::keep_gauges`]).
    gauges: bool,
}

impl Engine {
    /// An engine whose first snapshot is number 1 ([`Engine::continue_after`] moves that on).
    pub fn new(workers: Workers, recent_steps: usize) -> Engine {
        Engine::shared(std::sync::Arc::new(std::sync::Mutex::new(workers)), recent_steps)
    }

    /// [`Engine::new`] on workers other engines use too.
    pub fn shared(workers: SharedWorkers, recent_steps: usize) -> Engine {
        let manifest = workers.lock().unwrap_or_else(|p| p.into_inner()).manifest().clone();
        let info = manifest.model_info();
        Engine {
            workers,
            manifest,
            info,
            thresholds: Domain::profile_thresholds(),
            partition: None,
            recent_steps,
            outs: Vec::new(),
            domain: Domain::default(),
            scoring: Scoring::default(),
            seq: 0,
            enc: Vec::with_capacity(32 * 1024),
            gauges: false,
        }
    }

    /// Keeps each server's `/metrics` gauges ([`ServerOut::gauges`]) from now on; without it they
    /// stay empty, so a predictor that serves no `/metrics` does not build them every tick.
    pub fn keep_gauges(&mut self, on: bool) {
        self.gauges = on;
    }

    /// Stamps `partition` on every snapshot from now on.
    pub fn set_partition(&mut self, partition: Option<schemas::partition::PartitionInfo>) {
        self.partition = partition;
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Restores the persisted domain state (see [`Domain::restore`]).
    pub fn restore_domain(&mut self, bytes: &[u8]) -> Result<(), schemas::CodecError> {
        self.domain.restore(bytes)
    }

    /// Gives each server of `reg` its method record from `saved` (`records::merge`'s output),
    /// its pending forecasts empty from step `issue` on; returns how many servers got one
    /// (a saved server `reg` does not hold is left out: its window expired).
    pub fn restore_records(&mut self, reg: &Registry, saved: &[(String, records::Record)], issue: i64) -> usize {
        let mut restored = 0;
        for (name, record) in saved {
            if let Some(id) = reg.id_of(name) {
                self.scoring.restore(id, issue, record);
                restored += 1;
            }
        }
        restored
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Makes the next tick's snapshot number follow `seq` if it is ahead of this engine's.
    pub fn continue_after(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// Every slice of the servers' method records as of the last tick, `(slice, Slice
    /// msgpack)` (`domain/records.rs`); empty before the first tick. A slice that does not
    /// encode is left out (its servers keep the one saved before).
    pub fn record_slices(&self, reg: &Registry) -> Vec<(u64, Bytes)> {
        let Some(tick_ms) = self.domain.tick_ms() else { return Vec::new() };
        (0..records::SLICES).filter_map(|slice| self.record_slice(reg, slice, tick_ms)).collect()
    }

    /// Slice `slice` of the servers' method records after tick `tick_ms`, `(slice, Slice
    /// msgpack)`; `None` if it does not encode.
    fn record_slice(&self, reg: &Registry, slice: u64, tick_ms: i64) -> Option<(u64, Bytes)> {
        let saved = self.scoring.saved_slice(slice, tick_ms, |id| reg.server(id).name.as_str());
        schemas::encode(&saved).ok().map(|b| (slice, Bytes::from(b)))
    }

    /// Writes part `k` of a tick's snapshot from the cached server bytes.
    pub fn part(&self, out: &TickOutput, k: usize) -> Result<Bytes, schemas::CodecError> {
        let servers: Vec<&[u8]> = out.order[out.plan.range(k)]
            .iter()
            .filter_map(|id| self.outs.get(*id as usize).and_then(Option::as_ref).map(|o| &o.encoded[..]))
            .collect();
        out.plan.write(k, &out.header, &servers)
    }

    /// Server `id`'s latest output, if it has one.
    pub fn out(&self, id: u32) -> Option<&ServerOut> {
        self.outs.get(id as usize).and_then(Option::as_ref)
    }

    /// Servers whose latest output is a warm-up (no forecast yet).
    pub fn warming(&self) -> usize {
        self.outs.iter().flatten().filter(|o| o.warming).count()
    }

    /// Runs the tick for the servers in `due`; `wall_ms` stamps the snapshot. The servers' KV
    /// entries are collected in [`TickOutput::forecasts`].
    pub fn compute(&mut self, reg: &Registry, due: &[u32], wall_ms: i64, max_payload: usize) -> anyhow::Result<TickOutput> {
        self.compute_observed(reg, due, wall_ms, max_payload, &mut |_, _, _| {})
    }

    /// [`Engine::compute`], handing each server's [`ServerForecast`] (its KV `forecasts`
    /// entry, not yet encoded) to `kv` as soon as it is made instead of collecting them
    /// ([`TickOutput::forecasts`] stays empty). At 100,000 servers the entries are about 1.2 GB
    /// a tick; the predictor encodes and writes them on another thread while the tick is still
    /// computing (`publish::ForecastWriter`), so they are never held all at once and their
    /// encoding (about 7 s of a 100,000-server tick) is off this thread, the tick's critical path.
    pub fn compute_streaming(
        &mut self,
        reg: &Registry,
        due: &[u32],
        wall_ms: i64,
        max_payload: usize,
        kv: &mut dyn FnMut(ServerForecast),
    ) -> anyhow::Result<TickOutput> {
        let kv = &mut |sf: ServerForecast| {
            kv(sf);
            Ok(())
        };
        self.run(reg, due, wall_ms, max_payload, &mut |_, _, _| {}, kv)
    }

    /// [`Engine::compute`], showing `observe` every forecast server's window, every method's
    /// forecasts and what was published (the backtest scores them; `backtest/`).
    pub fn compute_observed(
        &mut self,
        reg: &Registry,
        due: &[u32],
        wall_ms: i64,
        max_payload: usize,
        observe: &mut dyn FnMut(&ServerWindow, &Candidates, &[schemas::TargetForecast]),
    ) -> anyhow::Result<TickOutput> {
        let mut forecasts = Vec::with_capacity(due.len());
        let kv = &mut |sf: ServerForecast| {
            forecasts.push((sf.server.clone(), Bytes::from(schemas::encode(&sf)?)));
            Ok(())
        };
        let mut out = self.run(reg, due, wall_ms, max_payload, observe, kv)?;
        out.forecasts = forecasts;
        Ok(out)
    }

    fn run(
        &mut self,
        reg: &Registry,
        due: &[u32],
        wall_ms: i64,
        max_payload: usize,
        observe: &mut dyn FnMut(&ServerWindow, &Candidates, &[schemas::TargetForecast]),
        kv: &mut KvSink<'_>,
    ) -> anyhow::Result<TickOutput> {
        let mut stages = Stages::default();
        self.outs.resize_with(reg.len(), || None);
        let (t, min) = (self.info.encoder_steps as usize, self.info.min_history_steps as usize);
        let (ready, warming): (Vec<u32>, Vec<u32>) = due
            .iter()
            .copied()
            .filter(|id| reg.server(*id).last_closed().is_some())
            .partition(|id| reg.server(*id).observed_steps() >= min);
        let tick_ms = due.iter().filter_map(|id| reg.server(*id).last_closed()).max().map_or(wall_ms, step_start);
        self.scoring.ensure(reg.len());
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        // The workers run the chunks; this thread assesses and encodes each chunk's servers in
        // order as its outputs arrive (the domain is stateful, the snapshot must not depend on
        // which worker ran what).
        let Engine { domain, scoring, recent_steps, enc, outs, gauges, .. } = self;
        let timing = workers.run(reg, scoring, &ready, |chunk, out| {
            let clock = Instant::now();
            domain.add_sums(&out.sums);
            stages.risk_ms += ms(clock.elapsed());
            for (row, &id) in chunk.iter().enumerate() {
                let clock = Instant::now();
                let w = reg.server(id);
                let last_ms = w.last_closed().map_or(tick_ms, step_start);
                let current = std::mem::take(&mut out.current[row]);
                // The worker ran every method and chose what to publish.
                let recurring = std::mem::take(&mut out.statistical[row].recurring);
                let candidates = &out.statistical[row];
                let model_ran = !candidates.of(schemas::Method::Model).is_empty();
                let forecast = std::mem::take(&mut out.published[row]);
                let seen = Observed { server: &w.name, profile: w.profile, current: &current };
                let verdict = domain.judge(tick_ms, seen, Some(Published { forecast, model_ran, recurring }));
                observe(w, candidates, &verdict.forecast);
                stages.risk_ms += ms(clock.elapsed());
                let clock = Instant::now();
                let explanation = explanation_from(
                    &out.var_weights[row * schemas::METRIC_COUNT..(row + 1) * schemas::METRIC_COUNT],
                    &out.attention[row * t..(row + 1) * t],
                );
                let (sf, a) = entry(w, last_ms, current, *recent_steps, verdict, None, Some(explanation));
                keep(enc, outs, id, sf, a, *gauges, kv)?;
                stages.encode_ms += ms(clock.elapsed());
            }
            Ok(())
        })?;
        drop(workers);
        stages.features_ms += timing.features_ms;
        stages.inference_ms += timing.inference_ms;
        // Warming servers' matured forecasts, added to the fleet's sums once after the loop.
        let mut sums = StepSums::default();
        for &id in &warming {
            let clock = Instant::now();
            let w = reg.server(id);
            let last_ms = w.last_closed().map_or(tick_ms, step_start);
            let current = w.latest().map(|v| v.to_metrics()).unwrap_or_default();
            self.scoring.warming(id, last_ms, &current, &mut sums);
            let seen = Observed { server: &w.name, profile: w.profile, current: &current };
            let verdict = self.domain.judge(tick_ms, seen, None);
            stages.risk_ms += ms(clock.elapsed());
            let clock = Instant::now();
            let warmup = Warmup { have_steps: w.observed_steps() as u16, need_steps: min as u16 };
            let (sf, a) = entry(w, last_ms, current, self.recent_steps, verdict, Some(warmup), None);
            keep(&mut self.enc, &mut self.outs, id, sf, a, self.gauges, kv)?;
            stages.encode_ms += ms(clock.elapsed());
        }

        let clock = Instant::now();
        self.domain.add_sums(&sums);
        let outs = &self.outs;
        let statuses = outs
            .iter()
            .zip(reg.servers())
            .filter_map(|(o, w)| o.as_ref().map(|o| ServerStatus { server: &w.name, assessment: &o.assessment, warming: o.warming }));
        let (fleet, accuracy, prune) = self.domain.finish(tick_ms, statuses);
        if prune {
            self.scoring.prune(tick_ms);
        }
        let events = self.domain.take_events();
        stages.risk_ms += ms(clock.elapsed());

        let clock = Instant::now();
        self.seq += 1;
        let mut order: Vec<u32> = (0..reg.len() as u32).filter(|id| self.outs[*id as usize].is_some()).collect();
        order.sort_unstable_by(|a, b| reg.server(*a).name.cmp(&reg.server(*b).name));
        let header = SnapshotHeader {
            seq: self.seq,
            tick_ms,
            published_ms: wall_ms,
            model: self.info.clone(),
            fleet,
            accuracy,
            partition: self.partition,
            thresholds: self.thresholds.clone(),
        };
        let sizes = order.iter().map(|id| self.outs[*id as usize].as_ref().map_or(0, |o| o.encoded.len()));
        let plan = PartPlan::new(&header, sizes, max_payload)?;
        let summary = summary_of(&header, reg, &order, &self.outs, &events);
        let records = self.record_slice(reg, self.seq % records::SLICES, tick_ms);
        stages.encode_ms += ms(clock.elapsed());

        Ok(TickOutput {
            seq: self.seq,
            tick_ms,
            header,
            order,
            plan,
            forecasts: Vec::new(),
            summary,
            events,
            forecast_count: ready.len(),
            warming_count: warming.len(),
            stages,
            state: self.domain.save().ok().map(Bytes::from),
            records,
        })
    }
}

/// Where a tick's KV `forecasts` entries go, one [`ServerForecast`] per server, unencoded.
type KvSink<'a> = dyn FnMut(ServerForecast) -> Result<(), schemas::CodecError> + 'a;

/// Encodes `sf`'s summary once for the snapshots and keeps its bytes as server `id`'s latest
/// output, then hands `sf` itself to `kv` (KV `forecasts`).
fn keep(
    enc: &mut Vec<u8>,
    outs: &mut [Option<ServerOut>],
    id: u32,
    sf: ServerForecast,
    assessment: Assessment,
    gauges: bool,
    kv: &mut KvSink<'_>,
) -> Result<(), schemas::CodecError> {
    schemas::codec::encode_into(enc, &ServerSummary::of(&sf))?;
    let encoded = Bytes::copy_from_slice(enc);
    let gauges = if gauges { crate::prom_series::ServerGauges::of(&sf) } else { Default::default() };
    outs[id as usize] = Some(ServerOut { encoded, assessment, warming: sf.warmup.is_some(), gauges });
    kv(sf)
}

fn summary_of(h: &SnapshotHeader, reg: &Registry, order: &[u32], outs: &[Option<ServerOut>], events: &[AlertEvent]) -> TickSummary {
    let mut s = TickSummary {
        v: SCHEMA_VERSION,
        seq: h.seq,
        tick_ms: h.tick_ms,
        fleet: h.fleet.clone(),
        servers: Vec::with_capacity(order.len()),
        risk: Vec::with_capacity(order.len()),
        level: Vec::with_capacity(order.len()),
        opened: Vec::new(),
        resolved: Vec::new(),
        part: None,
    };
    for id in order {
        if let Some(o) = &outs[*id as usize] {
            s.servers.push(reg.server(*id).name.clone());
            s.risk.push(o.assessment.risk.round().clamp(0.0, 100.0) as u8);
            s.level.push(o.assessment.level);
        }
    }
    for e in events {
        match e.alert.state {
            AlertState::Opened => s.opened.push(e.alert.id.clone()),
            AlertState::Resolved => s.resolved.push(e.alert.id.clone()),
            AlertState::Updated => {}
        }
    }
    s
}
