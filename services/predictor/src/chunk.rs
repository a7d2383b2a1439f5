//! The value layout of the `windows` KV bucket (predictor-owned; no other service reads it).
//!
//! A server's window is stored as one-hour chunks in a ring of key slots, so a tick rewrites
//! only the chunk that changed (about 60 B per step, < 1 KB per key), never a whole 288-step
//! window, and the key count per server stays fixed with no deletes or tombstones:
//!
//! - key `<server>.<slot>`: slot = `chunk mod n_slots`, chunk = `step div 12` (one hour of
//!   5-minute steps, step = `ts_ms div 300000`), n_slots = `ceil(encoder_steps / 12) + 1`
//!   (25 for 288 steps). A slot is overwritten when its chunk comes round again; a reader keeps
//!   only the newest `n_slots` chunks of a server and ignores stale slots.
//! - key `=src.<source>`: the source's stream clock (`=` cannot occur in a server name).
//!
//! Chunk value, little-endian binary (msgpack would double the size of 14 floats per step):
//! ```text
//! u8  format (1)
//! i64 chunk number
//! u8  profile index (schemas::Profile::ALL)
//! u8  source name length, then its bytes
//! u8  closed step count n, then n times:
//!       u8 step offset in the chunk (0-11), u16 observed mask (bit i = Metric::ALL[i]),
//!       one f32 per set mask bit (the step's average), in metric order
//! u8  1 if the server's open step lies in this chunk, then:
//!       u8 step offset, u16 mask, per set bit: f64 sum and u16 count of the reports so far,
//!       (format 2) u16 n, then n times: u32 report time in ms since the step's start, u16 mask
//!       of the metrics counted at that time (so a redelivery after a restart counts once)
//! ```
//! Format 1 (no report times) is still read.
//! Source clock value: `u8 format (1)`, `i64 clock_ms`.

use schemas::{Profile, METRIC_COUNT};

use crate::step::{OpenStep, Seen, StepValues};
use crate::window::{chunk_of, ServerWindow, CHUNK_STEPS};

const FORMAT: u8 = 2;
/// The format before the open step's report times were stored.
const FORMAT_1: u8 = 1;
/// The source-clock value's format (unchanged).
const CLOCK_FORMAT: u8 = 1;
/// Key prefix of source clocks.
pub const SOURCE_KEY_PREFIX: &str = "=src.";

/// Number of key slots per server for windows of `capacity` steps.
pub fn n_slots(capacity: usize) -> i64 {
    (capacity as i64 + CHUNK_STEPS - 1) / CHUNK_STEPS + 1
}

pub fn chunk_key(server: &str, chunk: i64, n_slots: i64) -> String {
    format!("{server}.{}", chunk.rem_euclid(n_slots))
}

pub fn source_key(source: &str) -> String {
    format!("{SOURCE_KEY_PREFIX}{source}")
}

/// What a key in the bucket holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Chunk { server: &'a str, slot: i64 },
    Source(&'a str),
}

pub fn parse_key(key: &str) -> Option<Key<'_>> {
    if let Some(source) = key.strip_prefix(SOURCE_KEY_PREFIX) {
        return Some(Key::Source(source));
    }
    let (server, slot) = key.rsplit_once('.')?;
    Some(Key::Chunk { server, slot: slot.parse().ok()? })
}

/// A decoded chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub chunk: i64,
    pub profile: Profile,
    pub source: String,
    /// Closed steps (absolute step numbers), ascending.
    pub steps: Vec<(i64, StepValues)>,
    pub open: Option<OpenStep>,
    /// The report times the open step has counted (empty without an open step, or format 1).
    pub seen: Seen,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    #[error("value ends early")]
    Short,
    #[error("unknown format {0}")]
    Format(u8),
    #[error("bad {0}")]
    Bad(&'static str),
}

