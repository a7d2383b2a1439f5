//! The wire form of a [`ServerSummary`]: a positional MessagePack array, because at 100,000
//! servers per snapshot field names alone (~80 bytes a server) would cost more than the
//! whole budget of ~150 bytes. Layout (`schemas/README.md`, "ServerSummary"):
//!
//! | # | field | MessagePack |
//! |---|---|---|
//! | 0 | server | str |
//! | 1 | profile | u8, index in `Profile::ALL` |
//! | 2 | last_ms | int (Unix ms) |
//! | 3 | risk | f32 |
//! | 4 | level | u8, index in `Level::ALL` |
//! | 5 | targets | bin of 8 x 5 bytes in `Target::ALL` order: current (f16 LE), peak P50 (f16 LE), method (u8 index in `Method::ALL`, 255 = no forecast); f16 NaN = unknown |
//! | 6 | breach | nil or [target u8, severity u8, steps ahead u16] |
//! | 7 | reasons | [[target u8, points u8 (rounded)], ...] |
//! | 8 | reason | nil or str |
//! | 9 | spark | nil or bin: target u8, steps per point u8, lo f16 LE, hi f16 LE, then one byte per point: `lo + code / 254 * (hi - lo)`, 255 = none |
//! | 10 | warmup | nil or [have_steps u16, need_steps u16] |
//! | 11 | no_forecast | bool |
//! | 12 | alerts | [[target, severity, basis, state (u8 codes), threshold f32, predicted f32, steps ahead u16, opened_ms int], ...] |
//!
//! Human-readable formats (JSON, `fcmsg decode`) get the named fields of [`ServerSummary`]
//! instead. Reading is MessagePack only.

use half::f16;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertBasis, AlertState, Level};
use crate::curves::Blob;
use crate::method::Method;
use crate::metric::{Target, TARGET_COUNT};
use crate::profile::Profile;
use crate::snapshot::Warmup;
use crate::summary::{AlertBrief, Breach, ReasonBrief, ServerSummary, Sparkline, TargetBrief};
use crate::STEP_MS;

const STEP_MINUTES: u32 = (STEP_MS / 60_000) as u32;
/// Bytes per target in the `targets` blob.
const TARGET_BYTES: usize = 5;
/// The code of "none" in one-byte fields (no method, no sparkline point).
const NONE: u8 = 255;
/// The highest sparkline code: the curve's highest value.
const SPARK_TOP: f32 = 254.0;

#[derive(Serialize, Deserialize)]
struct Wire(
    String,
    u8,
    i64,
    f32,
    u8,
    Blob,
    Option<(u8, u8, u16)>,
    Vec<(u8, u8)>,
    Option<String>,
    Option<Blob>,
    Option<(u16, u16)>,
    bool,
    Vec<WireAlert>,
);

#[derive(Serialize, Deserialize)]
struct WireAlert(u8, u8, u8, u8, f32, f32, u16, i64);

/// The one-byte code of `v`: its index in `all`.
fn code<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).map_or(NONE, |i| i as u8)
}

fn decoded<T: Copy>(all: &[T], c: u8, what: &str) -> Result<T, String> {
    all.get(usize::from(c)).copied().ok_or_else(|| format!("summary: {what} code {c} is not known"))
}

fn steps(minutes: u32) -> u16 {
    (minutes / STEP_MINUTES).min(u32::from(u16::MAX)) as u16
}

fn half_of(v: Option<f32>) -> [u8; 2] {
    let v = v.filter(|v| v.is_finite()).map_or(f32::NAN, |v| v.clamp(f16::MIN.to_f32(), f16::MAX.to_f32()));
    f16::from_f32(v).to_le_bytes()
}

fn from_half(b: [u8; 2]) -> Option<f32> {
    Some(f16::from_le_bytes(b).to_f32()).filter(|v| v.is_finite())
}

fn targets_blob(targets: &[TargetBrief]) -> Blob {
    let mut out = Vec::with_capacity(TARGET_BYTES * TARGET_COUNT);
    for t in Target::ALL {
        let b = targets.iter().find(|x| x.target == t);
        out.extend_from_slice(&half_of(b.and_then(|b| b.current)));
        out.extend_from_slice(&half_of(b.and_then(|b| b.peak_p50)));
        out.push(b.and_then(|b| b.method).map_or(NONE, |m| code(&Method::ALL, &m)));
    }
    Blob(out)
}

fn targets_of(blob: &[u8]) -> Result<Vec<TargetBrief>, String> {
    if blob.len() != TARGET_BYTES * TARGET_COUNT {
        return Err(format!("summary: targets blob of {} bytes, want {}", blob.len(), TARGET_BYTES * TARGET_COUNT));
    }
    Target::ALL
        .iter()
        .zip(blob.chunks_exact(TARGET_BYTES))
        .map(|(&target, b)| {
            let method = if b[4] == NONE { None } else { Some(decoded(&Method::ALL, b[4], "method")?) };
            Ok(TargetBrief { target, current: from_half([b[0], b[1]]), peak_p50: from_half([b[2], b[3]]), method })
        })
        .collect()
}

