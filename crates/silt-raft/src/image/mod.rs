//! The cluster image: what the metadata quorum agrees on — brokers, topics, partitions (replicas,
//! leader, leader epoch, partition epoch, ISR), topic configs, producer-id blocks — and the
//! commands that change it. `apply` is pure and deterministic: every broker applies the same
//! committed commands in the same order and reaches the same image.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use crate::rejection::Rejection;

mod reassign;
mod security;
pub use reassign::{ElectionOutcome, Reassignment};
pub use security::{
    AclBinding, AclFilter, AclOperation, AclPermission, CLUSTER_RESOURCE, PatternType,
    ResourceType, ScramCredential, WILDCARD, acls_allow, acls_allow_any,
};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: u64,
    pub address: String,
    /// Where its internal services (Raft, controller, replication) listen; empty in entries
    /// written before they had their own port (then: `address` with port + 2).
    #[serde(default)]
    pub internal_address: String,
    /// Where its Kafka-protocol listener is (`kafka_advertised`); empty without one.
    #[serde(default)]
    pub kafka_address: String,
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
    /// Being decommissioned (`DecommissionBroker`): its replicas move away, and it is given no
    /// new ones. Kept across registrations until `RecommissionBroker`.
    #[serde(default)]
    pub decommissioning: bool,
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
    /// An ongoing replica reassignment (KIP-455); while it runs, `replicas` holds the target
    /// replicas followed by the ones it removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassignment: Option<Reassignment>,
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
    /// SCRAM-SHA-256 credentials by user name.
    #[serde(default)]
    pub users: BTreeMap<String, ScramCredential>,
    /// The ACLs (consulted only by brokers with authentication on).
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
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
        #[serde(default)]
        kafka_address: String,
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
    /// Creates a user or replaces its credential.
    PutUser {
        name: String,
        credential: ScramCredential,
    },
    DeleteUser {
        name: String,
    },
    /// Adds ACLs (one already present is kept once).
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes every ACL some filter selects; answers with the removed ones.
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// Adds partitions to a topic of `from` partitions: one replica list per new partition,
    /// appended (refused when the topic no longer has `from`).
    CreatePartitions {
        topic: String,
        from: u32,
        assignment: Vec<Vec<u64>>,
    },
    /// Starts moving a partition to `target` replicas (`Some`), or cancels its ongoing move
    /// (`None`). See [`Reassignment`].
    ReassignPartition {
        topic: String,
        partition: u32,
        target: Option<Vec<u64>>,
        /// Bytes per second each new replica may copy while catching up; 0: unthrottled.
        #[serde(default)]
        throttle_bytes_per_sec: u64,
    },
    /// Moves leadership of each named partition to its preferred replica (the first), when
    /// that replica is in sync and live.
    ElectPreferredLeaders {
        partitions: Vec<(String, u32)>,
    },
    /// Marks broker `id` decommissioning and starts moving each of its replicas to another
    /// broker (the whole command is refused when some replica has nowhere to go).
    DecommissionBroker {
        id: u64,
        #[serde(default)]
        throttle_bytes_per_sec: u64,
    },
    /// Ends a decommission: cancels the moves that take replicas off `id`.
    RecommissionBroker {
        id: u64,
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
    /// The ACLs a `DeleteAcls` removed.
    AclsDeleted(Vec<AclBinding>),
    /// What `ElectPreferredLeaders` did for each partition, in request order.
    Elections(Vec<ElectionOutcome>),
    /// How many replica moves a `DecommissionBroker` started (or a recommission cancelled).
    Moves(u32),
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

/// Whether every partition of a non-empty assignment has distinct replicas.
fn valid_assignment(assignment: &[Vec<u64>]) -> bool {
    !assignment.is_empty()
        && assignment
            .iter()
            .all(|r| !r.is_empty() && r.iter().collect::<BTreeSet<_>>().len() == r.len())
}

impl ClusterImage {
    /// A new partition on `replicas`: led by the first live one, its live replicas in sync.
    fn new_partition(&self, replicas: &[u64]) -> PartitionImage {
        let leader = elect_leader(replicas, replicas, |b| self.is_fenced(b), false);
        // Fenced replicas start out of the ISR: they join by catching up.
        let live: Vec<u64> = replicas.iter().copied().filter(|b| !self.is_fenced(*b)).collect();
        PartitionImage {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: if live.is_empty() { replicas.to_vec() } else { live },
            reassignment: None,
        }
    }

    /// Applies one committed command.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match cmd {
            Command::RegisterBroker {
                id,
                address,
                internal_address,
                kafka_address,
                rack,
                incarnation,
            } => {
                if let Some(b) = self.brokers.get_mut(id)
                    && b.incarnation != *incarnation
                    && !b.fenced
                {
                    b.fenced = true;
                    self.fence_partitions(*id);
                }
                self.next_broker_epoch += 1;
                let epoch = self.next_broker_epoch;
                let decommissioning = self.brokers.get(id).is_some_and(|b| b.decommissioning);
                self.brokers.insert(
                    *id,
                    BrokerRecord {
                        id: *id,
                        address: address.clone(),
                        internal_address: internal_address.clone(),
                        kafka_address: kafka_address.clone(),
                        rack: rack.clone(),
                        epoch,
                        fenced: false,
                        incarnation: *incarnation,
                        shutting_down: false,
                        decommissioning,
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
                if !valid_assignment(assignment) {
                    return CommandResponse::Rejected(Rejection::InvalidAssignment {
                        topic: name.clone(),
                    });
                }
                self.next_topic_id += 1;
                let id = self.next_topic_id;
                let partitions = assignment.iter().map(|r| self.new_partition(r)).collect();
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
                let fenced = self.fenced_ids();
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(rejected) => return rejected,
                };
                // A new replica that joined the ISR may be the last one a move waited for.
                reassign::complete_if_caught_up(p, &fenced);
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
            Command::PutUser { name, credential } => {
                self.users.insert(name.clone(), credential.clone());
                CommandResponse::Done
            }
            Command::DeleteUser { name } => match self.users.remove(name) {
                Some(_) => CommandResponse::Done,
                None => CommandResponse::Rejected(Rejection::UnknownUser { name: name.clone() }),
            },
            Command::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                CommandResponse::Done
            }
            Command::DeleteAcls { filters } => {
                let (removed, kept): (BTreeSet<_>, BTreeSet<_>) = std::mem::take(&mut self.acls)
                    .into_iter()
                    .partition(|a| filters.iter().any(|f| f.matches(a)));
                self.acls = kept;
                CommandResponse::AclsDeleted(removed.into_iter().collect())
            }
            Command::CreatePartitions { topic, from, assignment } => {
                self.create_partitions(topic, *from, assignment)
            }
            Command::ReassignPartition { topic, partition, target, throttle_bytes_per_sec } => {
                self.reassign(topic, *partition, target.as_deref(), *throttle_bytes_per_sec)
            }
            Command::ElectPreferredLeaders { partitions } => {
                CommandResponse::Elections(self.elect_preferred(partitions))
            }
            Command::DecommissionBroker { id, throttle_bytes_per_sec } => {
                self.decommission(*id, *throttle_bytes_per_sec)
            }
            Command::RecommissionBroker { id } => self.recommission(*id),
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

    /// Whether the image's ACLs allow `principal` `operation` on the resource (no super-user
    /// rule: that is broker config).
    pub fn acl_allows(
        &self,
        principal: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        acls_allow(&self.acls, principal, operation, resource_type, name)
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
mod reassign_tests;
#[cfg(test)]
mod tests;
