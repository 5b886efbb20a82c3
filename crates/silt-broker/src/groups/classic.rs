//! Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): members join,
//! the coordinator picks a protocol (assignor) all of them support and a leader, the leader
//! computes the assignment on the client side and hands it back in SyncGroup, and the coordinator
//! passes each member its part. Served for Kafka clients (`kafka::classic`); the state machine
//! here is protocol-agnostic and driven by the caller's clock, so it is unit tested directly.
//!
//! A group is of one type at a time (as in Kafka 4.x): a classic group with members refuses
//! Silt's own (KIP-848) heartbeats and the other way round (`INCONSISTENT_GROUP_PROTOCOL`).
//!
//! Membership is kept in the coordinator's memory only (it is not written to
//! `__consumer_offsets`): when the coordinator moves or restarts, members get `NOT_COORDINATOR`
//! or `UNKNOWN_MEMBER_ID` and rejoin, as after a session timeout. Committed offsets go through
//! the ordinary commit path and are durable.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

/// How long a rebalance of an empty group waits for more members before completing (Kafka's
/// `group.initial.rebalance.delay.ms`, 3 s there).
pub const INITIAL_REBALANCE_DELAY_MS: u64 = 1_000;
/// Most members of one group, and most member ids handed out but not yet used.
pub const MAX_MEMBERS: usize = 1_000;
/// How long a member id handed out with MEMBER_ID_REQUIRED stays valid unused.
const PENDING_MEMBER_MS: u64 = 60_000;

/// The group's place in a rebalance (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// Why a classic request is refused (each is a Kafka error code of the same name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassicError {
    #[error("unknown member {0}")]
    UnknownMember(String),
    #[error("generation {asked} is not the group's {current}")]
    IllegalGeneration { asked: i32, current: i32 },
    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,
    #[error("no protocol every member supports, or another protocol type")]
    InconsistentProtocol,
    #[error("join again with member id {0}")]
    MemberIdRequired(String),
    #[error("the group has {0} members already")]
    GroupFull(usize),
    #[error("member {0} is an older incarnation of a static member")]
    FencedInstance(String),
}

/// A member, as its last JoinGroup described it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Its part of the leader's assignment (empty until synced).
    pub assignment: Bytes,
    last_seen_ms: u64,
    /// Joined in the rebalance under way.
    rejoined: bool,
    /// The generation its last completed join put it in.
    joined_in: Option<i32>,
}

impl Member {
    /// The metadata it gave for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One classic group.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub state: State,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and until when they may be used.
    pending: BTreeMap<String, u64>,
    rebalance_started_ms: u64,
    /// This rebalance started from an empty group: wait the initial delay for more members.
    initial: bool,
}

impl Default for ClassicGroup {
    fn default() -> Self {
        ClassicGroup {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_started_ms: 0,
            initial: false,
        }
    }
}

