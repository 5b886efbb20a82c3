//! The Kafka-protocol listener (issue 16, in progress; `docs/kafka.md`): Kafka's framing (a
//! 4-byte length, then a request header and body), decoded and encoded with the `kafka-protocol`
//! crate, served from the same cluster image as the gRPC services.
//!
//! Each API is translated into the request of the gRPC service that serves it (`Data`, `Groups`,
//! `Admin`) and answered from that service's response, so both listeners share every check,
//! limit and metric. Requests are answered in order, one at a time per connection (Kafka's rule).
//! A length prefix above `kafka_max_request_bytes` or a frame that does not decode closes that
//! connection only; an API this listener does not serve (it is not advertised, so well-behaved
//! clients do not send it) is logged and closes the connection.

mod admin;
mod classic;
mod data;
mod errors;
mod groups;
mod metadata;
mod reassign;
mod sasl;
mod share;
mod unsupported;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    ConsumerGroupHeartbeatRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, ElectLeadersRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, ShareAcknowledgeRequest,
    ShareFetchRequest, ShareGroupHeartbeatRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::connection::ConnInfo;
use crate::auth::{Access, Principal};
use crate::broker::Shared;
use crate::groups::GroupsService;
use crate::service::produce_budget::Reservation;
use crate::service::{AdminService, DataService};
use crate::tls::ServerTls;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// A connection silent this long is closed (Kafka's `connections.max.idle.ms`, 10 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The largest frame read from a connection that has not authenticated (Kafka's
/// `sasl.server.max.receive.size`).
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;
/// Kafka's error code for an API version the broker does not serve.
pub(crate) const UNSUPPORTED_VERSION: i16 = 35;

/// The APIs and versions this listener serves, as ApiVersions advertises them.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
];

/// Members whose last heartbeat one connection remembers (more are forgotten, and then read
/// back from the group).
const MAX_MEMBERS_PER_CONNECTION: usize = 1024;

/// What every connection's requests are served by: the broker and its gRPC services.
#[derive(Debug)]
pub(crate) struct Kafka {
    shared: Arc<Shared>,
    data: DataService,
    groups: GroupsService,
    admin: AdminService,
    /// Salts the decoy SCRAM salt of unknown users (random per broker start).
    decoy_key: [u8; 32],
}

impl Kafka {
    fn new(shared: Arc<Shared>) -> Kafka {
        Kafka {
            data: DataService::new(shared.clone()),
            groups: GroupsService::new(shared.clone()),
            admin: AdminService::new(shared.clone()),
            decoy_key: {
                use ring::rand::SecureRandom;
                let mut key = [0u8; 32];
                let _ = ring::rand::SystemRandom::new().fill(&mut key);
                key
            },
            shared,
        }
    }
}

/// A Kafka string as Silt's.
pub(crate) fn text(s: &StrBytes) -> String {
    s.to_string()
}

/// Silt's string as Kafka's.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// An error message as Kafka's nullable string (empty: null).
pub(crate) fn message(m: String) -> Option<StrBytes> {
    if m.is_empty() { None } else { Some(str_bytes(m)) }
}

/// What one connection remembers between requests.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The client's address (DescribeGroups shows it as the member's host).
    peer: Option<std::net::SocketAddr>,
    /// The client's address and certificate, and the password login cache (as on gRPC).
    info: ConnInfo,
    /// Who the connection authenticated as (SASL or a client certificate); `None` before.
    principal: Option<Principal>,
    sasl: sasl::Sasl,
    /// The last answer ends the connection (a failed authentication).
    close_after_answer: bool,
    /// The client id of the latest request header.
    client_id: String,
    /// KIP-848 members' last heartbeats, by (group, member id).
    members: std::collections::HashMap<(String, String), groups::MemberState>,
    /// Share group members' subscriptions (a null one in a heartbeat means unchanged).
    share_topics: std::collections::BTreeMap<(String, String), Vec<String>>,
    /// Share sessions: the partitions each share group member fetches through this connection.
    share_sessions: share::Sessions,
}

