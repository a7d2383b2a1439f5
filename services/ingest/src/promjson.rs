//! Reads a Prometheus query API answer (`vector` or `matrix`) series by series, asking a
//! caller's `keep` for each host before holding its points. Exists so an answer with far more
//! series than the fleet bound (a query that returns 100,000 hosts) costs memory for the hosts
//! kept only: a refused series is read, counted and dropped on the spot, never collected into
//! a tree of `serde_json::Value`s first.

use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Points of one series: (Unix ms, value).
pub type Points = Vec<(i64, f64)>;

/// The series kept (server name from `keep`, points) and how many series `keep` refused.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub series: Vec<(String, Points)>,
    /// Series whose host `keep` turned down.
    pub refused: u64,
    /// Series without the host label (skipped).
    pub unlabelled: u64,
}

/// Reads `{"status":"success","data":{"result":[{"metric":{..},"value":[t,"v"]} |
/// "values":[[t,"v"],..]]}}`. For each series with label `host_label`, `keep(raw value)` names
/// the server to hold its points under, or `None` to drop them. An answer whose status is not
/// `success`, or that is not this shape, is an error naming why.
pub fn parse<F>(body: &str, host_label: &str, keep: F) -> Result<Parsed, String>
where
    F: FnMut(&str) -> Option<String>,
{
    let mut de = serde_json::Deserializer::from_str(body);
    let top = Top { label: host_label, keep };
    let (status, error, data) = de.deserialize_map(top).map_err(|e| format!("not a query API answer: {e}"))?;
    if status.as_deref() != Some("success") {
        return Err(format!("status {} ({})", status.as_deref().unwrap_or("missing"), error.as_deref().unwrap_or("no error given")));
    }
    data.ok_or_else(|| "no data.result array".to_owned())
}

/// One element of `data.result`; only what is read is kept, transiently.
#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn point((t, v): (f64, String)) -> Option<(i64, f64)> {
    Some(((t * 1e3).round() as i64, v.parse::<f64>().ok()?))
}

struct Top<'k, F> {
    label: &'k str,
    keep: F,
}

impl<'de, F: FnMut(&str) -> Option<String>> Visitor<'de> for Top<'_, F> {
    type Value = (Option<String>, Option<String>, Option<Parsed>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with status and data")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut status, mut error, mut data) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => status = Some(map.next_value::<String>()?),
                "error" => error = Some(map.next_value::<String>()?),
                "data" => data = Some(map.next_value_seed(Data { label: self.label, keep: &mut self.keep })?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((status, error, data.flatten()))
    }
}

/// `data`: an object whose `result` is read by [`Result_`].
struct Data<'k, F> {
    label: &'k str,
    keep: &'k mut F,
}

impl<'de, F: FnMut(&str) -> Option<String>> DeserializeSeed<'de> for Data<'_, F> {
    type Value = Option<Parsed>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(&str) -> Option<String>> Visitor<'de> for Data<'_, F> {
    type Value = Option<Parsed>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a result array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut parsed = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "result" && parsed.is_none() {
                parsed = Some(map.next_value_seed(Result_ { label: self.label, keep: &mut *self.keep })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(parsed)
    }
}

/// `data.result`: each series read, offered to `keep`, held or dropped.
struct Result_<'k, F> {
    label: &'k str,
    keep: &'k mut F,
}

impl<'de, F: FnMut(&str) -> Option<String>> DeserializeSeed<'de> for Result_<'_, F> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&str) -> Option<String>> Visitor<'de> for Result_<'_, F> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of series")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Parsed::default();
        while let Some(s) = seq.next_element::<RawSeries>()? {
            let Some(host) = s.metric.get(self.label) else {
                out.unlabelled += 1;
                continue;
            };
            let Some(server) = (self.keep)(host) else {
                out.refused += 1;
                continue;
            };
            let points: Points = match s.value {
                Some(p) => point(p).into_iter().collect(),
                None => s.values.into_iter().filter_map(point).collect(),
            };
            out.series.push((server, points));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(raw: &str) -> Option<String> {
        Some(raw.to_owned())
    }

    #[test]
    fn parses_vectors_and_matrices() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"h1:9100"},"value":[1700000100,"12.5"]},
            {"metric":{"job":"x"},"value":[1700000100,"1"]},
            {"metric":{"instance":"h2:9100"},"value":[1700000100,"NaN"]}]}}"#;
        let p = parse(vector, "instance", all).unwrap();
        assert_eq!((p.series.len(), p.unlabelled), (2, 1));
        assert_eq!(p.series[0], ("h1:9100".to_owned(), vec![(1_700_000_100_000, 12.5)]));
        assert!(p.series[1].1[0].1.is_nan());
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"instance":"h1"},"values":[[1700000100,"1"],[1700000400,"2"]]}]}}"#;
        assert_eq!(parse(matrix, "instance", all).unwrap().series[0].1.len(), 2);
        let err = parse(r#"{"status":"error","error":"bad query"}"#, "instance", all);
        assert!(err.unwrap_err().contains("bad query"));
        assert!(parse("<html>", "instance", all).is_err());
        assert!(parse(r#"{"status":"success"}"#, "instance", all).is_err());
    }

    #[test]
    fn refused_hosts_are_counted_not_held() {
        let mut body = String::from(r#"{"status":"success","data":{"result":["#);
        for i in 0..1000 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"metric":{{"instance":"h{i}"}},"values":[[1700000100,"{i}"]]}}"#));
        }
        body.push_str("]}}");
        let mut kept = 0;
        let p = parse(&body, "instance", |h| {
            (kept < 10).then(|| {
                kept += 1;
                h.to_uppercase()
            })
        })
        .unwrap();
        assert_eq!((p.series.len(), p.refused), (10, 990));
        assert_eq!(p.series[9], ("H9".to_owned(), vec![(1_700_000_100_000, 9.0)]));
    }
}
