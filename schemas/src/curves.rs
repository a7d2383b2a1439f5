//! The wire form of a [`TargetForecast`]: its three curves as one binary blob.
//!
//! A snapshot is mostly forecast curves (8 targets x 3 quantiles x 96 steps per server).
//! MessagePack writes each `f32` as its own 5-byte item, which serde visits one by one; as one
//! `bin` of little-endian `f32` the curves take 20 % fewer bytes and encode as a copy, which
//! matters because the predictor encodes every server's forecast every tick. Lossless: the
//! values are the model's, bit for bit. Human-readable formats (JSON) keep the plain
//! `{target, p10, p50, p90}`, and readers take either form, so snapshots written before this
//! change still decode.
//!
//! Blob layout: byte 0 is the form, 0 = raw; then `n: u16` and the `3n` values as `f32`
//! (P10 curve, P50, P90), all little-endian. Other forms are reserved and rejected.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::method::Method;
use crate::metric::Target;
use crate::snapshot::TargetForecast;

const FORM_RAW: u8 = 0;

/// Encodes three curves of equal length `n` (at most `u16::MAX` values each; longer are cut).
pub fn encode(p10: &[f32], p50: &[f32], p90: &[f32]) -> Vec<u8> {
    let n = p10.len().min(p50.len()).min(p90.len()).min(u16::MAX as usize);
    let mut out = Vec::with_capacity(3 + 12 * n);
    out.push(FORM_RAW);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    for c in [&p10[..n], &p50[..n], &p90[..n]] {
        for v in c {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes [`encode`]'s blob into (p10, p50, p90); the error says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<[Vec<f32>; 3], String> {
    let (form, rest) = bytes.split_first().ok_or("empty curves blob")?;
    if *form != FORM_RAW {
        return Err(format!("curves blob: unknown form {form}"));
    }
    let (n, body) = match rest {
        [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]) as usize, body),
        _ => return Err("curves blob: header cut short".into()),
    };
    if body.len() != 12 * n {
        return Err(format!("curves blob: {} bytes of f32 for 3 x {n} values", body.len()));
    }
    let value = |k: usize| f32::from_le_bytes([body[4 * k], body[4 * k + 1], body[4 * k + 2], body[4 * k + 3]]);
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
        /// Bit for bit, whatever the values (NaN and infinities included).
        #[test]
        fn round_trip_is_exact(bits in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..120)) {
            let f = forecast(
                bits.iter().map(|b| f32::from_bits(b.0)).collect(),
                bits.iter().map(|b| f32::from_bits(b.1)).collect(),
                bits.iter().map(|b| f32::from_bits(b.2)).collect(),
            );
            let back = round_trip(&f);
            let as_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(as_bits(&back.p10), as_bits(&f.p10));
            prop_assert_eq!(as_bits(&back.p50), as_bits(&f.p50));
            prop_assert_eq!(as_bits(&back.p90), as_bits(&f.p90));
        }
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
        let mut good = encode(&[1.0, 2.0], &[2.0, 3.0], &[3.0, 4.0]);
        good.pop();
        assert!(decode(&good).unwrap_err().contains("bytes of f32"), "{:?}", decode(&good));
    }
}
