//! The compact per-tick summary retained 7 days on `history.tick` for the historical views.

use serde::{Deserialize, Serialize};

use crate::alert::Level;
use crate::snapshot::FleetFigures;

/// One tick, compactly: the fleet figures plus each server's risk and level. Servers are
/// listed by name in `servers`, and `risk`/`level` are parallel arrays (one byte each), so a
/// week of 1,000-server ticks stays in the hundreds of MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickSummary {
    pub v: u16,
    pub seq: u64,
    pub tick_ms: i64,
    pub fleet: FleetFigures,
    pub servers: Vec<String>,
    /// Risk 0-100, rounded.
    pub risk: Vec<u8>,
    pub level: Vec<Level>,
    /// Alert ids opened and resolved on this tick.
    #[serde(default)]
    pub opened: Vec<String>,
    #[serde(default)]
    pub resolved: Vec<String>,
    /// `(k, n)`: this is part `k` (from 0) of a tick whose summary was split over `n`
    /// messages ([`TickSummary::split`]), each under the broker's max payload; absent when
    /// whole. Every part carries the whole tick's `fleet`; `opened` and `resolved` are spread
    /// over the parts like the servers (a tick that opens an alert on 30,000 servers lists
    /// about 600 KB of ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<(u16, u16)>,
}

impl TickSummary {
    /// This summary as messages of at most `max_bytes` encoded: itself when it fits, else
    /// its servers split evenly over as many parts as needed (100,000 servers take about
    /// 2 MB, twice NATS's default 1 MB payload). Errors only if it cannot be encoded.
    pub fn split(self, max_bytes: usize) -> Result<Vec<TickSummary>, crate::CodecError> {
        let whole = crate::encode(&self)?.len();
        if whole <= max_bytes || self.servers.len() < 2 {
            return Ok(vec![self]);
        }
        Ok(self.split_encoded(whole, max_bytes))
    }

    /// The messages to send for this summary under `max_bytes` each, encoded: one encoding
    /// when it fits (the usual case: no copy of the server lists), else [`TickSummary::split`]'s
    /// parts.
    pub fn encode_parts(&self, max_bytes: usize) -> Result<Vec<Vec<u8>>, crate::CodecError> {
        let whole = crate::encode(self)?;
        if whole.len() <= max_bytes || self.servers.len() < 2 {
            return Ok(vec![whole]);
        }
        self.clone().split_encoded(whole.len(), max_bytes).iter().map(crate::encode).collect()
    }

    /// The parts of a summary of `whole` encoded bytes, over `max_bytes`.
    fn split_encoded(self, whole: usize, max_bytes: usize) -> Vec<TickSummary> {
        // Per-server bytes dominate; 10 % headroom for names of uneven length.
        let n = (whole as f64 / (max_bytes as f64 * 0.9)).ceil() as usize;
        let n = n.clamp(2, self.servers.len()).min(usize::from(u16::MAX));
        let per = self.servers.len().div_ceil(n);
        let parts = self.servers.len().div_ceil(per);
        let mut out = Vec::with_capacity(parts);
        let (servers, risk, level) = (self.servers, self.risk, self.level);
        let spread = |ids: &[String]| ids.chunks(ids.len().div_ceil(parts).max(1)).map(<[String]>::to_vec).collect::<Vec<_>>().into_iter();
        let (mut opened, mut resolved) = (spread(&self.opened), spread(&self.resolved));
        for (k, ((s, r), l)) in servers.chunks(per).zip(risk.chunks(per)).zip(level.chunks(per)).enumerate() {
            out.push(TickSummary {
                v: self.v,
                seq: self.seq,
                tick_ms: self.tick_ms,
                fleet: self.fleet.clone(),
                servers: s.to_vec(),
                risk: r.to_vec(),
                level: l.to_vec(),
                opened: opened.next().unwrap_or_default(),
                resolved: resolved.next().unwrap_or_default(),
                part: Some((k as u16, parts as u16)),
            });
        }
        out
    }

    /// Appends another part of the same tick (same `seq` and `tick_ms`) to this one; false, and
    /// nothing changed, if it belongs to another tick.
    pub fn absorb(&mut self, other: TickSummary) -> bool {
        if other.seq != self.seq || other.tick_ms != self.tick_ms {
            return false;
        }
        self.servers.extend(other.servers);
        self.risk.extend(other.risk);
        self.level.extend(other.level);
        self.opened.extend(other.opened);
        self.resolved.extend(other.resolved);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(n: usize) -> TickSummary {
        TickSummary {
            v: 2,
            seq: 7,
            tick_ms: 1_800_000_000_000,
            fleet: FleetFigures::default(),
            servers: (0..n).map(|i| format!("ppsrv{i:06}")).collect(),
            risk: (0..n).map(|i| (i % 101) as u8).collect(),
            level: (0..n).map(|i| if i % 3 == 0 { Level::Warning } else { Level::Healthy }).collect(),
            opened: vec!["ppsrv000003.cpu".into()],
            resolved: vec![],
            part: None,
        }
    }

    #[test]
    fn a_large_summary_splits_under_the_payload_and_absorbs_back_whole() {
        let whole = summary(100_000);
        let max = 1 << 20;
        assert!(crate::encode(&whole).unwrap().len() > max, "100,000 servers exceed 1 MB");
        let parts = whole.clone().split(max).unwrap();
        assert!(parts.len() >= 2);
        for (k, p) in parts.iter().enumerate() {
            assert!(crate::encode(p).unwrap().len() <= max, "part {k}");
            assert_eq!(p.part, Some((k as u16, parts.len() as u16)));
            assert_eq!((p.seq, p.tick_ms, &p.fleet), (whole.seq, whole.tick_ms, &whole.fleet));
        }
        let encoded = whole.encode_parts(max).unwrap();
        assert_eq!(encoded, parts.iter().map(|p| crate::encode(p).unwrap()).collect::<Vec<_>>(), "encode_parts = split, encoded");
        let mut back = join(parts);
        assert_eq!(back, whole);
        // A small one stays whole, without a part number on the wire.
        let small = summary(10);
        assert_eq!(small.clone().split(max).unwrap(), vec![small.clone()]);
        let decoded: TickSummary = crate::decode(&crate::encode(&small).unwrap()).unwrap();
        assert_eq!(decoded.part, None);
        // Another tick's part is not absorbed.
        let mut other = summary(3);
        other.seq = 8;
        assert!(!back.absorb(other));
    }

    /// A tick that opens and resolves alerts on much of a 100,000-server fleet: the id lists
    /// alone are over 1 MB, and every part must still fit (they once all went in part 0).
    #[test]
    fn long_alert_lists_are_spread_over_the_parts() {
        let mut whole = summary(100_000);
        whole.opened = (0..60_000).map(|i| format!("ppsrv{i:06}.disk")).collect();
        whole.resolved = (0..20_000).map(|i| format!("ppsrv{i:06}.cpu")).collect();
        let max = 1 << 20;
        let parts = whole.clone().split(max).unwrap();
        for (k, p) in parts.iter().enumerate() {
            assert!(crate::encode(p).unwrap().len() <= max, "part {k} of {}", parts.len());
        }
        assert!(parts.iter().all(|p| !p.opened.is_empty()), "every part carries some opened ids");
        assert_eq!(join(parts), whole);
    }

    /// The parts absorbed in order into the first, as a whole summary (no part number).
    fn join(parts: Vec<TickSummary>) -> TickSummary {
        let mut it = parts.into_iter();
        let mut back = it.next().unwrap();
        for p in it {
            assert!(back.absorb(p));
        }
        back.part = None;
        back
    }
}
