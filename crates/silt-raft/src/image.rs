//! The cluster image: what the metadata quorum agrees on — brokers, topics, partitions (replicas,
//! leader, leader epoch, partition epoch, ISR), topic configs, producer-id blocks — and the
//! commands that change it. `apply` is pure and deterministic: every broker applies the same
//! committed commands in the same order and reaches the same image.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use crate::rejection::Rejection;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: u64,
    pub address: String,
    /// Where its internal services (Raft, controller, replication) listen; empty in entries
    /// written before they had their own port (then: `address` with port + 2).
    #[serde(default)]
    pub internal_address: String,
    pub rack: Option<String>,
    /// Bumped at every registration, so a restarted broker's stale requests can be refused.
    pub epoch: u64,
    /// A fenced broker leads nothing and is not in any ISR it could be removed from.
    pub fenced: bool,
    /// Random per process start: a registration with another incarnation is a restart, and
    /// the previous process's roles die with it. 0 in entries written before incarnations.
    #[serde(default)]
    pub incarnation: u64,
    /// In controlled shutdown: leads nothing it can hand over, is in no ISR it can leave, and
    /// may not rejoin one until it registers again.
    #[serde(default)]
    pub shutting_down: bool,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Replica broker ids; the first is the preferred leader.
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
    /// Bumped at every leader change.
    pub leader_epoch: u32,
    /// Bumped at every change of leader or ISR (fences stale `AlterPartition` requests).
    pub partition_epoch: u32,
    pub isr: Vec<u64>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: u64,
    /// Random 128-bit id (32 hex digits) chosen when the topic is created (KIP-516): a topic
    /// deleted and created again under the same name is another topic. Empty in entries written
    /// before topic ids; [`TopicImage::topic_id`] then derives one from `id`.
    #[serde(default)]
    pub uuid: String,
    /// Config overrides with Kafka's key names.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    /// The id partition directories are stamped with (`partition.metadata`).
    pub fn topic_id(&self) -> String {
        if self.uuid.is_empty() { format!("{:032x}", self.id) } else { self.uuid.clone() }
    }

    fn unclean_allowed(&self) -> bool {
        self.configs.get("unclean.leader.election.enable").is_some_and(|v| v == "true")
    }
}

/// The whole replicated metadata state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    pub brokers: BTreeMap<u64, BrokerRecord>,
    pub topics: BTreeMap<String, TopicImage>,
    pub next_topic_id: u64,
    pub next_broker_epoch: u64,
    pub next_producer_id: i64,
}

/// A change to the image, proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker (re)starts: new epoch, unfenced; partitions waiting for it get a leader. A new
    /// incarnation is first treated as the previous one's death (as a fence): it leaves every
    /// ISR and its leaderships move, in the same entry, so a restarted process never inherits
    /// roles it cannot vouch for.
    RegisterBroker {
        id: u64,
        address: String,
        #[serde(default)]
        internal_address: String,
        rack: Option<String>,
        #[serde(default)]
        incarnation: u64,
    },
    /// A broker missed its session: it leads nothing and leaves ISRs (never emptying one).
    FenceBroker {
        id: u64,
        epoch: u64,
    },
    /// Controlled shutdown: move every leadership of `id` to another in-sync replica.
    MoveLeadershipAway {
        id: u64,
        epoch: u64,
    },
    CreateTopic {
        name: String,
        assignment: Vec<Vec<u64>>,
        configs: BTreeMap<String, String>,
        /// The topic's random id (see [`TopicImage::uuid`]), drawn by the proposer.
        #[serde(default)]
        uuid: String,
    },
    DeleteTopic {
        name: String,
    },
    AlterTopicConfig {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A leader changes its ISR; refused unless its leader and partition epochs are current.
    AlterPartition {
        topic: String,
        partition: u32,
        leader: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u64>,
        /// Broker epochs of the members the change adds, as the leader saw them fetch
        /// (KIP-903): a member whose registration changed since is refused.
        #[serde(default)]
        member_epochs: BTreeMap<u64, u64>,
    },
    AllocateProducerIds {
        broker: u64,
        count: u32,
    },
    /// A replica found its log damaged or its tail lost on restart: it leaves the ISR (unless
    /// it is the last member: then there is no better copy) and gives up leadership, so it is not
    /// elected before it has caught up from the others and rejoined.
    ReportDamagedReplica {
        broker: u64,
        epoch: u64,
        topic: String,
        partition: u32,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Done,
    BrokerEpoch(u64),
    TopicId(u64),
    /// The new partition epoch after an accepted `AlterPartition`.
    PartitionEpoch(u32),
    ProducerIds {
        start: i64,
        count: u32,
    },
    /// The command was refused; the image is unchanged.
    Rejected(Rejection),
}

/// The leader to elect: the first replica (in replica order) that is in the ISR and not fenced;
/// with `unclean`, failing that, the first unfenced replica at all.
pub fn elect_leader(
    replicas: &[u64],
    isr: &[u64],
    fenced: impl Fn(u64) -> bool,
    unclean: bool,
) -> Option<u64> {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && !fenced(*r))
        .or_else(|| if unclean { replicas.iter().copied().find(|r| !fenced(*r)) } else { None })
}

