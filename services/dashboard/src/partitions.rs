//! A partitioned fleet (`schemas::partition`): each partition's predictor publishes its own
//! snapshot on `predictions.current.<k>`. [`Partitions`] keeps the newest whole snapshot of
//! each partition and says what to show after each arrival: the [`merge`](partition::merge)
//! of the kept ones, with when each was published, so the overview can name a partition whose
//! predictor stopped ([`gaps`]). An unpartitioned snapshot is shown as it is and forgets the
//! partitions. Pure: `subscribe.rs` feeds it from NATS and installs what it returns.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::partition::{self, PartitionInfo};
use schemas::Snapshot;

/// One kept partition, as the overview reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSeen {
    pub index: u16,
    pub count: u16,
    /// When its newest snapshot was published (Unix ms, the predictor's clock).
    pub published_ms: i64,
    /// Servers in that snapshot (shown as of then).
    pub servers: usize,
}

/// What to install after a snapshot arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Install {
    pub snapshot: Snapshot,
    /// The partitions merged into `snapshot`, by index; empty for an unpartitioned one.
    pub partitions: Vec<PartitionSeen>,
}

/// Where a snapshot came from: live on the subjects, or read back from the stream at start
/// (older than anything live, so it never replaces what live messages installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Live,
    Retained,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Showing {
    #[default]
    Nothing,
    Whole,
    Merged,
}

/// The newest whole snapshot of each partition.
#[derive(Debug, Default)]
pub struct Partitions {
    newest: BTreeMap<u16, Snapshot>,
    showing: Showing,
}

/// The partition of a snapshot, `None` when it covers the whole fleet (one partition).
fn partition_of(s: &Snapshot) -> Option<PartitionInfo> {
    s.partition.filter(|p| p.count > 1)
}

impl Partitions {
    /// Takes a whole snapshot (parts already joined); returns what to show now, or `None` when
    /// it changes nothing (an older snapshot than the one kept for its partition, one of an
    /// outdated partitioning, or a retained one after live data).
    pub fn accept(&mut self, s: Snapshot, origin: Origin) -> Option<Install> {
        let Some(p) = partition_of(&s) else {
            if origin == Origin::Retained && self.showing != Showing::Nothing {
                return None;
            }
            self.newest.clear();
            self.showing = Showing::Whole;
            return Some(Install { snapshot: s, partitions: Vec::new() });
        };
        if p.index >= p.count || (origin == Origin::Retained && self.showing == Showing::Whole) {
            return None;
        }
        if self.newest.get(&p.index).is_some_and(|k| k.published_ms > s.published_ms) {
            return None;
        }
        let newest_ms = self.newest.values().map(|k| k.published_ms).max();
        let other_count = self.newest.values().any(|k| partition_of(k).map(|q| q.count) != Some(p.count));
        if other_count && newest_ms.is_some_and(|ms| ms > s.published_ms) {
            return None;
        }
        // A re-partitioned fleet: partitions beyond the new count are gone.
        self.newest.retain(|&i, _| i < p.count);
        self.newest.insert(p.index, s);
        self.showing = Showing::Merged;
        let partitions = self
            .newest
            .iter()
            .map(|(&index, k)| PartitionSeen {
                index,
                count: partition_of(k).map_or(p.count, |q| q.count),
                published_ms: k.published_ms,
                servers: k.servers.len(),
            })
            .collect();
        let snapshot = partition::merge(self.newest.values().cloned().collect())?;
        Some(Install { snapshot, partitions })
    }
}

/// A partition the merged view is short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub index: u16,
    pub count: u16,
    /// Its newest snapshot, when there is one; `None`: none seen yet.
    pub last: Option<PartitionSeen>,
}

/// How far behind the newest partition another may be before it is named: two steps (the
/// model's `step_ms`), or 10 min when the step is unknown.
pub fn lag_limit(step_ms: i64) -> Duration {
    if step_ms > 0 {
        Duration::from_millis(2 * step_ms as u64)
    } else {
        Duration::from_secs(600)
    }
}

