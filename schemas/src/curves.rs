//! The wire form of a [`TargetForecast`]: its three curves as one binary blob.
//!
//! Every server's forecast (8 targets x 3 quantiles x 96 steps) goes into KV `forecasts` every
//! tick: at 100,000 servers that is the predictor's biggest write (issue 14). MessagePack writes
//! each `f32` as its own 5-byte item, which serde visits one by one; the blob is one `bin`.
//! Human-readable formats (JSON) keep the plain `{target, p10, p50, p90}`, and readers take
//! either form, so entries written before the blob still decode.
//!
//! Blob layout, all little-endian: byte 0 is the form, then `n: u16` (values per curve):
//! - form 1, scaled (written whenever every value is finite): `lo: f32`, `step: f32`, then the
//!   `3n` values (P10 curve, P50, P90) as `u16` codes, value = `lo + code x step`. `lo` is the
//!   smallest of the three curves' values and `step` their range / 65,535, so a value reads back
//!   within about half a step (0.00077 on a 0-100 % curve: 1/131,070 of the range), equal values
//!   read back equal and one value's code never exceeds a larger one's (`p10 <= p50 <= p90`
//!   holds after decoding). Half the bytes of form 0: the curves are for charts and on-demand
//!   reads, the predictor scores its own unrounded values.
//! - form 0, raw: the `3n` values as `f32`, bit for bit (what a non-finite value falls back to;
//!   a predictor never publishes one, but the codec does not lose it).
//!
//! Other forms are reserved and rejected.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::method::Method;
use crate::metric::Target;
use crate::snapshot::TargetForecast;

const FORM_RAW: u8 = 0;
const FORM_SCALED: u8 = 1;

/// The largest code of the scaled form.
const CODES: f64 = u16::MAX as f64;

/// Encodes three curves of equal length `n` (at most `u16::MAX` values each; longer are cut):
/// the scaled form when every value is finite, else the raw one (see the module doc).
pub fn encode(p10: &[f32], p50: &[f32], p90: &[f32]) -> Vec<u8> {
    let n = p10.len().min(p50.len()).min(p90.len()).min(u16::MAX as usize);
    let curves = [&p10[..n], &p50[..n], &p90[..n]];
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut finite = true;
    for v in curves.iter().flat_map(|c| c.iter()) {
        finite &= v.is_finite();
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let lo = if n == 0 { 0.0 } else { lo };
    // In f64: the range of two finite f32 can overflow f32 (such curves go raw; none is plausible).
    let range = if n == 0 { 0.0 } else { f64::from(hi) - f64::from(lo) };
    if !finite || !(range as f32).is_finite() {
        return encode_raw(n, curves);
    }
    let step = (range / CODES) as f32;
    let mut out = header(FORM_SCALED, n, 8 + 6 * n);
    out.extend_from_slice(&lo.to_le_bytes());
    out.extend_from_slice(&step.to_le_bytes());
    // One multiply and a saturating truncation of `x + 0.5` per value (round-half-up): with an
    // f64 division and `round()` (a libm call) per value, encoding was 4.4 % of the predictor's
    // CPU at 100,000 servers, 1.9 % so (`perf`). Monotone in the value, so order and equality
    // survive; in f32 its error is a hundredth of a code.
    let inverse = if step > 0.0 { 1.0 / step } else { 0.0 };
    let at = out.len();
    out.resize(at + 6 * n, 0);
    let codes = curves.iter().flat_map(|c| c.iter()).map(|v| ((v - lo) * inverse + 0.5) as u16);
    for (slot, code) in out[at..].chunks_exact_mut(2).zip(codes) {
        slot.copy_from_slice(&code.to_le_bytes());
    }
    out
}

/// A blob's first three bytes (`form`, `n`), with room for `body` more.
fn header(form: u8, n: usize, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + body);
    out.push(form);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out
}

/// The raw form of `curves` (each `n` long).
fn encode_raw(n: usize, curves: [&[f32]; 3]) -> Vec<u8> {
    let mut out = header(FORM_RAW, n, 12 * n);
    curves.iter().flat_map(|c| c.iter()).for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

/// Decodes [`encode`]'s blob into (p10, p50, p90); the error says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<[Vec<f32>; 3], String> {
    let (form, rest) = bytes.split_first().ok_or("empty curves blob")?;
    let scaled = match *form {
        FORM_RAW => false,
        FORM_SCALED => true,
        other => return Err(format!("curves blob: unknown form {other}")),
    };
    let (n, body) = match rest {
        [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]) as usize, body),
        _ => return Err("curves blob: header cut short".into()),
    };
    let word = |at: usize| [body[at], body[at + 1], body[at + 2], body[at + 3]];
    if !scaled {
        if body.len() != 12 * n {
            return Err(format!("curves blob: {} bytes of f32 for 3 x {n} values", body.len()));
        }
        return Ok([0, 1, 2].map(|c| (0..n).map(|k| f32::from_le_bytes(word(4 * (c * n + k)))).collect()));
    }
    if body.len() != 8 + 6 * n {
        return Err(format!("curves blob: {} bytes of scale and u16 codes for 3 x {n} values", body.len()));
    }
    let (lo, step) = (f64::from(f32::from_le_bytes(word(0))), f64::from(f32::from_le_bytes(word(4))));
    if !(lo.is_finite() && step.is_finite() && step >= 0.0) {
        return Err(format!("curves blob: scale {lo} + code x {step} is not finite and increasing"));
    }
    // Clamped: at the edge of f32's range a rounded-up step could carry the top code past it.
    let value = |k: usize| {
        let code = f64::from(u16::from_le_bytes([body[8 + 2 * k], body[9 + 2 * k]]));
        (lo + code * step).clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
    };
    Ok([0, 1, 2].map(|c| (0..n).map(|k| value(c * n + k)).collect()))
}

