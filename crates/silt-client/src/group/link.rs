//! `GroupLink`: calls to one group's coordinator. It finds the coordinator through any broker,
//! remembers it, and on `NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`, a load in progress or a
//! transport failure finds it again and retries, within a deadline.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::Transport;
use silt_proto::v1::groups_client::GroupsClient;
use silt_proto::v1::share_client::ShareClient;
use silt_proto::v1::{self, ErrorCode};

use crate::{Client, ClientError};

/// Longest one call to a broker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before a retry.
const BACKOFF: Duration = Duration::from_millis(100);

/// A response with a top-level error code.
pub(crate) trait Coded {
    fn code(&self) -> (i32, &str);
}

macro_rules! coded {
    ($($t:ty),*) => {$(
        impl Coded for $t {
            fn code(&self) -> (i32, &str) {
                (self.error_code, &self.error_message)
            }
        }
    )*};
}

coded!(
    v1::FindCoordinatorResponse,
    v1::GroupHeartbeatResponse,
    v1::LeaveGroupResponse,
    v1::CommitOffsetsResponse,
    v1::FetchOffsetsResponse,
    v1::ListGroupsResponse,
    v1::DescribeGroupResponse,
    v1::ResetOffsetsResponse,
    v1::DeleteGroupResponse,
    v1::FindShareCoordinatorResponse,
    v1::ShareGroupHeartbeatResponse,
    v1::ShareFetchResponse,
    v1::ShareAcknowledgeResponse,
    v1::DescribeShareGroupResponse,
    v1::DeleteShareGroupResponse
);

/// Which coordinator a link talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A consumer group's (`__consumer_offsets`).
    Group,
    /// A share group's (`__share_group_state`).
    Share,
}

/// Calls to one group's coordinator (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct GroupLink {
    client: Client,
    pub group: String,
    coordinator: Arc<Mutex<Option<String>>>,
    kind: Kind,
}

/// Codes after which the coordinator is looked up again.
fn moved(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
}

impl GroupLink {
    pub fn new(client: Client, group: &str) -> GroupLink {
        GroupLink {
            client,
            group: group.to_string(),
            coordinator: Arc::default(),
            kind: Kind::Group,
        }
    }

    /// A link to a share group's coordinator.
    pub fn share(client: Client, group: &str) -> GroupLink {
        GroupLink { kind: Kind::Share, ..GroupLink::new(client, group) }
    }

    pub(crate) fn share_client(&self, addr: &str) -> Result<ShareClient<Transport>, ClientError> {
        Ok(ShareClient::new(self.client.channel(addr)?)
            .max_decoding_message_size(crate::client::MAX_DECODE_BYTES)
            .max_encoding_message_size(crate::client::MAX_ENCODE_BYTES))
    }

    /// One broker's answer to where the coordinator is: (code, message, address).
    async fn ask(
        &self,
        addr: &str,
    ) -> Result<Result<(i32, String, String), tonic::Status>, ClientError> {
        let group = self.group.clone();
        Ok(match self.kind {
            Kind::Group => {
                let mut c = self.groups(addr)?;
                let call = c.find_coordinator(v1::FindCoordinatorRequest { group });
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Err(_) => return Err(ClientError::Timeout),
                    Ok(r) => r.map(|r| {
                        let r = r.into_inner();
                        (r.error_code, r.error_message, r.address)
                    }),
                }
            }
            Kind::Share => {
                let req = v1::FindShareCoordinatorRequest { group };
                let mut c = self.share_client(addr)?;
                let call = c.find_share_coordinator(req);
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Err(_) => return Err(ClientError::Timeout),
                    Ok(r) => r.map(|r| {
                        let r = r.into_inner();
                        (r.error_code, r.error_message, r.address)
                    }),
                }
            }
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn groups(&self, addr: &str) -> Result<GroupsClient<Transport>, ClientError> {
        Ok(GroupsClient::new(self.client.channel(addr)?)
            .max_decoding_message_size(crate::client::MAX_DECODE_BYTES)
            .max_encoding_message_size(crate::client::MAX_ENCODE_BYTES))
    }

    /// Asks the brokers, in turn, where the group's coordinator is.
    async fn find(&self) -> Result<String, ClientError> {
        let mut last = ClientError::Connect("no broker answered".into());
        for addr in self.client.any_addresses() {
            match self.ask(&addr).await {
                Ok(Ok((code, message, address))) => {
                    if code == 0 && !address.is_empty() {
                        return Ok(address);
                    }
                    last = ClientError::server(code, &message);
                    if !last.code().is_some_and(ErrorCode::is_retriable) {
                        return Err(last);
                    }
                }
                Ok(Err(status)) => last = ClientError::Transport(status),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn forget(&self) {
        *self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Calls the coordinator's Groups service, retrying retriable failures until `deadline`
    /// has passed.
    pub async fn call<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<T, ClientError>
    where
        T: Coded,
        F: Fn(GroupsClient<Transport>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_as(deadline, |link: &GroupLink, addr: &str| link.groups(addr), f).await
    }

    /// Like [`call`](Self::call) with the coordinator's `Share` service.
    pub async fn call_share<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<T, ClientError>
    where
        T: Coded,
        F: Fn(ShareClient<Transport>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_as(deadline, |link: &GroupLink, addr: &str| link.share_client(addr), f).await
    }

    /// Like [`call`](Self::call) with another service of the coordinator (`make` builds its
    /// client for an address).
    pub async fn call_as<C, T, M, F, Fut>(
        &self,
        deadline: Duration,
        make: M,
        f: F,
    ) -> Result<T, ClientError>
    where
        T: Coded,
        M: Fn(&GroupLink, &str) -> Result<C, ClientError>,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let err = match self.attempt(&make, &f).await {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let retriable = match &err {
                ClientError::Server { code, .. } => code.is_retriable(),
                ClientError::Transport(_) | ClientError::Timeout | ClientError::Connect(_) => true,
                _ => false,
            };
            if !retriable || tokio::time::Instant::now() + BACKOFF >= until {
                return Err(err);
            }
            tracing::debug!(group = %self.group, error = %err, "group call failed; retrying");
            tokio::time::sleep(BACKOFF).await;
        }
    }

    async fn attempt<C, T, M, F, Fut>(&self, make: &M, f: &F) -> Result<T, ClientError>
    where
        T: Coded,
        M: Fn(&GroupLink, &str) -> Result<C, ClientError>,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let cached = self.coordinator.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let addr = match cached {
            Some(a) => a,
            None => {
                let a = self.find().await?;
                *self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.clone());
                a
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, f(make(self, &addr)?)).await {
            Err(_) => {
                self.forget();
                Err(ClientError::Timeout)
            }
            Ok(Err(status)) => {
                self.forget();
                // A broker that cannot be reached may have lost its leaderships.
                let _ = self.client.metadata(&[]).await;
                Err(ClientError::Transport(status))
            }
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let (code, message) = r.code();
                if code == 0 {
                    return Ok(r);
                }
                let e = ClientError::server(code, message);
                if e.code().is_some_and(moved) {
                    self.forget();
                }
                Err(e)
            }
        }
    }
}