/// The partitions to name under the merged view: those whose newest snapshot was published
/// more than [`lag_limit`] before the newest partition's, and those of the newest partitioning
/// not seen at all. Ordered by index.
pub fn gaps(seen: &[PartitionSeen], step_ms: i64) -> Vec<Gap> {
    let Some(newest) = seen.iter().max_by_key(|p| p.published_ms) else {
        return Vec::new();
    };
    let limit = i64::try_from(lag_limit(step_ms).as_millis()).unwrap_or(i64::MAX);
    (0..newest.count)
        .filter_map(|index| match seen.iter().find(|p| p.index == index) {
            None => Some(Gap { index, count: newest.count, last: None }),
            Some(p) if newest.published_ms - p.published_ms > limit => Some(Gap { index, count: newest.count, last: Some(*p) }),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Spec};

    const MIN: i64 = 60_000;

    /// Partition `index` of `count` of a 40-server fleet, published at `at`.
    fn part(index: u16, count: u16, seq: u64, at: i64) -> Snapshot {
        let mut s = fixture::partitions(&Spec { servers: 40, seq, ..Default::default() }, count).swap_remove(usize::from(index));
        s.published_ms = at;
        s
    }

    fn names(s: &Snapshot) -> Vec<&str> {
        let mut n: Vec<&str> = s.servers.iter().map(|s| s.server.as_str()).collect();
        n.sort();
        n
    }

    #[test]
    fn merges_the_newest_of_each_partition() {
        let mut k = Partitions::default();
        let a = k.accept(part(0, 2, 5, 1000), Origin::Live).unwrap();
        assert_eq!(a.snapshot.servers.len(), part(0, 2, 5, 0).servers.len(), "one partition so far");
        assert_eq!(a.partitions.len(), 1);
        let b = k.accept(part(1, 2, 7, 1200), Origin::Live).unwrap();
        let whole = fixture::snapshot(&Spec { servers: 40, seq: 5, ..Default::default() });
        assert_eq!(names(&b.snapshot), names(&whole), "every server once");
        assert_eq!((b.snapshot.seq, b.snapshot.partition, b.snapshot.fleet.servers), (12, None, 40));
        assert_eq!(b.partitions.iter().map(|p| (p.index, p.count, p.published_ms)).collect::<Vec<_>>(), [(0, 2, 1000), (1, 2, 1200)]);
        // partition 0's next snapshot replaces its previous one
        let c = k.accept(part(0, 2, 6, 1300), Origin::Live).unwrap();
        assert_eq!((c.snapshot.seq, c.snapshot.servers.len()), (13, 40));
        // an older snapshot of a partition changes nothing
        assert_eq!(k.accept(part(0, 2, 4, 900), Origin::Live), None);
    }

    #[test]
    fn repartitioning_drops_partitions_beyond_the_new_count() {
        let mut k = Partitions::default();
        for i in 0..4 {
            k.accept(part(i, 4, 1, 1000), Origin::Live);
        }
        let two = k.accept(part(0, 2, 1, 2000), Origin::Live).unwrap();
        assert_eq!(two.partitions.iter().map(|p| (p.index, p.count)).collect::<Vec<_>>(), [(0, 2), (1, 4)], "no ghosts 2 and 3");
        let done = k.accept(part(1, 2, 1, 2001), Origin::Live).unwrap();
        assert_eq!(done.snapshot.servers.len(), 40);
        // a late snapshot of the old partitioning does not bring a ghost back
        assert_eq!(k.accept(part(3, 4, 2, 1500), Origin::Live), None);
    }

    #[test]
    fn an_unpartitioned_snapshot_replaces_the_partitions() {
        let mut k = Partitions::default();
        k.accept(part(0, 2, 1, 1000), Origin::Live);
        let whole = fixture::snapshot(&Spec { servers: 10, seq: 3, ..Default::default() });
        let got = k.accept(whole.clone(), Origin::Live).unwrap();
        assert_eq!(got, Install { snapshot: whole, partitions: Vec::new() });
        // and partitions start afresh after it
        let again = k.accept(part(1, 2, 1, 3000), Origin::Live).unwrap();
        assert_eq!(again.partitions.iter().map(|p| p.index).collect::<Vec<_>>(), [1]);
        // one partition of one is the whole fleet
        let mut one = fixture::snapshot(&Spec { servers: 3, ..Default::default() });
        one.partition = Some(PartitionInfo { index: 0, count: 1 });
        assert!(k.accept(one, Origin::Live).unwrap().partitions.is_empty());
    }

    #[test]
    fn retained_snapshots_never_replace_live_ones() {
        let whole = fixture::snapshot(&Spec { servers: 10, seq: 3, ..Default::default() });
        let mut k = Partitions::default();
        assert!(k.accept(whole.clone(), Origin::Retained).is_some(), "nothing shown yet");
        assert_eq!(k.accept(whole.clone(), Origin::Retained), None);
        assert_eq!(k.accept(part(0, 2, 1, 1000), Origin::Retained), None, "live-or-retained whole fleet shown");
        // partitioned: a retained partition fills in one live data lacks (a dead predictor)...
        let mut k = Partitions::default();
        k.accept(part(0, 2, 9, 10 * MIN), Origin::Live);
        let filled = k.accept(part(1, 2, 4, MIN), Origin::Retained).unwrap();
        assert_eq!(filled.snapshot.servers.len(), 40);
        // ...but neither a retained older one of a partition already live, nor a whole one
        assert_eq!(k.accept(part(0, 2, 8, 9 * MIN), Origin::Retained), None);
        assert_eq!(k.accept(whole, Origin::Retained), None);
        let mut beyond = part(1, 2, 1, 11 * MIN);
        beyond.partition = Some(PartitionInfo { index: 7, count: 2 });
        assert!(k.accept(beyond, Origin::Live).is_none(), "index out of range");
    }

    fn seen(index: u16, count: u16, at: i64) -> PartitionSeen {
        PartitionSeen { index, count, published_ms: at, servers: 10 }
    }

    #[test]
    fn names_partitions_more_than_two_steps_behind_or_missing() {
        let step = 5 * MIN;
        assert!(gaps(&[], step).is_empty());
        let fresh = [seen(0, 3, 20 * MIN), seen(1, 3, 19 * MIN), seen(2, 3, 10 * MIN)];
        assert!(gaps(&fresh, step).is_empty(), "exactly two steps behind is not late");
        let late = [seen(0, 3, 20 * MIN), seen(1, 3, 19 * MIN), seen(2, 3, 10 * MIN - 1)];
        assert_eq!(gaps(&late, step), [Gap { index: 2, count: 3, last: Some(late[2]) }]);
        let missing = [seen(0, 3, 20 * MIN), seen(2, 3, 20 * MIN)];
        assert_eq!(gaps(&missing, step), [Gap { index: 1, count: 3, last: None }]);
        assert_eq!(lag_limit(0), Duration::from_secs(600));
        assert_eq!(lag_limit(30_000), Duration::from_secs(60));
    }
}
