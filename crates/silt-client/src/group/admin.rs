//! Group administration on [`Admin`]: list, describe (with lag), reset offsets, delete.

use std::collections::BTreeMap;
use std::time::Duration;

use silt_proto::v1;

use super::link::GroupLink;
use crate::consumer::resolve;
use crate::{Admin, ClientError, Seek, TopicPartition};

/// Deadline of an admin group call (coordinator moves included).
const ADMIN_DEADLINE: Duration = Duration::from_secs(30);

/// A group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: String,
    pub members: u32,
    pub coordinator: u64,
}

impl Admin {
    fn link(&self, group: &str) -> GroupLink {
        GroupLink::new(self.client.clone(), group)
    }

    /// Every group of the cluster (each broker lists those it coordinates).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let meta = self.client.metadata(&[]).await?;
        let mut out: BTreeMap<String, GroupListing> = BTreeMap::new();
        for b in meta.brokers.iter().filter(|b| b.alive) {
            let link = self.link("");
            let mut groups = link.groups(&b.address)?;
            let call = groups.list_groups(v1::ListGroupsRequest {});
            let r = tokio::time::timeout(ADMIN_DEADLINE, call)
                .await
                .map_err(|_| ClientError::Timeout)??
                .into_inner();
            if r.error_code != 0 {
                return Err(ClientError::server(r.error_code, &r.error_message));
            }
            for g in r.groups {
                out.insert(
                    g.group.clone(),
                    GroupListing {
                        group: g.group,
                        state: g.state,
                        members: g.members,
                        coordinator: g.coordinator,
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Members, assignment, committed offsets, high watermarks and lag of a group.
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<v1::DescribeGroupResponse, ClientError> {
        let req = v1::DescribeGroupRequest { group: group.to_string() };
        let mut r = self
            .link(group)
            .call(ADMIN_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.describe_group(req).await }
            })
            .await?;
        // The coordinator knows high watermarks only of partitions it hosts; ask the leaders.
        for o in r.offsets.iter_mut().filter(|o| o.high_watermark < 0) {
            let tp = TopicPartition { topic: o.topic.clone(), partition: o.partition };
            if let Ok(hw) = resolve(&self.client, &tp, Seek::Latest).await {
                o.high_watermark = hw;
                o.lag = if o.committed < 0 { -1 } else { hw - o.committed };
            }
        }
        Ok(r)
    }

    /// Committed offsets of a group (every partition it committed).
    pub async fn group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        super::consumer::fetch_committed(&self.link(group), &[], false).await
    }

    /// What [`reset_offsets`](Self::reset_offsets) would set, without setting it: per partition
    /// of `topic`, the committed offset now (None: no commit) and the new one. Explicit and
    /// shifted offsets are kept within each partition's log start and high watermark.
    pub async fn plan_reset(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<ResetPlan>, ClientError> {
        let n = self.client.partition_count(topic).await?;
        let committed = self.group_offsets(group).await?;
        let mut plan = Vec::new();
        for partition in 0..n {
            let tp = TopicPartition { topic: topic.to_string(), partition };
            let current = committed.get(&tp).copied().filter(|o| *o >= 0);
            let wanted = match to {
                ResetTo::Seek(Seek::Offset(o)) => Some(o),
                ResetTo::ShiftBy(by) => current.map(|c| c.saturating_add(by)),
                ResetTo::Seek(_) => None,
            };
            let new = match (wanted, to) {
                (Some(o), _) => {
                    let start = resolve(&self.client, &tp, Seek::Earliest).await?;
                    let end = resolve(&self.client, &tp, Seek::Latest).await?;
                    o.clamp(start, end.max(start))
                }
                // No commit to shift from: the log start.
                (None, ResetTo::ShiftBy(_)) => resolve(&self.client, &tp, Seek::Earliest).await?,
                (None, ResetTo::Seek(seek)) => resolve(&self.client, &tp, seek).await?,
            };
            plan.push(ResetPlan { tp, current, new });
        }
        Ok(plan)
    }

    /// Sets the committed offset of every partition of `topic` as [`plan_reset`] computes it;
    /// the group must have no members. Returns the offsets set.
    ///
    /// [`plan_reset`]: Self::plan_reset
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: impl Into<ResetTo>,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let plan = self.plan_reset(group, topic, to.into()).await?;
        let offsets: BTreeMap<TopicPartition, i64> =
            plan.into_iter().map(|p| (p.tp, p.new)).collect();
        let req = v1::ResetOffsetsRequest {
            group: group.to_string(),
            offsets: offsets
                .iter()
                .map(|(tp, o)| v1::OffsetCommit {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *o,
                    metadata: String::new(),
                })
                .collect(),
        };
        self.link(group)
            .call(ADMIN_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.reset_offsets(req).await }
            })
            .await?;
        Ok(offsets)
    }

    /// Deletes a group without members and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let req = v1::DeleteGroupRequest { group: group.to_string() };
        self.link(group)
            .call(ADMIN_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.delete_group(req).await }
            })
            .await?;
        Ok(())
    }
}

/// Where a group's offsets are reset to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Seek(Seek),
    /// The committed offset plus this (negative: back), within the log.
    ShiftBy(i64),
}

impl From<Seek> for ResetTo {
    fn from(s: Seek) -> ResetTo {
        ResetTo::Seek(s)
    }
}

/// One partition of a reset: the committed offset before (None: none) and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    pub tp: TopicPartition,
    pub current: Option<i64>,
    pub new: i64,
}
