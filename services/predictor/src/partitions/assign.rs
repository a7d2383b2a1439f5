//! Which live predictor should hold which partition: rendezvous (highest random weight)
//! hashing (Thaler and Ravishankar, 1998). Exists so every predictor, from the same list of
//! live members, reaches the same assignment without talking to the others, and so a member
//! joining or leaving moves only the partitions it takes or gives up (about `count / members`),
//! never reshuffling the rest.
//!
//! The weight of (member, partition) is `fnv1a_32("<member>/<partition>")` mixed with
//! SplitMix64's finaliser (Steele, Lea and Flood, 2014) so that similar names spread; the
//! partition goes to the heaviest member that is not already holding its even share (ties to
//! the smaller name), so N predictors hold `count / N` each, give or take one.

use schemas::partition::fnv1a_32;

fn weight(member: &str, partition: u16) -> u64 {
    let mut z = u64::from(fnv1a_32(format!("{member}/{partition}").as_bytes())).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The member that should hold each partition (index = partition), every member holding at
/// most `ceil(count / members)`: partitions in order, each to the heaviest member with room
/// (bounded-load rendezvous; Mirrokni, Thorup and Zadimoghaddam, 2018, for the bound). Empty
/// when there are no members.
pub fn plan(members: &[String], count: u16) -> Vec<&str> {
    if members.is_empty() {
        return Vec::new();
    }
    let cap = usize::from(count).div_ceil(members.len());
    let mut load = vec![0usize; members.len()];
    (0..count)
        .map(|p| {
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|&a, &b| weight(&members[b], p).cmp(&weight(&members[a], p)).then_with(|| members[a].cmp(&members[b])));
            let pick = order.into_iter().find(|&m| load[m] < cap).unwrap_or(0);
            load[pick] += 1;
            members[pick].as_str()
        })
        .collect()
}

/// The member that should hold `partition`; `None` when there are no members.
pub fn owner(partition: u16, members: &[String], count: u16) -> Option<&str> {
    plan(members, count).get(usize::from(partition)).copied()
}

/// The partitions (0..count) `me` should hold among `members` (which should include `me`).
pub fn preferred(me: &str, members: &[String], count: u16) -> Vec<u16> {
    plan(members, count).iter().enumerate().filter(|(_, m)| **m == me).map(|(p, _)| p as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("predictor-{i}")).collect()
    }

    #[test]
    fn every_partition_has_one_owner_and_shares_are_even() {
        for (n, count) in [(2, 8), (3, 8), (4, 64), (5, 7)] {
            let members = names(n);
            let shares: Vec<Vec<u16>> = members.iter().map(|m| preferred(m, &members, count)).collect();
            let mut all: Vec<u16> = shares.concat();
            all.sort_unstable();
            assert_eq!(all, (0..count).collect::<Vec<_>>(), "each partition exactly once");
            let cap = usize::from(count).div_ceil(n);
            assert!(shares.iter().all(|s| s.len() <= cap && s.len() + n > usize::from(count) / n), "{n} x {count}: {shares:?}");
        }
        assert_eq!(owner(3, &[], 8), None);
    }

    #[test]
    fn a_member_leaving_moves_few_partitions() {
        let three = names(3);
        let two: Vec<String> = three[..2].to_vec();
        let (before, after) = (plan(&three, 60), plan(&two, 60));
        let moved_from_survivors = (0..60).filter(|&p| before[p] != "predictor-2" && before[p] != after[p]).count();
        // The leaver's 20 move; of the survivors' 40, few (only where the bound had pushed one away).
        assert!(moved_from_survivors <= 12, "{moved_from_survivors} of the survivors' partitions moved");
        // And the same list gives the same plan everywhere.
        assert_eq!(plan(&three, 60), before);
    }

    #[test]
    fn two_predictors_share_eight_partitions_four_each() {
        let members = vec!["a".to_string(), "b".to_string()];
        let (a, b) = (preferred("a", &members, 8), preferred("b", &members, 8));
        assert_eq!((a.len(), b.len()), (4, 4), "{a:?} {b:?}");
    }
}