fn spark_blob(s: &Sparkline) -> Blob {
    let finite = || s.p50.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = (finite().reduce(f32::min).unwrap_or(0.0), finite().reduce(f32::max).unwrap_or(0.0));
    let mut out = Vec::with_capacity(6 + s.p50.len());
    out.push(code(&Target::ALL, &s.target));
    out.push(s.steps_per_point);
    out.extend_from_slice(&half_of(Some(lo)));
    out.extend_from_slice(&half_of(Some(hi)));
    // Codes against the curve's own lowest and highest value (0 and 254 exactly), so a curve
    // read back and encoded again gets the same codes and the same half-float scale.
    let span = hi - lo;
    out.extend(s.p50.iter().map(|v| match v.filter(|v| v.is_finite()) {
        None => NONE,
        Some(_) if span <= 0.0 || !span.is_finite() => 0,
        Some(v) => ((v - lo) / span * SPARK_TOP).round().clamp(0.0, SPARK_TOP) as u8,
    }));
    Blob(out)
}

fn spark_of(blob: &[u8]) -> Result<Sparkline, String> {
    let [t, per, l0, l1, h0, h1, codes @ ..] = blob else {
        return Err(format!("summary: sparkline blob of {} bytes is cut short", blob.len()));
    };
    let (lo, hi) = (from_half([*l0, *l1]).unwrap_or(0.0), from_half([*h0, *h1]).unwrap_or(0.0));
    let p50 = codes.iter().map(|&c| (c != NONE).then(|| lo + f32::from(c) / SPARK_TOP * (hi - lo))).collect();
    Ok(Sparkline { target: decoded(&Target::ALL, *t, "sparkline target")?, steps_per_point: *per, p50 })
}

impl Wire {
    fn of(s: &ServerSummary) -> Wire {
        let t = |t: &Target| code(&Target::ALL, t);
        let l = |l: &Level| code(&Level::ALL, l);
        Wire(
            s.server.clone(),
            code(&Profile::ALL, &s.profile),
            s.last_ms,
            s.risk,
            l(&s.level),
            targets_blob(&s.targets),
            s.breach.map(|b| (t(&b.target), l(&b.severity), steps(b.minutes_ahead))),
            s.reasons.iter().map(|r| (t(&r.target), r.points.round().clamp(0.0, 255.0) as u8)).collect(),
            s.reason.clone(),
            s.spark.as_ref().map(spark_blob),
            s.warmup.map(|w| (w.have_steps, w.need_steps)),
            s.no_forecast,
            s.alerts
                .iter()
                .map(|a| {
                    let (basis, state) = (code(&AlertBasis::ALL, &a.basis), code(&AlertState::ALL, &a.state));
                    WireAlert(t(&a.target), l(&a.severity), basis, state, a.threshold, a.predicted, steps(a.minutes_ahead), a.opened_ms)
                })
                .collect(),
        )
    }

    fn summary(self) -> Result<ServerSummary, String> {
        let Wire(server, profile, last_ms, risk, level, targets, breach, reasons, reason, spark, warmup, no_forecast, alerts) = self;
        let target = |c: u8| decoded(&Target::ALL, c, "target");
        let level_of = |c: u8| decoded(&Level::ALL, c, "level");
        let minutes = |steps: u16| u32::from(steps) * STEP_MINUTES;
        Ok(ServerSummary {
            server,
            profile: decoded(&Profile::ALL, profile, "profile")?,
            last_ms,
            risk,
            level: level_of(level)?,
            targets: targets_of(&targets.0)?,
            breach: match breach {
                Some((t, s, n)) => Some(Breach { target: target(t)?, severity: level_of(s)?, minutes_ahead: minutes(n) }),
                None => None,
            },
            reasons: reasons
                .into_iter()
                .map(|(t, p)| Ok(ReasonBrief { target: target(t)?, points: f32::from(p) }))
                .collect::<Result<_, String>>()?,
            reason,
            spark: spark.map(|b| spark_of(&b.0)).transpose()?,
            warmup: warmup.map(|(have_steps, need_steps)| Warmup { have_steps, need_steps }),
            no_forecast,
            alerts: alerts
                .into_iter()
                .map(|WireAlert(t, s, b, st, threshold, predicted, n, opened_ms)| {
                    Ok(AlertBrief {
                        target: target(t)?,
                        severity: level_of(s)?,
                        basis: decoded(&AlertBasis::ALL, b, "alert basis")?,
                        state: decoded(&AlertState::ALL, st, "alert state")?,
                        threshold,
                        predicted,
                        minutes_ahead: minutes(n),
                        opened_ms,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

impl Serialize for ServerSummary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return Wire::of(self).serialize(s);
        }
        let mut st = s.serialize_struct("ServerSummary", 13)?;
        st.serialize_field("server", &self.server)?;
        st.serialize_field("profile", &self.profile)?;
        st.serialize_field("last_ms", &self.last_ms)?;
        st.serialize_field("risk", &self.risk)?;
        st.serialize_field("level", &self.level)?;
        st.serialize_field("targets", &self.targets)?;
        st.serialize_field("breach", &self.breach)?;
        st.serialize_field("reasons", &self.reasons)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("spark", &self.spark)?;
        st.serialize_field("warmup", &self.warmup)?;
        st.serialize_field("no_forecast", &self.no_forecast)?;
        st.serialize_field("alerts", &self.alerts)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for ServerSummary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Wire::deserialize(d)?.summary().map_err(de::Error::custom)
    }
}
