//! `Admin`: topic management and cluster description, sent to any broker.

use std::collections::BTreeMap;

use crate::client::Transport;
use silt_proto::v1::admin_client::AdminClient;
use silt_proto::v1::{self, ErrorCode};

use crate::{Client, ClientError};

/// Administrative calls.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) client: Client,
}

/// How long an admin call keeps looking for a broker that can answer.
const ADMIN_RETRY_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether a failed call should go to the next broker: it did not reach a broker that could
/// answer (unavailable, or the connection failed or broke).
fn passes_over(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        || std::error::Error::source(status)
            .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some())
}

fn check(r: &v1::TopicResult) -> Result<(), ClientError> {
    if r.error_code == ErrorCode::None as i32 {
        Ok(())
    } else {
        Err(ClientError::server(r.error_code, &r.error_message))
    }
}

impl Admin {
    pub(crate) fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// Runs `call` against the first broker that answers at the transport level: a broker that
    /// cannot be reached, whose connection broke, or that is not ready (`Unavailable`) is passed
    /// over for the next; when none answered, the round is tried again with backoff for up to
    /// [`ADMIN_RETRY_WITHIN`].
    async fn with_admin<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Transport>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.with_any(|t| {
            call(AdminClient::new(t).max_decoding_message_size(crate::client::MAX_DECODE_BYTES))
        })
        .await
    }

    /// [`with_admin`](Self::with_admin) for any service: `call` gets the transport.
    pub(crate) async fn with_any<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Transport) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + ADMIN_RETRY_WITHIN;
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            let mut last = ClientError::Connect("no broker answered".into());
            for addr in self.client.any_addresses() {
                let c = self.client.channel(&addr)?;
                match tokio::time::timeout(std::time::Duration::from_secs(60), call(c)).await {
                    Ok(Ok(r)) => return Ok(r.into_inner()),
                    Ok(Err(status)) if passes_over(&status) => {
                        last = ClientError::Transport(status)
                    }
                    Ok(Err(status)) => return Err(ClientError::Transport(status)),
                    Err(_) => last = ClientError::Timeout,
                }
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(last);
            }
            let _ = self.client.metadata(&[]).await;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Creates a topic; 0 partitions / replication factor means the broker default.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let req = v1::CreateTopicsRequest {
            topics: vec![v1::NewTopic {
                name: name.into(),
                partitions,
                replication_factor,
                configs: configs.into_iter().collect(),
            }],
            validate_only: false,
        };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.create_topics(req).await }
            })
            .await?;
        r.topics
            .first()
            .map_or(Err(ClientError::Corrupt("empty create response".into())), check)?;
        self.client.metadata(&[name.to_string()]).await?;
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let req = v1::DeleteTopicsRequest { topics: vec![name.into()] };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.delete_topics(req).await }
            })
            .await?;
        r.topics.first().map_or(Err(ClientError::Corrupt("empty delete response".into())), check)
    }

    /// Describes the named topics; an unknown one is an error.
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<v1::TopicDescription>, ClientError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let req = v1::DescribeTopicsRequest { topics: names.to_vec() };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.describe_topics(req).await }
            })
            .await?;
        for t in &r.topics {
            if t.error_code != ErrorCode::None as i32 {
                return Err(ClientError::server(t.error_code, &t.error_message));
            }
        }
        Ok(r.topics)
    }

    /// Every topic, described.
    pub async fn list_topics(&self) -> Result<Vec<v1::TopicDescription>, ClientError> {
        let req = v1::DescribeTopicsRequest { topics: vec![] };
        Ok(self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.describe_topics(req).await }
            })
            .await?
            .topics)
    }

    /// Sets `set` and returns `delete` keys to their defaults.
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), ClientError> {
        let req = v1::AlterTopicConfigRequest {
            topic: topic.into(),
            set: set.into_iter().collect(),
            delete,
        };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.alter_topic_config(req).await }
            })
            .await?;
        r.result.as_ref().map_or(Err(ClientError::Corrupt("empty alter response".into())), check)
    }

    pub async fn describe_cluster(&self) -> Result<v1::DescribeClusterResponse, ClientError> {
        self.with_admin(
            |mut c| async move { c.describe_cluster(v1::DescribeClusterRequest {}).await },
        )
        .await
    }

    /// Raises `topic`'s partition count to `count` (larger than today).
    pub async fn create_partitions(&self, topic: &str, count: u32) -> Result<(), ClientError> {
        let req = v1::CreatePartitionsRequest { topic: topic.into(), count, validate_only: false };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.create_partitions(req).await }
            })
            .await?;
        r.result.as_ref().map_or(Err(ClientError::Corrupt("empty response".into())), check)?;
        self.client.metadata(&[topic.to_string()]).await?;
        Ok(())
    }

    /// Starts (or, with `cancel` entries, cancels) replica moves; one result per entry, each
    /// with its own error code. `validate_only`: checked, nothing changed.
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: Vec<v1::PartitionReassignment>,
        validate_only: bool,
        throttle_bytes_per_sec: u64,
    ) -> Result<Vec<v1::ReassignmentResult>, ClientError> {
        let req = v1::AlterPartitionReassignmentsRequest {
            reassignments,
            validate_only,
            throttle_bytes_per_sec,
        };
        Ok(self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.alter_partition_reassignments(req).await }
            })
            .await?
            .results)
    }

    /// The ongoing replica moves, with the progress of each new replica as its partition's
    /// leader sees it (asked of each leader; a leader that does not answer leaves its entries
    /// without progress).
    pub async fn list_partition_reassignments(
        &self,
    ) -> Result<Vec<v1::OngoingReassignment>, ClientError> {
        let list = |mut c: AdminClient<Transport>| async move {
            c.list_partition_reassignments(v1::ListPartitionReassignmentsRequest {}).await
        };
        let first = self.with_admin(list).await?;
        if first.error_code != ErrorCode::None as i32 {
            return Err(ClientError::server(first.error_code, &first.error_message));
        }
        let mut out = first.reassignments;
        let leaders: std::collections::BTreeSet<u64> =
            out.iter().filter(|r| !r.progress_known).filter_map(|r| r.leader).collect();
        if leaders.is_empty() {
            return Ok(out);
        }
        let cluster = self.describe_cluster().await?;
        for leader in leaders {
            let Some(b) = cluster.brokers.iter().find(|b| b.node_id == leader) else { continue };
            let c = AdminClient::new(self.client.channel(&b.address)?)
                .max_decoding_message_size(crate::client::MAX_DECODE_BYTES);
            let Ok(Ok(r)) = tokio::time::timeout(std::time::Duration::from_secs(10), list(c)).await
            else {
                continue;
            };
            for known in r.into_inner().reassignments.into_iter().filter(|r| r.progress_known) {
                if let Some(e) = out
                    .iter_mut()
                    .find(|e| (&e.topic, e.partition) == (&known.topic, known.partition))
                {
                    *e = known;
                }
            }
        }
        Ok(out)
    }

    /// Preferred leader election for every partition of `topics` (empty: of every topic).
    pub async fn elect_leaders(
        &self,
        topics: Vec<String>,
    ) -> Result<Vec<v1::ElectionResult>, ClientError> {
        let req = v1::ElectLeadersRequest { topics, partitions: Vec::new() };
        let r = self
            .with_admin(|mut c| {
                let req = req.clone();
                async move { c.elect_leaders(req).await }
            })
            .await?;
        if r.error_code != ErrorCode::None as i32 {
            return Err(ClientError::server(r.error_code, &r.error_message));
        }
        Ok(r.results)
    }

    /// Starts moving every replica off broker `node_id`; answers how many moves started.
    pub async fn decommission_broker(
        &self,
        node_id: u64,
        throttle_bytes_per_sec: u64,
    ) -> Result<u32, ClientError> {
        let req = v1::DecommissionBrokerRequest { node_id, throttle_bytes_per_sec };
        let r = self.with_admin(|mut c| async move { c.decommission_broker(req).await }).await?;
        moves(r)
    }

    /// Ends a decommission: cancels the moves taking replicas off `node_id`; answers how many.
    pub async fn recommission_broker(&self, node_id: u64) -> Result<u32, ClientError> {
        let req = v1::RecommissionBrokerRequest { node_id };
        let r = self.with_admin(|mut c| async move { c.recommission_broker(req).await }).await?;
        moves(r)
    }
}

fn moves(r: v1::DecommissionBrokerResponse) -> Result<u32, ClientError> {
    if r.error_code == ErrorCode::None as i32 {
        Ok(r.moves)
    } else {
        Err(ClientError::server(r.error_code, &r.error_message))
    }
}
