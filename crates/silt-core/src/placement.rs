//! Replica placement: which brokers hold each partition of a new topic. Spreads replicas and
//! (first-replica) leaderships evenly over brokers, and over racks when brokers have them — the
//! scheme Kafka uses: brokers in rack-alternating order, the first replica of partition `p` on
//! broker `(start + p) mod n`, followers shifted by an offset that changes every `n` partitions.

use std::collections::BTreeMap;

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSlot {
    pub id: u64,
    pub rack: Option<String>,
}

/// Why no placement exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {rf} exceeds the {brokers} available brokers")]
    NotEnoughBrokers { rf: u32, brokers: usize },
    #[error("replication factor and partition count must be at least 1")]
    Empty,
}

/// Brokers ordered so that consecutive ones are on different racks where possible.
fn rack_alternating(brokers: &[BrokerSlot]) -> Vec<u64> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<u64>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                out.push(*id);
            }
        }
        round += 1;
    }
    out
}

/// Replica lists for `partitions` partitions with `rf` replicas each. `start` (e.g. derived from
/// the topic id) varies where topics begin, so leaderships of many topics spread too.
pub fn place_replicas(
    brokers: &[BrokerSlot],
    partitions: u32,
    rf: u32,
    start: u64,
) -> Result<Vec<Vec<u64>>, PlacementError> {
    if rf == 0 || partitions == 0 {
        return Err(PlacementError::Empty);
    }
    let n = brokers.len();
    if rf as usize > n {
        return Err(PlacementError::NotEnoughBrokers { rf, brokers: n });
    }
    let order = rack_alternating(brokers);
    let rack: BTreeMap<u64, Option<&str>> =
        brokers.iter().map(|b| (b.id, b.rack.as_deref())).collect();
    let racks = rack.values().collect::<std::collections::BTreeSet<_>>().len();
    let start_index = (start % n as u64) as usize;
    let mut shift = start_index;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start_index + p) % n;
        let mut replicas = vec![order[first]];
        for j in 0..(rf as usize - 1) {
            let offset = 1 + (shift + j) % (n - 1);
            // From the shifted position, take the first broker not used yet whose rack holds no
            // replica yet (while some rack holds none); as Kafka's rack-aware assignment.
            let used_racks: std::collections::BTreeSet<_> =
                replicas.iter().map(|r| rack[r]).collect();
            let all_racks_used = used_racks.len() >= racks;
            let pick = (0..n)
                .map(|k| order[(first + offset + k) % n])
                .find(|b| {
                    !replicas.contains(b) && (all_racks_used || !used_racks.contains(&rack[b]))
                })
                .or_else(|| {
                    (0..n).map(|k| order[(first + offset + k) % n]).find(|b| !replicas.contains(b))
                })
                .expect("invariant: rf <= brokers leaves a free broker");
            replicas.push(pick);
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<BrokerSlot> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| BrokerSlot { id: i as u64 + 1, rack: r.map(String::from) })
            .collect()
    }

    #[test]
    fn replicas_are_distinct_and_load_is_even() {
        let b = brokers(&[None; 5]);
        for (partitions, rf) in [(10, 3), (7, 2), (20, 5), (3, 1)] {
            let placed = place_replicas(&b, partitions, rf, 3).unwrap();
            assert_eq!(placed.len(), partitions as usize);
            let mut leaders: BTreeMap<u64, u32> = BTreeMap::new();
            let mut load: BTreeMap<u64, u32> = BTreeMap::new();
            for r in &placed {
                assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), rf as usize, "{r:?}");
                *leaders.entry(r[0]).or_default() += 1;
                for id in r {
                    *load.entry(*id).or_default() += 1;
                }
            }
            let spread = |m: &BTreeMap<u64, u32>| {
                let v: Vec<u32> = (1..=5).map(|id| m.get(&id).copied().unwrap_or(0)).collect();
                v.iter().max().unwrap() - v.iter().min().unwrap()
            };
            assert!(spread(&leaders) <= 1, "leaders {leaders:?}");
            assert!(spread(&load) <= 2, "load {load:?}");
        }
    }

    #[test]
    fn replicas_span_racks() {
        let b = brokers(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c"), Some("c")]);
        let rack_of = |id: u64| b.iter().find(|x| x.id == id).unwrap().rack.clone();
        for r in place_replicas(&b, 12, 3, 0).unwrap() {
            let racks: BTreeSet<_> = r.iter().map(|id| rack_of(*id)).collect();
            assert_eq!(racks.len(), 3, "{r:?} spans every rack");
        }
    }

    #[test]
    fn impossible_placements_are_errors() {
        let b = brokers(&[None; 2]);
        assert_eq!(
            place_replicas(&b, 3, 3, 0),
            Err(PlacementError::NotEnoughBrokers { rf: 3, brokers: 2 })
        );
        assert_eq!(place_replicas(&b, 0, 1, 0), Err(PlacementError::Empty));
        assert_eq!(place_replicas(&b, 1, 0, 0), Err(PlacementError::Empty));
    }
}