/// A JoinGroup, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct Join {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// The client requires a known member id (JoinGroup v4+): a first join gets one back with
    /// MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// What a completed join answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol: for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl ClassicGroup {
    /// Protocol names every member supports.
    fn common_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else { return Vec::new() };
        let rest: Vec<&Member> = members.collect();
        first
            .protocols
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| rest.iter().all(|m| m.protocols.iter().any(|(q, _)| q == p)))
            .collect()
    }

    fn start_rebalance(&mut self, now_ms: u64) {
        if self.state != State::PreparingRebalance {
            self.initial = self.state == State::Empty;
            self.state = State::PreparingRebalance;
            self.rebalance_started_ms = now_ms;
            for m in self.members.values_mut() {
                m.rejoined = false;
            }
        }
    }

    /// Serves a JoinGroup; the caller then waits for [`ClassicGroup::joined`]. `new_id` names a
    /// member that comes without an id.
    pub fn join(
        &mut self,
        j: Join,
        now_ms: u64,
        new_id: impl FnOnce() -> String,
    ) -> Result<String, ClassicError> {
        if j.protocols.is_empty() || j.protocol_type.is_empty() {
            return Err(ClassicError::InconsistentProtocol);
        }
        if !self.members.is_empty() {
            let common = self.common_protocols();
            if j.protocol_type != self.protocol_type
                || !j.protocols.iter().any(|(p, _)| common.contains(p))
            {
                return Err(ClassicError::InconsistentProtocol);
            }
        }
        self.pending.retain(|_, until| *until > now_ms);
        // Static membership (KIP-345): a member with an instance id that the group knows takes
        // that member's place (a restart: same assignment, no rebalance unless it leads or its
        // metadata changed); an older member id of the instance is fenced.
        let incarnation = j.instance_id.as_ref().and_then(|inst| {
            self.members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(inst))
                .map(|m| m.id.clone())
        });
        if let Some(old) = &incarnation
            && !j.member_id.is_empty()
            && j.member_id != *old
        {
            return Err(ClassicError::FencedInstance(j.member_id));
        }
        let id = if let (Some(old), true) = (&incarnation, j.member_id.is_empty()) {
            let id = new_id();
            if let Some(mut m) = self.members.remove(old) {
                m.id = id.clone();
                self.members.insert(id.clone(), m);
            }
            if self.leader.as_deref() == Some(old.as_str()) {
                self.leader = Some(id.clone());
            }
            id
        } else if j.member_id.is_empty() && j.instance_id.is_some() {
            // A static member needs no MEMBER_ID_REQUIRED round (its instance id names it).
            new_id()
        } else if j.member_id.is_empty() {
            let id = new_id();
            if j.require_known_member_id {
                if self.pending.len() >= MAX_MEMBERS {
                    return Err(ClassicError::GroupFull(self.pending.len()));
                }
                self.pending.insert(id.clone(), now_ms + PENDING_MEMBER_MS);
                return Err(ClassicError::MemberIdRequired(id));
            }
            id
        } else if self.members.contains_key(&j.member_id)
            || self.pending.remove(&j.member_id).is_some()
        {
            j.member_id.clone()
        } else {
            return Err(ClassicError::UnknownMember(j.member_id));
        };
        if !self.members.contains_key(&id) && self.members.len() >= MAX_MEMBERS {
            return Err(ClassicError::GroupFull(self.members.len()));
        }
        let changed = self.members.get(&id).is_none_or(|m| m.protocols != j.protocols);
        let m = self.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen_ms: now_ms,
            rejoined: false,
            joined_in: None,
        });
        m.instance_id = j.instance_id;
        m.client_id = j.client_id;
        m.client_host = j.client_host;
        m.session_timeout_ms = j.session_timeout_ms;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.protocols = j.protocols;
        m.last_seen_ms = now_ms;
        self.protocol_type = j.protocol_type;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            // A follower rejoining a stable group with the same metadata gets the current
            // generation back without a rebalance (Kafka's rule); anything else rebalances.
            State::Stable if !changed && !is_leader && m.joined_in == Some(self.generation) => {}
            _ => self.start_rebalance(now_ms),
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.rejoined = self.state == State::PreparingRebalance || m.rejoined;
        }
        Ok(id)
    }

    /// The answer to `member`'s join once its rebalance completed (`None`: still waiting).
    pub fn joined(&self, member: &str) -> Option<Result<Joined, ClassicError>> {
        let Some(m) = self.members.get(member) else {
            return Some(Err(ClassicError::UnknownMember(member.to_string())));
        };
        if self.state == State::PreparingRebalance || m.joined_in != Some(self.generation) {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        Some(Ok(Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader,
            member_id: member.to_string(),
            members,
        }))
    }

    /// Expires sessions and completes a rebalance that is ready. Returns whether anything
    /// changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        if self.state != State::PreparingRebalance {
            let expired: Vec<String> = self
                .members
                .values()
                .filter(|m| now_ms.saturating_sub(m.last_seen_ms) > m.session_timeout_ms)
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                tracing::info!(members = ?expired, "classic group members' sessions expired");
                self.remove(&expired, now_ms);
                changed = true;
            }
            return changed;
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        let all_in = self.members.values().all(|m| m.rejoined);
        let delayed =
            self.initial && now_ms < self.rebalance_started_ms + INITIAL_REBALANCE_DELAY_MS;
        if (all_in && !delayed) || now_ms >= self.rebalance_started_ms + timeout {
            self.complete(now_ms);
            changed = true;
        }
        changed
    }

    /// Ends the rebalance: members that did not rejoin leave; a new generation, protocol and
    /// leader.
    fn complete(&mut self, now_ms: u64) {
        self.members.retain(|_, m| m.rejoined);
        self.generation += 1;
        for m in self.members.values_mut() {
            m.rejoined = false;
            m.joined_in = Some(self.generation);
            m.assignment = Bytes::new();
            m.last_seen_ms = now_ms;
        }
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        // Each member votes for its most preferred protocol of those all support.
        let common = self.common_protocols();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| common.contains(p)) {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        self.protocol =
            common.iter().max_by_key(|p| votes.get(p.as_str()).copied().unwrap_or(0)).cloned();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
    }

    fn remove(&mut self, ids: &[String], now_ms: u64) {
        for id in ids {
            self.members.remove(id);
        }
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.generation += 1;
        } else {
            self.start_rebalance(now_ms);
        }
    }

    fn member_at(&self, member: &str, generation: i32) -> Result<&Member, ClassicError> {
        let m = self
            .members
            .get(member)
            .ok_or_else(|| ClassicError::UnknownMember(member.to_string()))?;
        if generation != self.generation {
            return Err(ClassicError::IllegalGeneration {
                asked: generation,
                current: self.generation,
            });
        }
        Ok(m)
    }

    /// Serves a SyncGroup; the caller then waits for [`ClassicGroup::synced`]. The leader's
    /// assignment (member id, bytes) completes the rebalance.
    pub fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignment: Vec<(String, Bytes)>,
        now_ms: u64,
    ) -> Result<(), ClassicError> {
        if self.state == State::PreparingRebalance {
            return Err(ClassicError::RebalanceInProgress);
        }
        self.member_at(member, generation)?;
        if let Some(m) = self.members.get_mut(member) {
            m.last_seen_ms = now_ms;
        }
        if self.state == State::CompletingRebalance && self.leader.as_deref() == Some(member) {
            let mut parts: HashMap<String, Bytes> = assignment.into_iter().collect();
            for m in self.members.values_mut() {
                m.assignment = parts.remove(&m.id).unwrap_or_default();
            }
            self.state = State::Stable;
        }
        Ok(())
    }

    /// `member`'s assignment once the leader synced generation `generation` (`None`: waiting).
    pub fn synced(&self, member: &str, generation: i32) -> Option<Result<Bytes, ClassicError>> {
        if self.state == State::PreparingRebalance {
            return Some(Err(ClassicError::RebalanceInProgress));
        }
        match self.member_at(member, generation) {
            Err(e) => Some(Err(e)),
            Ok(_) if self.state == State::CompletingRebalance => None,
            Ok(m) => Some(Ok(m.assignment.clone())),
        }
    }

    /// A Heartbeat: keeps the session; says when to rejoin.
    pub fn heartbeat(
        &mut self,
        member: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), ClassicError> {
        let m = self
            .members
            .get_mut(member)
            .ok_or_else(|| ClassicError::UnknownMember(member.to_string()))?;
        m.last_seen_ms = now_ms;
        if self.state == State::PreparingRebalance {
            return Err(ClassicError::RebalanceInProgress);
        }
        self.member_at(member, generation).map(|_| ())
    }

    /// A LeaveGroup of the static member `instance` (its member id unknown to the client).
    pub fn leave_instance(&mut self, instance: &str, now_ms: u64) -> Result<(), ClassicError> {
        let id = self
            .members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
            .ok_or_else(|| ClassicError::UnknownMember(instance.to_string()))?;
        self.leave(&id, now_ms)
    }

    /// A LeaveGroup of `member`.
    pub fn leave(&mut self, member: &str, now_ms: u64) -> Result<(), ClassicError> {
        if !self.members.contains_key(member) {
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        self.remove(&[member.to_string()], now_ms);
        Ok(())
    }

    /// An OffsetCommit by `member` at `generation` (a member-less commit: `member` empty).
    pub fn check_commit(&self, member: &str, generation: i32) -> Result<(), ClassicError> {
        if member.is_empty() && generation < 0 {
            return match self.members.len() {
                0 => Ok(()),
                _ => Err(ClassicError::UnknownMember(String::new())),
            };
        }
        if self.state == State::PreparingRebalance && self.members.contains_key(member) {
            return Err(ClassicError::RebalanceInProgress);
        }
        self.member_at(member, generation).map(|_| ())
    }
}