impl Connection {
    fn new(info: ConnInfo) -> Connection {
        Connection {
            peer: info.remote,
            // Mutual TLS: the certificate's name is the principal, no SASL needed.
            principal: info.certificate_name.as_deref().map(Principal::user),
            info,
            sasl: sasl::Sasl::default(),
            close_after_answer: false,
            client_id: String::new(),
            members: std::collections::HashMap::new(),
            share_topics: Default::default(),
            share_sessions: Default::default(),
        }
    }
}

tokio::task_local! {
    /// The principal of the connection whose request is being served.
    static PRINCIPAL: Option<Principal>;
}

/// A request to one of the broker's services, carrying this connection's principal (as the
/// gRPC authentication layer would put it there).
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Ok(Some(p)) = PRINCIPAL.try_with(Clone::clone) {
        r.extensions_mut().insert(p);
    }
    r
}

/// What the connection whose request is being served may do.
pub(crate) fn access() -> Access {
    Access::with_principal(PRINCIPAL.try_with(Clone::clone).ok().flatten())
}

fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
}

/// Accepts Kafka clients until the task is aborted; over TLS when the broker has TLS (the same
/// certificates as its client listener).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<Arc<ServerTls>>) {
    let _sweeper = AbortOnDrop(tokio::spawn(sweep_classic_groups(shared.clone())));
    let kafka = Arc::new(Kafka::new(shared));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    if let Some(tls) = tls {
        use futures_util::StreamExt;
        use tonic::transport::server::Connected;
        let mut incoming = crate::tls::incoming(listener, tls, None);
        while let Some(accepted) = incoming.next().await {
            let Ok(sock) = accepted else { continue };
            let Ok(permit) = connections.clone().acquire_owned().await else { return };
            let kafka = kafka.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let info = sock.connect_info();
                let peer = info.remote;
                if let Err(why) = connection(sock, info, &kafka).await {
                    tracing::info!(?peer, why, "Kafka connection closed");
                }
            });
        }
        return;
    }
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let (sock, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let kafka = kafka.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let info =
                ConnInfo { remote: Some(peer), certificate_name: None, login: Arc::default() };
            if let Err(why) = connection(sock, info, &kafka).await {
                tracing::info!(%peer, why, "Kafka connection closed");
            }
        });
    }
}

/// Aborts a task when dropped (the listener's helpers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often classic groups' sessions and rebalance deadlines are checked.
const CLASSIC_SWEEP: Duration = Duration::from_millis(500);

/// Expires classic group members and completes due rebalances even when no request comes;
/// forgets the groups this broker no longer coordinates (their members rejoin elsewhere).
async fn sweep_classic_groups(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CLASSIC_SWEEP);
    loop {
        tick.tick().await;
        let v = crate::service::metadata::view(&shared);
        let me = shared.config.node_id;
        let now = shared.coordinator.now_ms();
        shared.coordinator.classic.sweep(now, |g| {
            crate::groups::coordinator::locate(&v, g).ok().and_then(|l| l.leader) == Some(me)
        });
    }
}

/// Serves one connection: frames in, answers out, in order. `Err` says why it was closed.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    info: ConnInfo,
    k: &Kafka,
) -> Result<(), String> {
    let peer = info.remote;
    let mut conn = Connection::new(info);
    loop {
        // Before authentication only small frames (ApiVersions, SASL) are read.
        let max = if k.shared.auth.enabled() && conn.principal.is_none() {
            MAX_UNAUTHENTICATED_FRAME
        } else {
            k.shared.config.kafka_max_request_bytes
        };
        let len = match tokio::time::timeout(IDLE_TIMEOUT, sock.read_i32()).await {
            Err(_) => return Err("idle".into()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(len)) => len,
        };
        let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
        if len > max {
            return Err(format!("a {len}-byte frame exceeds kafka_max_request_bytes = {max}"));
        }
        if len < 8 {
            return Err(format!("a {len}-byte frame is shorter than a request header"));
        }
        let mut frame = BytesMut::zeroed(len);
        sock.read_exact(&mut frame[..2]).await.map_err(|e| e.to_string())?;
        // A Produce reserves its size from the broker's produce budget before its body is read
        // (as over gRPC), so a flood waits in the socket, not in broker memory.
        let budget = if i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16 {
            k.shared.produce_budget.reserve(len, peer).await
        } else {
            Reservation::default()
        };
        sock.read_exact(&mut frame[2..]).await.map_err(|e| e.to_string())?;
        let principal = conn.principal.clone();
        let answered = PRINCIPAL.scope(principal, handle(k, &mut conn, frame.freeze(), budget));
        if let Some(response) = answered.await? {
            sock.write_all(&response).await.map_err(|e| e.to_string())?;
            if conn.close_after_answer {
                let _ = sock.flush().await;
                return Err("authentication failed".into());
            }
        }
    }
}

