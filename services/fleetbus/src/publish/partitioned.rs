//! The partitioned shape of a tick (see `schemas::partition`): which records go to which
//! partition, and how each part is named within its partition. With one partition everything
//! here gives exactly the unpartitioned shape: one group (an empty tick included), parts
//! numbered over the whole tick, `metrics.batch.<source>`, ids `<run_id>.<seq>.<part>`.
//!
//! With `count > 1`:
//! - a server's records go to partition `schemas::partition::of(server, count)`, subject
//!   `metrics.batch.<source>.<partition>`; each partition present in the tick is its own batch
//!   (same `seq` and `clock_ms`), split at max_payload on its own;
//! - `Fleetcast-Part` counts the parts of that partition (`1/n` .. `n/n`), so each partition's
//!   consumer sees its own last part;
//! - `Nats-Msg-Id` is `<run_id>.<seq>.p<partition>.<part>`, unique per partition.
//!
//! A tick with no records at all is an empty batch on every partition, as it is one empty
//! batch unpartitioned: every consumer still sees the source's clock advance.

use bytes::Bytes;
use schemas::{partition, MetricRecord};

/// One encoded batch of a tick and the partition it is published to.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub partition: u16,
    pub bytes: Bytes,
}

/// The tick's records grouped by partition, partitions ascending, each group's records in the
/// order given. Partitions without records are left out, unless the tick has none at all.
pub(super) fn group(records: Vec<MetricRecord>, count: u16) -> Vec<(u16, Vec<MetricRecord>)> {
    if count <= 1 {
        return vec![(0, records)];
    }
    if records.is_empty() {
        return (0..count).map(|p| (p, Vec::new())).collect();
    }
    let mut groups: Vec<Vec<MetricRecord>> = (0..count).map(|_| Vec::new()).collect();
    for r in records {
        groups[usize::from(partition::of(&r.server, count))].push(r);
    }
    groups.into_iter().enumerate().filter(|(_, g)| !g.is_empty()).map(|(p, g)| (p as u16, g)).collect()
}

/// For each part, its 0-based index among the parts of its partition and how many parts that
/// partition has (the two numbers of `Fleetcast-Part`, and the last token of the message id).
pub(super) fn label(parts: &[Part], count: u16) -> Vec<(usize, usize)> {
    let slots = usize::from(count.max(1));
    let slot = |p: &Part| usize::from(p.partition).min(slots - 1);
    let mut totals = vec![0usize; slots];
    let index: Vec<usize> = parts
        .iter()
        .map(|p| {
            totals[slot(p)] += 1;
            totals[slot(p)] - 1
        })
        .collect();
    parts.iter().zip(index).map(|(p, i)| (i, totals[slot(p)])).collect()
}

/// `Nats-Msg-Id` of part `index` of `partition`: `<run_id>.<seq>.<index>` with one partition,
/// `<run_id>.<seq>.p<partition>.<index>` with more.
pub(super) fn message_id(run_id: &str, seq: u64, partition: u16, count: u16, index: usize) -> String {
    if count <= 1 {
        format!("{run_id}.{seq}.{index}")
    } else {
        format!("{run_id}.{seq}.p{partition}.{index}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::Metrics;

    fn rec(server: &str) -> MetricRecord {
        MetricRecord { server: server.into(), ts_ms: 0, profile: None, metrics: Metrics::default() }
    }

    #[test]
    fn one_partition_is_the_whole_tick() {
        let recs: Vec<MetricRecord> = (0..5).map(|i| rec(&format!("s{i}"))).collect();
        assert_eq!(group(recs.clone(), 1), vec![(0, recs.clone())]);
        assert_eq!(group(recs.clone(), 0), vec![(0, recs)]);
        assert_eq!(group(Vec::new(), 1), vec![(0, Vec::new())]);
        assert_eq!(message_id("run", 7, 0, 1, 2), "run.7.2");
    }

    #[test]
    fn records_go_to_their_partition_in_order() {
        let recs: Vec<MetricRecord> = (0..200).map(|i| rec(&format!("ppweb{i:04}"))).collect();
        let groups = group(recs.clone(), 4);
        assert!(groups.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(groups.iter().map(|(_, g)| g.len()).sum::<usize>(), 200);
        for (p, g) in &groups {
            assert!(!g.is_empty());
            assert!(g.iter().all(|r| partition::of(&r.server, 4) == *p));
            let expected: Vec<&MetricRecord> = recs.iter().filter(|r| partition::of(&r.server, 4) == *p).collect();
            assert_eq!(g.iter().collect::<Vec<_>>(), expected);
        }
        // Only the partitions present; an empty tick reaches every partition.
        let one = rec("ppweb0001");
        assert_eq!(group(vec![one.clone()], 4), vec![(partition::of("ppweb0001", 4), vec![one])]);
        assert_eq!(group(Vec::new(), 3).iter().map(|(p, g)| (*p, g.len())).collect::<Vec<_>>(), [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(message_id("run", 7, 3, 4, 2), "run.7.p3.2");
    }

    #[test]
    fn parts_are_counted_per_partition() {
        let part = |partition| Part { partition, bytes: Bytes::new() };
        let parts = [part(0), part(0), part(2), part(0), part(2), part(3)];
        assert_eq!(label(&parts, 4), [(0, 3), (1, 3), (0, 2), (2, 3), (1, 2), (0, 1)]);
        assert_eq!(label(&parts[..2], 1), [(0, 2), (1, 2)]);
    }
}
