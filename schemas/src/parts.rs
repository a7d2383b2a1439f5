//! A snapshot split into parts: the one wire layout of a part ([`Frame`]), used both by
//! `Snapshot`'s serialization and by [`SnapshotHeader::write_part`], which writes a part from
//! server summaries already encoded (the predictor encodes each server's summary once, when it
//! changes, and copies the bytes into every snapshot), and the [`SnapshotAssembler`] that joins
//! parts back.
//!
//! A part is a MessagePack map of named fields, `servers` last; `write_part` lets serde
//! write the other eight and an empty `servers` array (one byte, `0x90`), replaces that byte
//! with the real array's length and appends the servers' bytes. So the two paths cannot drift
//! apart: a field added to [`Frame`] is written by both.

use serde::{Serialize, Serializer};

use crate::codec::CodecError;
use crate::partition::PartitionInfo;
use crate::snapshot::{FleetFigures, ModelInfo, PartInfo, ProfileThresholds, Snapshot, TargetAccuracy};
use crate::summary::ServerSummary;
use crate::SNAPSHOT_VERSION;

/// The wire layout of a snapshot part (`schemas/README.md`, "Snapshot"). `servers` must stay
/// the last field: [`SnapshotHeader::write_part`] appends pre-encoded servers after it.
#[derive(Serialize)]
#[serde(rename = "Snapshot")]
struct Frame<'a, S> {
    v: u16,
    seq: u64,
    tick_ms: i64,
    published_ms: i64,
    part: PartInfo,
    model: &'a ModelInfo,
    fleet: &'a FleetFigures,
    accuracy: &'a [TargetAccuracy],
    // Left out when unpartitioned, so a one-predictor snapshot is byte for byte as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<PartitionInfo>,
    thresholds: &'a [ProfileThresholds],
    servers: S,
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Frame {
            v: self.v,
            seq: self.seq,
            tick_ms: self.tick_ms,
            published_ms: self.published_ms,
            part: self.part,
            model: &self.model,
            fleet: &self.fleet,
            accuracy: &self.accuracy,
            partition: self.partition,
            thresholds: &self.thresholds,
            servers: &self.servers,
        }
        .serialize(s)
    }
}

/// Everything in a snapshot except its part number and servers: what a publisher computes once
/// per tick and repeats in every part. `v` is always [`SNAPSHOT_VERSION`].
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotHeader {
    /// Snapshot counter; all parts of one snapshot share it.
    pub seq: u64,
    /// Source time of the step that closed (Unix ms).
    pub tick_ms: i64,
    /// Wall-clock time of publication (Unix ms).
    pub published_ms: i64,
    pub model: ModelInfo,
    pub fleet: FleetFigures,
    pub accuracy: Vec<TargetAccuracy>,
    /// The partition this snapshot covers; `None` when unpartitioned.
    pub partition: Option<PartitionInfo>,
    /// Each profile's thresholds (`Snapshot::thresholds`).
    pub thresholds: Vec<ProfileThresholds>,
}

impl SnapshotHeader {
    /// Writes part `part` of this snapshot into `out` (cleared first), with `servers` the
    /// MessagePack encodings of its `ServerSummary`s, copied as they are. Byte-identical to
    /// `encode(&self.snapshot(part, decoded servers))`.
    pub fn write_part(&self, out: &mut Vec<u8>, part: PartInfo, servers: &[&[u8]]) -> Result<(), CodecError> {
        out.clear();
        let none: &[ServerSummary] = &[];
        let mut ser = rmp_serde::Serializer::new(&mut *out).with_struct_map();
        self.frame(part, none).serialize(&mut ser)?;
        // The empty `servers` array is the frame's last byte (a fixarray of length 0).
        if out.pop() != Some(0x90) {
            return Err(frame_error("servers is not the last field of a snapshot frame"));
        }
        let len = u32::try_from(servers.len()).map_err(|_| frame_error("more than 2^32 servers in one part"))?;
        rmp::encode::write_array_len(out, len).map_err(|e| CodecError::Encode(e.into()))?;
        for s in servers {
            out.extend_from_slice(s);
        }
        Ok(())
    }

    /// The snapshot (or part) with these servers, decoded (tests, small fleets, readers).
    pub fn snapshot(&self, part: PartInfo, servers: Vec<ServerSummary>) -> Snapshot {
        Snapshot {
            v: SNAPSHOT_VERSION,
            seq: self.seq,
            tick_ms: self.tick_ms,
            published_ms: self.published_ms,
            part,
            model: self.model.clone(),
            fleet: self.fleet.clone(),
            accuracy: self.accuracy.clone(),
            partition: self.partition,
            thresholds: self.thresholds.clone(),
            servers,
        }
    }

    fn frame<S>(&self, part: PartInfo, servers: S) -> Frame<'_, S> {
        Frame {
            v: SNAPSHOT_VERSION,
            seq: self.seq,
            tick_ms: self.tick_ms,
            published_ms: self.published_ms,
            part,
            model: &self.model,
            fleet: &self.fleet,
            accuracy: &self.accuracy,
            partition: self.partition,
            thresholds: &self.thresholds,
            servers,
        }
    }
}

fn frame_error(why: &str) -> CodecError {
    CodecError::Encode(rmp_serde::encode::Error::Syntax(why.to_string()))
}

/// Joins the parts of a snapshot. Feed it every message from `predictions.current` (or from
/// every partition's subject at once); it returns a whole snapshot when its last part arrives.
/// A part of a newer snapshot drops an incomplete older one of the same partition (never
/// mixes two snapshots); partitions are joined apart, so their parts may interleave.
#[derive(Debug, Default)]
pub struct SnapshotAssembler {
    pending: Vec<(Option<u16>, Snapshot, u16)>,
}

impl SnapshotAssembler {
    pub fn push(&mut self, part: Snapshot) -> Option<Snapshot> {
        let key = part.partition.map(|p| p.index);
        let slot = self.pending.iter().position(|(k, _, _)| *k == key);
        if part.part.count <= 1 {
            if let Some(i) = slot {
                self.pending.swap_remove(i);
            }
            return Some(part);
        }
        if part.part.index == 0 {
            match slot {
                Some(i) => self.pending[i] = (key, part, 1),
                None => self.pending.push((key, part, 1)),
            }
            return None;
        }
        let i = slot?;
        let (_, pending, next_index) = &mut self.pending[i];
        if pending.seq != part.seq || part.part.index != *next_index {
            self.pending.swap_remove(i);
            return None;
        }
        pending.servers.extend(part.servers);
        *next_index += 1;
        if *next_index == part.part.count {
            let (_, mut whole, _) = self.pending.swap_remove(i);
            whole.part = PartInfo::default();
            return Some(whole);
        }
        None
    }
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