/// The classic groups this broker coordinates, and a signal that one changed.
#[derive(Debug)]
pub struct ClassicGroups {
    groups: std::sync::Mutex<HashMap<String, ClassicGroup>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for ClassicGroups {
    fn default() -> Self {
        ClassicGroups {
            groups: std::sync::Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl ClassicGroups {
    /// Runs `f` on group `group` (created empty if absent); signals waiters when `f` or the
    /// tick changed it. Empty groups without members are forgotten.
    pub fn with<T>(&self, group: &str, now_ms: u64, f: impl FnOnce(&mut ClassicGroup) -> T) -> T {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let g = groups.entry(group.to_string()).or_default();
        let before = (g.state, g.generation, g.members.len());
        g.tick(now_ms);
        let out = f(g);
        let after = (g.state, g.generation, g.members.len());
        if g.members.is_empty() && g.pending.is_empty() && g.state == State::Empty {
            groups.remove(group);
        }
        if before != after {
            self.changed.send_modify(|n| *n += 1);
        }
        out
    }

    /// Reads group `group` as it is (after expiring what is due).
    pub fn read<T>(
        &self,
        group: &str,
        now_ms: u64,
        f: impl FnOnce(Option<&ClassicGroup>) -> T,
    ) -> T {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let changed = groups.get_mut(group).is_some_and(|g| g.tick(now_ms));
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        f(groups.get(group))
    }

    /// Whether `group` has classic members (then it is not open to Silt's own protocol).
    pub fn has_members(&self, group: &str) -> bool {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// A receiver that wakes whenever some group changed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Ticks every group (sessions, rebalance deadlines) and forgets the groups `keep` rejects
    /// (no longer coordinated here). Returns the groups with their state and member count.
    pub fn sweep(&self, now_ms: u64, keep: impl Fn(&str) -> bool) -> Vec<(String, State, usize)> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        groups.retain(|name, g| {
            changed |= g.tick(now_ms);
            let live = !(g.members.is_empty() && g.pending.is_empty() && g.state == State::Empty);
            live && keep(name)
        });
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        groups.iter().map(|(n, g)| (n.clone(), g.state, g.members.len())).collect()
    }
}

#[cfg(test)]
#[path = "classic_test.rs"]
mod tests;
