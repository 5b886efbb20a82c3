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
}
