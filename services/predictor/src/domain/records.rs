//! Each server's method record ([`ServerScore`] per method and target, what `select.rs`
//! chooses the published forecast by) laid out for KV `state`, so that a restarted predictor,
//! or a standby taking a partition over, publishes each server's proven method at once instead
//! of the default one until the others prove themselves again (an hour or more of steps).
//!
//! Records are saved in [`SLICES`] slices, one per tick in turn: slice `s` holds the servers
//! whose registry id is `s` modulo [`SLICES`] and is written on ticks whose `seq` is `s` modulo
//! [`SLICES`], so every record is at most an hour of steps old and a tick writes a twelfth of
//! them (about 1.3 KB a server: 100,000 servers take about 11 MB a tick, 10,000 about 1.1 MB).
//! A record's decay is a day's half-life, so an hour's lag changes little; a graceful stop
//! saves every slice (`consume.rs`), so a rolling restart loses none of it.
//!
//! A server's id can differ between two predictors' registries, so one server can sit in two
//! slices written by two holders; [`merge`] lets the newest slice win.

use schemas::{Method, TARGET_COUNT};
use serde::{Deserialize, Serialize};

use crate::accuracy::ServerScore;

/// Slices the records are saved in, one per tick: an hour of 5-minute steps.
pub const SLICES: u64 = 12;

/// One server's record: per [`Method::ALL`] entry, per [`schemas::Target::ALL`] entry.
pub type Record = [[ServerScore; TARGET_COUNT]; Method::ALL.len()];

/// One slice, MessagePack map. `methods` names the order of each server's rows by wire name
/// ([`Method::name`]), so a build with other methods restores the ones it shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// The tick it was saved after (Unix ms).
    pub tick_ms: i64,
    pub methods: Vec<String>,
    pub servers: Vec<SavedRecord>,
}

/// One server in a [`Slice`]: `scores` holds `methods.len() × TARGET_COUNT` rows of
/// `[loss50, loss90, weight, near50, near90]` (see [`ServerScore`]), method by method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRecord {
    pub server: String,
    pub scores: Vec<[f32; 5]>,
}

/// The slice of `records` (`(server, record)`) saved after tick `tick_ms`. A record nothing
/// was scored for is left out; a non-finite figure is saved as 0 (nothing scored).
pub fn slice<'a>(tick_ms: i64, records: impl IntoIterator<Item = (&'a str, Record)>) -> Slice {
    let servers = records
        .into_iter()
        .filter(|(_, r)| r.iter().flatten().any(|s| s.weight > 0.0))
        .map(|(server, r)| SavedRecord { server: server.to_string(), scores: r.iter().flatten().map(row).collect() })
        .collect();
    Slice { tick_ms, methods: Method::ALL.iter().map(|m| m.name().to_string()).collect(), servers }
}

fn row(s: &ServerScore) -> [f32; 5] {
    [s.loss50, s.loss90, s.weight, s.near50, s.near90].map(|x| if x.is_finite() { x } else { 0.0 })
}

/// Every server's record in `slices`, newest slice last so that it wins; methods this build
/// lacks are skipped, and a server whose rows do not match its slice's methods, or that carry
/// a negative or non-finite figure, is skipped whole and counted in the second value.
pub fn merge(mut slices: Vec<Slice>) -> (Vec<(String, Record)>, usize) {
    slices.sort_by_key(|s| s.tick_ms);
    let mut out: std::collections::HashMap<String, Record> = std::collections::HashMap::new();
    let mut skipped = 0;
    for slice in slices {
        let index: Vec<Option<usize>> = slice.methods.iter().map(|n| Method::from_name(n).map(Method::index)).collect();
        for saved in slice.servers {
            match record(&index, &saved.scores) {
                Some(r) => {
                    out.insert(saved.server, r);
                }
                None => skipped += 1,
            }
        }
    }
    let mut out: Vec<_> = out.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, skipped)
}

fn record(index: &[Option<usize>], rows: &[[f32; 5]]) -> Option<Record> {
    if rows.len() != index.len() * TARGET_COUNT || rows.iter().flatten().any(|x| !(x.is_finite() && *x >= 0.0)) {
        return None;
    }
    let mut r = Record::default();
    for (method, rows) in index.iter().zip(rows.chunks(TARGET_COUNT)) {
        if let Some(m) = method {
            for (s, &[loss50, loss90, weight, near50, near90]) in r[*m].iter_mut().zip(rows) {
                *s = ServerScore { loss50, loss90, weight, near50, near90 };
            }
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(seed: f32) -> Record {
        let mut r = Record::default();
        r[Method::SeasonalNaive.index()][1] = ServerScore { loss50: seed, loss90: 2.0, weight: 5.0, near50: 0.5, near90: 0.25 };
        r[Method::Model.index()][0] = ServerScore { loss50: 9.0, loss90: 8.0, weight: 5.0, near50: 1.0, near90: 1.0 };
        r
    }

    #[test]
    fn a_slice_round_trips_through_messagepack_and_leaves_out_unscored_servers() {
        let (a, idle) = (scored(1.0), Record::default());
        let s = slice(1_000, [("web1", a), ("idle1", idle)]);
        let back: Slice = schemas::decode(&schemas::encode(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(merge(vec![back]), (vec![("web1".to_string(), a)], 0));
    }

    #[test]
    fn the_newest_slice_wins_whatever_order_they_are_read_in() {
        let (old, new) = (scored(1.0), scored(7.0));
        let slices = vec![slice(2_000, [("web1", new)]), slice(1_000, [("web1", old)])];
        assert_eq!(merge(slices).0, vec![("web1".to_string(), new)]);
    }

    #[test]
    fn unknown_methods_are_skipped_and_bad_rows_skip_their_server() {
        let a = scored(3.0);
        let mut s = slice(1_000, [("web1", a)]);
        // A build that had one more method, first: every known row moves one method down.
        s.methods.insert(0, "retired".into());
        s.servers[0].scores.splice(0..0, [[4.0; 5]; TARGET_COUNT]);
        let mut bad = s.servers[0].clone();
        bad.server = "web2".into();
        bad.scores[TARGET_COUNT][0] = f32::NAN;
        let mut short = s.servers[0].clone();
        short.server = "web3".into();
        short.scores.pop();
        s.servers.extend([bad, short]);
        assert_eq!(merge(vec![s]), (vec![("web1".to_string(), a)], 2));
    }

    #[test]
    fn a_non_finite_figure_is_saved_as_nothing_scored() {
        let mut a = scored(1.0);
        a[Method::Model.index()][0].loss50 = f32::INFINITY;
        let s = slice(1_000, [("web1", a)]);
        assert!(s.servers[0].scores.iter().flatten().all(|x| x.is_finite()));
    }
}