impl ClusterImage {
    /// Applies one committed command.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match cmd {
            Command::RegisterBroker { id, address, internal_address, rack, incarnation } => {
                if let Some(b) = self.brokers.get_mut(id)
                    && b.incarnation != *incarnation
                    && !b.fenced
                {
                    b.fenced = true;
                    self.fence_partitions(*id);
                }
                self.next_broker_epoch += 1;
                let epoch = self.next_broker_epoch;
                self.brokers.insert(
                    *id,
                    BrokerRecord {
                        id: *id,
                        address: address.clone(),
                        internal_address: internal_address.clone(),
                        rack: rack.clone(),
                        epoch,
                        fenced: false,
                        incarnation: *incarnation,
                        shutting_down: false,
                    },
                );
                self.elect_leaderless();
                CommandResponse::BrokerEpoch(epoch)
            }
            Command::FenceBroker { id, epoch } => match self.brokers.get_mut(id) {
                Some(b) if b.epoch == *epoch => {
                    b.fenced = true;
                    self.fence_partitions(*id);
                    CommandResponse::Done
                }
                Some(b) => CommandResponse::Rejected(Rejection::StaleBrokerEpoch {
                    id: *id,
                    epoch: *epoch,
                    current: b.epoch,
                }),
                None => CommandResponse::Rejected(Rejection::UnknownBroker { id: *id }),
            },
            Command::MoveLeadershipAway { id, epoch } => match self.brokers.get_mut(id) {
                Some(b) if b.epoch == *epoch => {
                    b.shutting_down = true;
                    self.move_leaders(*id);
                    CommandResponse::Done
                }
                Some(b) => CommandResponse::Rejected(Rejection::StaleBrokerEpoch {
                    id: *id,
                    epoch: *epoch,
                    current: b.epoch,
                }),
                None => CommandResponse::Rejected(Rejection::UnknownBroker { id: *id }),
            },
            Command::CreateTopic { name, assignment, configs, uuid } => {
                if self.topics.contains_key(name) {
                    return CommandResponse::Rejected(Rejection::TopicExists {
                        topic: name.clone(),
                    });
                }
                if assignment.is_empty()
                    || assignment
                        .iter()
                        .any(|r| r.is_empty() || r.iter().collect::<BTreeSet<_>>().len() != r.len())
                {
                    return CommandResponse::Rejected(Rejection::InvalidAssignment {
                        topic: name.clone(),
                    });
                }
                self.next_topic_id += 1;
                let id = self.next_topic_id;
                let partitions = assignment
                    .iter()
                    .map(|replicas| {
                        let leader = elect_leader(replicas, replicas, |b| self.is_fenced(b), false);
                        // Fenced replicas start out of the ISR: they join by catching up.
                        let live: Vec<u64> =
                            replicas.iter().copied().filter(|b| !self.is_fenced(*b)).collect();
                        PartitionImage {
                            replicas: replicas.clone(),
                            leader,
                            leader_epoch: 0,
                            partition_epoch: 0,
                            isr: if live.is_empty() { replicas.clone() } else { live },
                        }
                    })
                    .collect();
                let topic =
                    TopicImage { id, uuid: uuid.clone(), configs: configs.clone(), partitions };
                self.topics.insert(name.clone(), topic);
                CommandResponse::TopicId(id)
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => CommandResponse::Done,
                None => CommandResponse::Rejected(Rejection::UnknownTopic { topic: name.clone() }),
            },
            Command::AlterTopicConfig { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    CommandResponse::Done
                }
                None => CommandResponse::Rejected(Rejection::UnknownTopic { topic: name.clone() }),
            },
            Command::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
                member_epochs,
            } => {
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(rejected) => return rejected,
                };
                if p.leader != Some(*leader)
                    || p.leader_epoch != *leader_epoch
                    || p.partition_epoch != *partition_epoch
                {
                    return CommandResponse::Rejected(Rejection::StaleEpochs {
                        topic: topic.clone(),
                        partition: *partition,
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        current_leader: p.leader,
                        current_leader_epoch: p.leader_epoch,
                        current_partition_epoch: p.partition_epoch,
                    });
                }
                if !isr.contains(leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
                    return CommandResponse::Rejected(Rejection::InvalidIsr {
                        topic: topic.clone(),
                        partition: *partition,
                        isr: isr.clone(),
                    });
                }
                // KIP-841: only live brokers join an ISR; a fenced or stopping one still
                // fetching must not become electable.
                let joining: Vec<u64> =
                    isr.iter().copied().filter(|r| !p.isr.contains(r)).collect();
                if let Some(r) = joining.into_iter().find(|r| {
                    self.brokers.get(r).is_none_or(|b| {
                        b.fenced
                            || b.shutting_down
                            || member_epochs.get(r).is_some_and(|e| *e != b.epoch)
                    })
                }) {
                    return CommandResponse::Rejected(Rejection::IneligibleReplica { broker: r });
                }
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(rejected) => return rejected,
                };
                p.isr = isr.clone();
                p.partition_epoch += 1;
                CommandResponse::PartitionEpoch(p.partition_epoch)
            }
            Command::ReportDamagedReplica { broker, epoch, topic, partition } => {
                match self.brokers.get(broker) {
                    None => {
                        return CommandResponse::Rejected(Rejection::UnknownBroker { id: *broker });
                    }
                    Some(b) if b.epoch != *epoch => {
                        return CommandResponse::Rejected(Rejection::StaleBrokerEpoch {
                            id: *broker,
                            epoch: *epoch,
                            current: b.epoch,
                        });
                    }
                    Some(_) => {}
                }
                let fenced = self.fenced_ids();
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(rejected) => return rejected,
                };
                if !p.isr.contains(broker) || p.isr.len() == 1 {
                    return CommandResponse::Done;
                }
                p.isr.retain(|r| r != broker);
                if p.leader == Some(*broker) {
                    p.leader = elect_leader(
                        &p.replicas,
                        &p.isr,
                        |b| b == *broker || fenced.contains(&b),
                        false,
                    );
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
                CommandResponse::PartitionEpoch(p.partition_epoch)
            }
            Command::AllocateProducerIds { broker, count } => {
                if !self.brokers.contains_key(broker) {
                    return CommandResponse::Rejected(Rejection::UnknownBroker { id: *broker });
                }
                if *count == 0 {
                    return CommandResponse::Rejected(Rejection::EmptyProducerIdBlock {
                        broker: *broker,
                    });
                }
                let start = self.next_producer_id;
                self.next_producer_id += i64::from(*count);
                CommandResponse::ProducerIds { start, count: *count }
            }
        }
    }

    /// The partition a command names, or the command's rejection.
    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionImage, CommandResponse> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| {
                CommandResponse::Rejected(Rejection::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                })
            })
    }

    /// The ids of the fenced brokers.
    fn fenced_ids(&self) -> BTreeSet<u64> {
        self.brokers.values().filter(|b| b.fenced).map(|b| b.id).collect()
    }

    /// Whether broker `id` is fenced or unknown.
    pub fn is_fenced(&self, id: u64) -> bool {
        self.brokers.get(&id).is_none_or(|b| b.fenced)
    }

    fn fence_partitions(&mut self, id: u64) {
        let fenced = self.fenced_ids();
        for t in self.topics.values_mut() {
            let unclean = t.unclean_allowed();
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.contains(&id) && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    changed = true;
                }
                if p.leader == Some(id) {
                    p.leader = elect_leader(&p.replicas, &p.isr, |b| fenced.contains(&b), unclean);
                    if let Some(l) = p.leader
                        && !p.isr.contains(&l)
                    {
                        p.isr = vec![l]; // unclean election: the new leader's log is the truth
                    }
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Controlled shutdown of `id`: its leaderships go to other in-sync replicas, and it leaves
    /// every ISR it is not the last member of, so acks=all writes stop waiting for it at once.
    fn move_leaders(&mut self, id: u64) {
        let mut fenced = self.fenced_ids();
        fenced.insert(id);
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let mut changed = false;
                if p.leader == Some(id)
                    && let Some(l) =
                        elect_leader(&p.replicas, &p.isr, |b| fenced.contains(&b), false)
                {
                    p.leader = Some(l);
                    p.leader_epoch += 1;
                    changed = true;
                }
                if p.leader != Some(id) && p.isr.contains(&id) && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn elect_leaderless(&mut self) {
        let fenced = self.fenced_ids();
        let known: BTreeSet<u64> = self.brokers.keys().copied().collect();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader.is_none()
                    && let Some(l) = elect_leader(
                        &p.replicas,
                        &p.isr,
                        |b| fenced.contains(&b) || !known.contains(&b),
                        false,
                    )
                {
                    p.leader = Some(l);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(id: u64, incarnation: u64) -> Command {
        Command::RegisterBroker {
            id,
            address: format!("b{id}:9300"),
            internal_address: String::new(),
            rack: None,
            incarnation,
        }
    }

    #[test]
    fn a_new_incarnation_is_the_old_ones_death() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 1, 3], vec![1]]);
        let before = img.topics["t"].partitions.clone();
        // Broker 1 restarts within its session: a new process, so a new incarnation.
        img.apply(&register(1, 999));
        let ps = &img.topics["t"].partitions;
        assert_eq!((ps[0].leader, ps[0].leader_epoch), (Some(2), before[0].leader_epoch + 1));
        assert_eq!(ps[0].isr, vec![2, 3], "rejoins only by catching up");
        assert_eq!((ps[1].leader, ps[1].leader_epoch), (Some(2), before[1].leader_epoch));
        assert_eq!(ps[1].isr, vec![2, 3]);
        assert!(ps[1].partition_epoch > before[1].partition_epoch);
        // Its only copy: led again, but at a new leader epoch.
        assert_eq!(ps[2].leader, Some(1));
        assert!(ps[2].leader_epoch > before[2].leader_epoch);
        let b = &img.brokers[&1];
        assert!(!b.fenced);
        assert_eq!(b.incarnation, 999);
    }

    #[test]
    fn re_registering_the_same_incarnation_moves_nothing() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3]]);
        let before = img.topics["t"].partitions.clone();
        img.apply(&register(1, 100));
        assert_eq!(img.topics["t"].partitions, before);
        assert!(img.brokers[&1].epoch > 3, "a new broker epoch all the same");
    }

    #[test]
    fn entries_without_an_incarnation_still_decode() {
        let c: Command =
            serde_json::from_str(r#"{"RegisterBroker":{"id":1,"address":"a","rack":null}}"#)
                .unwrap();
        assert_eq!(
            c,
            Command::RegisterBroker {
                id: 1,
                address: "a".into(),
                internal_address: String::new(),
                rack: None,
                incarnation: 0
            }
        );
    }

    fn image_with_brokers(ids: &[u64]) -> ClusterImage {
        let mut img = ClusterImage::default();
        for &id in ids {
            img.apply(&register(id, id * 100));
        }
        img
    }

    fn create(img: &mut ClusterImage, name: &str, assignment: Vec<Vec<u64>>) {
        let r = img.apply(&Command::CreateTopic {
            name: name.into(),
            assignment,
            configs: BTreeMap::new(),
            uuid: String::new(),
        });
        assert!(matches!(r, CommandResponse::TopicId(_)), "{r:?}");
    }

    fn epoch(img: &ClusterImage, id: u64) -> u64 {
        img.brokers[&id].epoch
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_with_a_higher_epoch() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        assert_eq!(img.topics["t"].partitions[0].leader, Some(1));
        let e = epoch(&img, 1);
        assert_eq!(img.apply(&Command::FenceBroker { id: 1, epoch: e }), CommandResponse::Done);
        let p0 = &img.topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch, p0.isr.clone()), (Some(2), 1, vec![2, 3]));
        let p1 = &img.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (Some(2), 0, vec![2, 3]),
            "only the ISR changed"
        );
        assert!(p1.partition_epoch > 0);
    }

    #[test]
    fn the_last_isr_member_stays_and_no_unclean_election_happens_by_default() {
        let mut img = image_with_brokers(&[1, 2]);
        create(&mut img, "t", vec![vec![1, 2]]);
        let isr_only_1 = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1],
            member_epochs: Default::default(),
        };
        assert_eq!(img.apply(&isr_only_1), CommandResponse::PartitionEpoch(1));
        let e = epoch(&img, 1);
        img.apply(&Command::FenceBroker { id: 1, epoch: e });
        let p = &img.topics["t"].partitions[0];
        assert_eq!(
            (p.leader, p.isr.clone()),
            (None, vec![1]),
            "waits for broker 1 instead of losing data"
        );
        // Broker 1 comes back: it leads again, with a new epoch.
        img.apply(&register(1, 777));
        let p = &img.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let mut img = image_with_brokers(&[1, 2]);
        let configs =
            BTreeMap::from([("unclean.leader.election.enable".to_string(), "true".to_string())]);
        img.apply(&Command::CreateTopic {
            name: "u".into(),
            assignment: vec![vec![1, 2]],
            configs,
            uuid: String::new(),
        });
        img.apply(&Command::AlterPartition {
            topic: "u".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1],
            member_epochs: Default::default(),
        });
        let e = epoch(&img, 1);
        img.apply(&Command::FenceBroker { id: 1, epoch: e });
        let p = &img.topics["u"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2]));
    }

    #[test]
    fn stale_alter_partition_requests_are_fenced() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3]]);
        let e = epoch(&img, 1);
        img.apply(&Command::FenceBroker { id: 1, epoch: e });
        // The old leader (zombie) tries to shrink the ISR with its old epochs.
        let zombie = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1],
            member_epochs: Default::default(),
        };
        assert!(matches!(
            img.apply(&zombie),
            CommandResponse::Rejected(Rejection::StaleEpochs {
                leader: 1,
                current_leader: Some(2),
                ..
            })
        ));
        let p = img.topics["t"].partitions[0].clone();
        let bad_isr = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![3],
            member_epochs: Default::default(),
        };
        assert!(
            matches!(img.apply(&bad_isr), CommandResponse::Rejected(Rejection::InvalidIsr { .. })),
            "the ISR must hold the leader"
        );
        let ok = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![2, 3, 1],
            member_epochs: Default::default(),
        };
        assert!(
            matches!(
                img.apply(&ok),
                CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 1 })
            ),
            "a fenced broker does not rejoin (KIP-841)"
        );
        img.apply(&register(1, 100));
        let p = img.topics["t"].partitions[0].clone();
        let ok = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![2, 3, 1],
            member_epochs: Default::default(),
        };
        assert_eq!(img.apply(&ok), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
        // A fence with an old broker epoch (the broker re-registered since) is refused.
        assert!(matches!(
            img.apply(&Command::FenceBroker { id: 1, epoch: e }),
            CommandResponse::Rejected(Rejection::StaleBrokerEpoch { id: 1, .. })
        ));
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_to_in_sync_replicas() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3], vec![1, 3, 2], vec![2, 1, 3]]);
        let e = epoch(&img, 1);
        img.apply(&Command::MoveLeadershipAway { id: 1, epoch: e });
        let leaders: Vec<_> = img.topics["t"].partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, [Some(2), Some(3), Some(2)]);
        let p2 = &img.topics["t"].partitions[2];
        assert_eq!(p2.leader_epoch, 0, "partitions led elsewhere keep their leader epoch");
        for p in &img.topics["t"].partitions {
            assert!(!p.isr.contains(&1), "the stopping broker left the ISR: {:?}", p.isr);
        }
        // Still fetching until it exits, it may not rejoin; after registering again it may.
        let p = img.topics["t"].partitions[2].clone();
        let rejoin = Command::AlterPartition {
            topic: "t".into(),
            partition: 2,
            leader: 2,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![2, 3, 1],
            member_epochs: Default::default(),
        };
        assert!(matches!(
            img.apply(&rejoin),
            CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 1 })
        ));
        img.apply(&register(1, 555));
        assert_eq!(img.apply(&rejoin), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
    }

    #[test]
    fn a_member_seen_fetching_under_an_older_registration_cannot_join() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3]]);
        let old = epoch(&img, 3);
        img.apply(&register(3, 999)); // a new process: out of the ISR, a new broker epoch
        let new = epoch(&img, 3);
        let p = img.topics["t"].partitions[0].clone();
        assert_eq!(p.isr, vec![1, 2]);
        let add3 = |e: u64| Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2, 3],
            member_epochs: BTreeMap::from([(3, e)]),
        };
        assert!(matches!(img.apply(&add3(old)), CommandResponse::Rejected(_)));
        assert_eq!(img.apply(&add3(new)), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
    }

    #[test]
    fn a_fenced_broker_cannot_join_an_isr() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3]]);
        let e = epoch(&img, 3);
        img.apply(&Command::FenceBroker { id: 3, epoch: e });
        let p = img.topics["t"].partitions[0].clone();
        assert_eq!(p.isr, vec![1, 2]);
        let add3 = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2, 3],
            member_epochs: Default::default(),
        };
        assert!(matches!(
            img.apply(&add3),
            CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 3 })
        ));
    }

    #[test]
    fn topics_and_producer_ids() {
        let mut img = image_with_brokers(&[1]);
        create(&mut img, "a", vec![vec![1]]);
        assert!(matches!(
            img.apply(&Command::CreateTopic {
                name: "a".into(),
                assignment: vec![vec![1]],
                configs: BTreeMap::new(),
                uuid: String::new(),
            }),
            CommandResponse::Rejected(Rejection::TopicExists { .. })
        ));
        assert!(matches!(
            img.apply(&Command::CreateTopic {
                name: "b".into(),
                assignment: vec![vec![1, 1]],
                configs: BTreeMap::new(),
                uuid: String::new(),
            }),
            CommandResponse::Rejected(Rejection::InvalidAssignment { .. })
        ));
        assert_eq!(
            img.apply(&Command::AllocateProducerIds { broker: 1, count: 100 }),
            CommandResponse::ProducerIds { start: 0, count: 100 }
        );
        assert_eq!(
            img.apply(&Command::AllocateProducerIds { broker: 1, count: 10 }),
            CommandResponse::ProducerIds { start: 100, count: 10 }
        );
        assert_eq!(img.apply(&Command::DeleteTopic { name: "a".into() }), CommandResponse::Done);
        assert!(img.topics.is_empty());
    }

    #[test]
    fn a_damaged_replica_leaves_the_isr_and_leadership_unless_it_is_the_last_copy() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", vec![vec![1, 2, 3], vec![1]]);
        let epoch = img.brokers[&1].epoch;
        let report =
            |p| Command::ReportDamagedReplica { broker: 1, epoch, topic: "t".into(), partition: p };
        assert_eq!(img.apply(&report(0)), CommandResponse::PartitionEpoch(1));
        let p = &img.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(2), 1, vec![2, 3]));
        // The only copy stays (there is nothing better to elect).
        assert_eq!(img.apply(&report(1)), CommandResponse::Done);
        assert_eq!(img.topics["t"].partitions[1].isr, vec![1]);
        // A stale broker epoch changes nothing.
        let stale = Command::ReportDamagedReplica {
            broker: 2,
            epoch: 999,
            topic: "t".into(),
            partition: 0,
        };
        assert!(matches!(
            img.apply(&stale),
            CommandResponse::Rejected(Rejection::StaleBrokerEpoch { id: 2, epoch: 999, .. })
        ));
    }

    #[test]
    fn rejections_are_typed_by_cause() {
        let mut img = image_with_brokers(&[1]);
        let unknown = |topic: &str| {
            CommandResponse::Rejected(Rejection::UnknownTopic { topic: topic.into() })
        };
        assert_eq!(img.apply(&Command::DeleteTopic { name: "x".into() }), unknown("x"));
        assert_eq!(
            img.apply(&Command::AlterTopicConfig { name: "y".into(), configs: BTreeMap::new() }),
            unknown("y")
        );
        assert_eq!(
            img.apply(&Command::FenceBroker { id: 9, epoch: 1 }),
            CommandResponse::Rejected(Rejection::UnknownBroker { id: 9 })
        );
        let e = epoch(&img, 1);
        assert_eq!(
            img.apply(&Command::MoveLeadershipAway { id: 1, epoch: e + 5 }),
            CommandResponse::Rejected(Rejection::StaleBrokerEpoch {
                id: 1,
                epoch: e + 5,
                current: e
            })
        );
        assert_eq!(
            img.apply(&Command::AllocateProducerIds { broker: 1, count: 0 }),
            CommandResponse::Rejected(Rejection::EmptyProducerIdBlock { broker: 1 })
        );
        assert_eq!(
            img.apply(&Command::AllocateProducerIds { broker: 7, count: 10 }),
            CommandResponse::Rejected(Rejection::UnknownBroker { id: 7 })
        );
        create(&mut img, "t", vec![vec![1]]);
        let beyond =
            Command::ReportDamagedReplica { broker: 1, epoch: e, topic: "t".into(), partition: 3 };
        assert_eq!(
            img.apply(&beyond),
            CommandResponse::Rejected(Rejection::UnknownPartition {
                topic: "t".into(),
                partition: 3
            })
        );
    }

    #[test]
    fn rejection_messages_keep_their_wording_and_survive_a_forward() {
        let r = Rejection::TopicExists { topic: "a".into() };
        assert_eq!(r.to_string(), "topic a already exists");
        assert_eq!(Rejection::UnknownTopic { topic: "b".into() }.to_string(), "unknown topic b");
        // Forwarded proposals answer with the response's JSON.
        let resp = CommandResponse::Rejected(r);
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(json, r#"{"Rejected":{"TopicExists":{"topic":"a"}}}"#);
        assert_eq!(serde_json::from_str::<CommandResponse>(&json).unwrap(), resp);
    }
}