impl Serialize for TargetForecast {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut st = s.serialize_struct("TargetForecast", 5)?;
            st.serialize_field("target", &self.target)?;
            st.serialize_field("method", &self.method)?;
            st.serialize_field("p10", &self.p10)?;
            st.serialize_field("p50", &self.p50)?;
            st.serialize_field("p90", &self.p90)?;
            return st.end();
        }
        let mut st = s.serialize_struct("TargetForecast", 3)?;
        st.serialize_field("target", &self.target)?;
        st.serialize_field("method", &self.method)?;
        st.serialize_field("curves", &Blob(encode(&self.p10, &self.p50, &self.p90)))?;
        st.end()
    }
}

/// Serialises as a MessagePack `bin`, reads a `bin` or an array of bytes (also the summary's
/// blobs, `summary_wire.rs`).
pub(crate) struct Blob(pub(crate) Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a binary curves blob")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Blob(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl<'de> Deserialize<'de> for TargetForecast {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetForecast;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target forecast: {target, curves} or {target, p10, p50, p90}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TargetForecast, A::Error> {
                let (mut target, mut curves, mut method) = (None::<Target>, None::<Blob>, Method::default());
                let (mut p10, mut p50, mut p90) = (None::<Vec<f32>>, None::<Vec<f32>>, None::<Vec<f32>>);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "target" => target = Some(map.next_value()?),
                        "curves" => curves = Some(map.next_value()?),
                        "method" => method = map.next_value()?,
                        "p10" => p10 = Some(map.next_value()?),
                        "p50" => p50 = Some(map.next_value()?),
                        "p90" => p90 = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let target = target.ok_or_else(|| de::Error::missing_field("target"))?;
                if let Some(Blob(bytes)) = curves {
                    let [p10, p50, p90] = decode(&bytes).map_err(de::Error::custom)?;
                    return Ok(TargetForecast { target, method, p10, p50, p90 });
                }
                Ok(TargetForecast {
                    target,
                    method,
                    p10: p10.ok_or_else(|| de::Error::missing_field("p10"))?,
                    p50: p50.ok_or_else(|| de::Error::missing_field("p50"))?,
                    p90: p90.ok_or_else(|| de::Error::missing_field("p90"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forecast(p10: Vec<f32>, p50: Vec<f32>, p90: Vec<f32>) -> TargetForecast {
        TargetForecast { target: Target::Mem, method: Method::Trend, p10, p50, p90 }
    }

    fn round_trip(f: &TargetForecast) -> TargetForecast {
        crate::decode(&crate::encode(f).unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any curve with a value that is not finite goes raw, and comes back bit for bit.
        #[test]
        fn a_curve_that_is_not_finite_comes_back_bit_for_bit(
            bits in proptest::collection::vec(any::<(u32, u32, u32)>(), 1..120),
            at in any::<prop::sample::Index>(),
            bad in prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
        ) {
            let mut f = forecast(
                bits.iter().map(|b| f32::from_bits(b.0)).collect(),
                bits.iter().map(|b| f32::from_bits(b.1)).collect(),
                bits.iter().map(|b| f32::from_bits(b.2)).collect(),
            );
            let k = at.index(f.p50.len());
            f.p50[k] = bad;
            let back = round_trip(&f);
            let as_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(as_bits(&back.p10), as_bits(&f.p10));
            prop_assert_eq!(as_bits(&back.p50), as_bits(&f.p50));
            prop_assert_eq!(as_bits(&back.p90), as_bits(&f.p90));
        }

        /// Finite curves come back within half a step of the three curves' range / 65,535 (plus
        /// f32 rounding), in the same order value for value, and equal where they were equal.
        #[test]
        fn finite_curves_come_back_within_half_a_step_in_order(
            values in proptest::collection::vec((-1e6_f32..1e6, 0_f32..1e4, 0_f32..1e4), 0..120),
        ) {
            let p10: Vec<f32> = values.iter().map(|v| v.0).collect();
            let p50: Vec<f32> = values.iter().map(|v| v.0 + v.1).collect();
            let p90: Vec<f32> = values.iter().map(|v| v.0 + v.1 + v.2).collect();
            let f = forecast(p10, p50, p90);
            let back = round_trip(&f);
            let all = || f.p10.iter().chain(&f.p50).chain(&f.p90);
            let range = all().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) - all().fold(f32::INFINITY, |m, v| m.min(*v));
            for (got, want) in [(&back.p10, &f.p10), (&back.p50, &f.p50), (&back.p90, &f.p90)] {
                prop_assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want.iter()) {
                    prop_assert!((g - w).abs() <= range / 65_535.0 * 0.51 + w.abs() * 1e-6, "{} for {} (range {})", g, w, range);
                }
            }
            for k in 0..values.len() {
                prop_assert!(back.p10[k] <= back.p50[k] && back.p50[k] <= back.p90[k], "order lost at {}", k);
                if f.p10[k] == f.p50[k] {
                    prop_assert_eq!(back.p10[k], back.p50[k]);
                }
            }
        }
    }

    #[test]
    fn flat_curves_and_the_range_ends_come_back_exactly() {
        let f = forecast(vec![73.5; 96], vec![73.5; 96], vec![73.5; 96]);
        assert_eq!(round_trip(&f), f);
        let f = forecast(vec![0.0, 10.0], vec![20.0, 50.0], vec![99.0, 100.0]);
        let back = round_trip(&f);
        assert_eq!((back.p10[0], back.p90[1]), (0.0, 100.0));
        let huge = forecast(vec![f32::MIN], vec![0.0], vec![f32::MAX]);
        let back = round_trip(&huge);
        assert!(back.p10[0].is_finite() && back.p90[0].is_finite(), "{back:?}");
        assert!(back.p90[0] > 3.4e38 && back.p10[0] < -3.4e38, "{back:?}");
    }

    #[test]
    fn the_scaled_form_is_half_the_raw_one() {
        let curve = |from: f32, slope: f32| (0..96).map(|k| from + k as f32 * slope).collect::<Vec<f32>>();
        let (p10, p50, p90) = (curve(40.0, 0.13), curve(50.0, 0.2), curve(60.5, 0.3));
        let scaled = encode(&p10, &p50, &p90);
        let mut p50_nan = p50.clone();
        p50_nan[3] = f32::NAN;
        let raw = encode(&p10, &p50_nan, &p90);
        assert_eq!((scaled[0], raw[0]), (FORM_SCALED, FORM_RAW));
        assert_eq!((scaled.len(), raw.len()), (3 + 8 + 6 * 96, 3 + 12 * 96));
    }

    #[test]
    fn smaller_on_the_wire_plain_in_json() {
        let f = forecast((0..96).map(|k| 40.0 + k as f32 * 0.13).collect(), vec![50.0; 96], vec![60.5; 96]);
        let bytes = crate::encode(&f).unwrap();
        let plain = rmp_serde::to_vec_named(&serde_json::to_value(&f).unwrap()).unwrap();
        assert!(bytes.len() * 10 < plain.len() * 9, "{} bytes vs {} plain", bytes.len(), plain.len());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["p50"].as_array().map(Vec::len), Some(96));
        let back: TargetForecast = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn reads_the_plain_form_written_before_the_blob() {
        #[derive(Serialize)]
        struct Old<'a> {
            target: Target,
            p10: &'a [f32],
            p50: &'a [f32],
            p90: &'a [f32],
        }
        let old = rmp_serde::to_vec_named(&Old { target: Target::Cpu, p10: &[1.0], p50: &[2.0], p90: &[3.0] }).unwrap();
        let f: TargetForecast = crate::decode(&old).unwrap();
        assert_eq!((f.target, f.method, f.p10, f.p50, f.p90), (Target::Cpu, Method::Model, vec![1.0], vec![2.0], vec![3.0]));
    }

    #[test]
    fn a_broken_blob_is_a_clear_error() {
        assert!(decode(&[]).unwrap_err().contains("empty"));
        assert!(decode(&[9, 0]).unwrap_err().contains("unknown form 9"));
        assert!(decode(&[0, 1]).unwrap_err().contains("cut short"));
        let mut raw = encode(&[1.0, f32::NAN], &[2.0, 3.0], &[3.0, 4.0]);
        raw.pop();
        assert!(decode(&raw).unwrap_err().contains("bytes of f32"), "{:?}", decode(&raw));
        let mut scaled = encode(&[1.0, 2.0], &[2.0, 3.0], &[3.0, 4.0]);
        scaled.pop();
        assert!(decode(&scaled).unwrap_err().contains("u16 codes"), "{:?}", decode(&scaled));
        let mut bad_scale = encode(&[1.0], &[2.0], &[3.0]);
        bad_scale[7..11].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode(&bad_scale).unwrap_err().contains("not finite"), "{:?}", decode(&bad_scale));
    }
}