/// Decodes `body` as the request of `key` at `version`.
fn decode<T: Decodable>(key: ApiKey, frame: &mut Bytes, version: i16) -> Result<T, String> {
    T::decode(frame, version).map_err(|e| format!("{key:?} v{version}: {e}"))
}

/// Decodes one request frame and returns the whole response frame (length prefix included), or
/// `None` when the request takes no answer (Produce with acks=0).
async fn handle(
    k: &Kafka,
    conn: &mut Connection,
    mut frame: Bytes,
    budget: Reservation,
) -> Result<Option<Bytes>, String> {
    let key_raw = frame.clone().get_i16();
    let version = {
        let mut b = frame.slice(2..);
        b.get_i16()
    };
    let key = ApiKey::try_from(key_raw).map_err(|_| format!("unknown API key {key_raw}"))?;
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| format!("{key:?} v{version}: bad request header: {e}"))?;
    let correlation_id = header.correlation_id;
    if let Some(id) = &header.client_id
        && conn.client_id != id.as_str()
    {
        conn.client_id = id.to_string();
    }
    if conn.members.len() > MAX_MEMBERS_PER_CONNECTION {
        conn.members.clear();
    }
    if key == ApiKey::ApiVersions {
        // Kafka's rule: an ApiVersions request of an unknown version is answered in v0 with
        // UNSUPPORTED_VERSION and the supported versions, so the client can retry.
        let (answer_version, error) =
            if supported(key, version) { (version, 0) } else { (0, UNSUPPORTED_VERSION) };
        if error == 0 {
            ApiVersionsRequest::decode(&mut frame, version)
                .map_err(|e| format!("ApiVersions v{version}: {e}"))?;
        }
        let body = api_versions(error);
        return respond(key, answer_version, correlation_id, &body).map(Some);
    }
    if !supported(key, version) {
        return unsupported::answer(key, version, correlation_id, frame).map(Some);
    }
    // With authentication on, a connection that has not authenticated may only negotiate
    // versions and authenticate (Kafka closes it otherwise, and so does Silt).
    if k.shared.auth.enabled()
        && conn.principal.is_none()
        && !matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    {
        return Err(format!("{key:?} before authentication"));
    }
    let cid = correlation_id;
    match key {
        ApiKey::Metadata => {
            let req: MetadataRequest = decode(key, &mut frame, version)?;
            let access = Access::with_principal(conn.principal.clone());
            respond(key, version, cid, &metadata::answer(&k.shared, &access, &req, version))
                .map(Some)
        }
        ApiKey::SaslHandshake => {
            let req: SaslHandshakeRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &sasl::handshake(conn, &req)).map(Some)
        }
        ApiKey::SaslAuthenticate => {
            let req: SaslAuthenticateRequest = decode(key, &mut frame, version)?;
            match sasl::authenticate(k, conn, req).await {
                Ok(body) => respond(key, version, cid, &body).map(Some),
                // Answer the failure, then close (the caller closes on the error after
                // writing): Kafka's behaviour, so a client cannot keep guessing on one
                // connection.
                Err(body) => {
                    conn.close_after_answer = true;
                    respond(key, version, cid, &body).map(Some)
                }
            }
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode(key, &mut frame, version)?;
            let acks = req.acks;
            let body = data::produce(k, req, version, budget).await;
            if acks == 0 { Ok(None) } else { respond(key, version, cid, &body).map(Some) }
        }
        ApiKey::Fetch => {
            let req: FetchRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &data::fetch(k, req, version).await).map(Some)
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &data::list_offsets(k, req).await).map(Some)
        }
        ApiKey::InitProducerId => {
            let req: InitProducerIdRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &data::init_producer_id(k, req).await).map(Some)
        }
        ApiKey::FindCoordinator => {
            let req: FindCoordinatorRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &groups::find_coordinator(k, req, version).await).map(Some)
        }
        ApiKey::OffsetCommit => {
            let req: OffsetCommitRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &groups::offset_commit(k, req).await).map(Some)
        }
        ApiKey::OffsetFetch => {
            let req: OffsetFetchRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &groups::offset_fetch(k, req, version).await).map(Some)
        }
        ApiKey::ListGroups => {
            let req: ListGroupsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &groups::list_groups(k, req).await).map(Some)
        }
        ApiKey::DeleteGroups => {
            let req: DeleteGroupsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &groups::delete_groups(k, req).await).map(Some)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let req: ConsumerGroupHeartbeatRequest = decode(key, &mut frame, version)?;
            let body = groups::consumer_group_heartbeat(k, conn, req).await;
            respond(key, version, cid, &body).map(Some)
        }
        ApiKey::JoinGroup => {
            let req: JoinGroupRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &classic::join_group(k, conn, req, version).await).map(Some)
        }
        ApiKey::SyncGroup => {
            let req: SyncGroupRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &classic::sync_group(k, req).await).map(Some)
        }
        ApiKey::Heartbeat => {
            let req: HeartbeatRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &classic::heartbeat(k, req).await).map(Some)
        }
        ApiKey::LeaveGroup => {
            let req: LeaveGroupRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &classic::leave_group(k, req, version).await).map(Some)
        }
        ApiKey::DescribeGroups => {
            let req: DescribeGroupsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &classic::describe_groups(k, req).await).map(Some)
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &admin::create_topics(k, req).await).map(Some)
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &admin::delete_topics(k, req, version).await).map(Some)
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &admin::describe_configs(k, req).await).map(Some)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: IncrementalAlterConfigsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &admin::incremental_alter_configs(k, req).await).map(Some)
        }
        ApiKey::DescribeCluster => {
            let req: DescribeClusterRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &admin::describe_cluster(k, &req)).map(Some)
        }
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &reassign::create_partitions(k, req).await).map(Some)
        }
        ApiKey::ElectLeaders => {
            let req: ElectLeadersRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &reassign::elect_leaders(k, req).await).map(Some)
        }
        ApiKey::AlterPartitionReassignments => {
            let req: AlterPartitionReassignmentsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &reassign::alter_reassignments(k, req).await).map(Some)
        }
        ApiKey::ListPartitionReassignments => {
            let req: ListPartitionReassignmentsRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &reassign::list_reassignments(k, req).await).map(Some)
        }
        ApiKey::ShareGroupHeartbeat => {
            let req: ShareGroupHeartbeatRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &share::heartbeat(k, conn, req).await).map(Some)
        }
        ApiKey::ShareFetch => {
            let req: ShareFetchRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &share::fetch(k, conn, req).await).map(Some)
        }
        ApiKey::ShareAcknowledge => {
            let req: ShareAcknowledgeRequest = decode(key, &mut frame, version)?;
            respond(key, version, cid, &share::acknowledge(k, req).await).map(Some)
        }
        _ => Err(format!("{key:?} is advertised but has no handler")),
    }
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(
        SUPPORTED
            .iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

/// A response frame: length, header (the version `key` uses at `version`), body.
fn respond(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    out.put_i32(0); // patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut out, key.response_header_version(version))
        .map_err(|e| format!("{key:?} v{version}: response header: {e}"))?;
    body.encode(&mut out, version).map_err(|e| format!("{key:?} v{version}: response: {e}"))?;
    let len = i32::try_from(out.len() - 4).map_err(|_| "response too large".to_string())?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}