/// Appends the encoding of `window`'s chunk `chunk` to `out`.
pub fn encode_chunk(w: &ServerWindow, source: &str, chunk: i64, out: &mut Vec<u8>) {
    out.push(FORMAT);
    out.extend_from_slice(&chunk.to_le_bytes());
    out.push(w.profile.as_index() as u8);
    let name = &source.as_bytes()[..source.len().min(255)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    let first = chunk * CHUNK_STEPS;
    let count_at = out.len();
    out.push(0);
    let mut n = 0u8;
    for off in 0..CHUNK_STEPS {
        let Some(v) = w.step(first + off).filter(|v| v.is_observed()) else { continue };
        out.push(off as u8);
        out.extend_from_slice(&v.mask.to_le_bytes());
        for i in (0..METRIC_COUNT).filter(|i| v.mask & (1 << i) != 0) {
            out.extend_from_slice(&v.values[i].to_le_bytes());
        }
        n += 1;
    }
    out[count_at] = n;
    match w.open().filter(|o| chunk_of(o.step) == chunk) {
        Some(o) => {
            out.push(1);
            out.push((o.step - first) as u8);
            let mask = o.mask();
            out.extend_from_slice(&mask.to_le_bytes());
            for i in (0..METRIC_COUNT).filter(|i| mask & (1 << i) != 0) {
                out.extend_from_slice(&o.sum[i].to_le_bytes());
                out.extend_from_slice(&o.count[i].to_le_bytes());
            }
            let seen = w.seen().entries();
            // At most MAX_SEEN (1024) entries, so the count fits.
            out.extend_from_slice(&(seen.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
            for (offset, mask) in seen.iter().take(usize::from(u16::MAX)) {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&mask.to_le_bytes());
            }
        }
        None => out.push(0),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if self.0.len() < n {
            return Err(ChunkError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ChunkError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ChunkError> {
        self.take(N)?.try_into().map_err(|_| ChunkError::Short)
    }
}

pub fn decode_chunk(bytes: &[u8]) -> Result<Chunk, ChunkError> {
    let mut r = Reader(bytes);
    let format = r.u8()?;
    if format != FORMAT && format != FORMAT_1 {
        return Err(ChunkError::Format(format));
    }
    let chunk = i64::from_le_bytes(r.array()?);
    let profile = *Profile::ALL.get(r.u8()? as usize).ok_or(ChunkError::Bad("profile"))?;
    let len = r.u8()? as usize;
    let source = std::str::from_utf8(r.take(len)?).map_err(|_| ChunkError::Bad("source"))?.to_string();
    let n = r.u8()?;
    let first = chunk * CHUNK_STEPS;
    let mut steps = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let off = i64::from(r.u8()?);
        if off >= CHUNK_STEPS {
            return Err(ChunkError::Bad("step offset"));
        }
        let mut v = StepValues { mask: u16::from_le_bytes(r.array()?), ..StepValues::EMPTY };
        for i in (0..METRIC_COUNT).filter(|i| v.mask & (1 << i) != 0) {
            v.values[i] = f32::from_le_bytes(r.array()?);
        }
        steps.push((first + off, v));
    }
    let mut seen = Seen::default();
    let open = match r.u8()? {
        0 => None,
        _ => {
            let off = i64::from(r.u8()?);
            let mask = u16::from_le_bytes(r.array()?);
            let mut o = OpenStep::new(first + off);
            for i in (0..METRIC_COUNT).filter(|i| mask & (1 << i) != 0) {
                o.sum[i] = f64::from_le_bytes(r.array()?);
                o.count[i] = u16::from_le_bytes(r.array()?);
            }
            if format == FORMAT {
                let n = u16::from_le_bytes(r.array()?);
                let mut entries = Vec::with_capacity(usize::from(n).min(crate::step::MAX_SEEN));
                for _ in 0..n {
                    entries.push((u32::from_le_bytes(r.array()?), u16::from_le_bytes(r.array()?)));
                }
                seen = Seen::from_entries(entries);
            }
            Some(o)
        }
    };
    Ok(Chunk { chunk, profile, source, steps, open, seen })
}

pub fn encode_clock(clock_ms: i64) -> [u8; 9] {
    let mut out = [CLOCK_FORMAT; 9];
    out[1..].copy_from_slice(&clock_ms.to_le_bytes());
    out
}

pub fn decode_clock(bytes: &[u8]) -> Result<i64, ChunkError> {
    let mut r = Reader(bytes);
    match r.u8()? {
        CLOCK_FORMAT => Ok(i64::from_le_bytes(r.array()?)),
        other => Err(ChunkError::Format(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{step_end, step_start};
    use schemas::Metrics;

    #[test]
    fn keys_round_trip() {
        assert_eq!(n_slots(288), 25);
        assert_eq!(n_slots(24), 3);
        assert_eq!(chunk_key("db-1.prod", 26, 25), "db-1.prod.1");
        assert_eq!(parse_key("db-1.prod.1"), Some(Key::Chunk { server: "db-1.prod", slot: 1 }));
        assert_eq!(parse_key(&source_key("gen.a")), Some(Key::Source("gen.a")));
        assert_eq!(parse_key("nodot"), None);
        assert_eq!(decode_clock(&encode_clock(-5)), Ok(-5));
    }

    #[test]
    fn a_chunk_round_trips_closed_and_open_steps() {
        let mut w = ServerWindow::new("ppdb001".into(), Profile::Database, 0, 24);
        let base = 1000 * CHUNK_STEPS;
        for s in [base, base + 1, base + 3] {
            w.add(step_start(s), &Metrics { cpu_idle_pct: Some(s as f32 / 100.0), net_in_mb_s: Some(2.5), ..Default::default() });
            w.close_until(step_end(s));
        }
        w.add(step_start(base + 5), &Metrics { mem_used_pct: Some(40.0), ..Default::default() });
        w.add(step_start(base + 5) + 60_000, &Metrics { mem_used_pct: Some(42.0), ..Default::default() });
        let mut buf = Vec::new();
        encode_chunk(&w, "generator", 1000, &mut buf);
        let c = decode_chunk(&buf).unwrap();
        assert_eq!((c.chunk, c.profile, c.source.as_str()), (1000, Profile::Database, "generator"));
        let steps: Vec<_> = c.steps.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [base, base + 1, base + 3], "the unknown step 2 is not stored");
        assert_eq!(c.steps[2].1, w.step(base + 3).unwrap());
        assert_eq!(c.open.as_ref(), w.open());
        assert_eq!(&c.seen, w.seen(), "the open step's report times survive");
        assert_eq!(c.seen.entries(), [(0, 1 << 5), (60_000, 1 << 5)]);
        assert!(buf.len() < 100, "{} bytes", buf.len());
        for cut in 0..buf.len() {
            assert!(decode_chunk(&buf[..cut]).is_err(), "truncated at {cut} must fail, not panic");
        }
    }

    /// A value a format-1 predictor stored (before report times) still reads, with no times.
    #[test]
    fn format_1_still_reads() {
        let mut w = ServerWindow::new("ppdb001".into(), Profile::Database, 0, 24);
        w.add(step_start(12_005), &Metrics { mem_used_pct: Some(40.0), ..Default::default() });
        let mut buf = Vec::new();
        encode_chunk(&w, "g", 1000, &mut buf);
        // Format 1 is format 2 without the trailing times (one entry: u16 n + 6 bytes).
        let mut old = buf[..buf.len() - 8].to_vec();
        old[0] = FORMAT_1;
        let c = decode_chunk(&old).unwrap();
        assert_eq!(c.open.as_ref(), w.open());
        assert!(c.seen.entries().is_empty());
        assert_eq!(decode_chunk(&[9]).unwrap_err(), ChunkError::Format(9));
    }
}
