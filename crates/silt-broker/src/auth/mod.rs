//! Authentication and authorization on the client listener (with `auth = true`).
//!
//! **Who is calling.** A request carries a principal `User:NAME` from, in this order: a password
//! login (`silt-user-bin` / `silt-password-bin` request metadata, over TLS), checked against the
//! user's SCRAM-SHA-256 credential in the cluster image once per connection and then cached on
//! the connection ([`connection`]); or the subject CN of the client certificate the TLS
//! handshake verified. A request with neither, or with a wrong password, is refused with gRPC
//! `UNAUTHENTICATED` before its body is read ([`layer`]). Failed logins are logged with the
//! peer's address and slowed: each recent failure from an address doubles the wait before the
//! next attempt from it is verified, up to [`MAX_FAILURE_DELAY`].
//!
//! **What it may do.** [`Access::may`]: super users everything; anyone else what an allowing
//! ACL in the image grants and no deny refuses; no ACL = denied. With `auth = false` every
//! request may do everything (and carries no principal).

pub mod connection;
pub mod layer;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silt_raft::{AclOperation, ResourceType};
use tokio::sync::Semaphore;
use tonic::Status;

use crate::broker::Shared;
use connection::{ConnInfo, Login};

/// An authenticated identity, `User:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(pub Arc<str>);

impl Principal {
    pub fn user(name: &str) -> Principal {
        Principal(Arc::from(format!("User:{name}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `User:NAME` (NAME non-empty, at most 256 bytes, no control characters).
pub fn check_principal(p: &str) -> Result<(), String> {
    let name = p.strip_prefix("User:").ok_or_else(|| format!("{p:?} does not start with User:"))?;
    check_user_name(name)
}

/// A user name: 1 to 256 bytes, no control characters, not `*`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) || name == "*" {
        return Err(format!("{name:?} is not a user name (1-256 bytes, no control characters)"));
    }
    Ok(())
}

/// The most a failed login from one address waits before the next is verified.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// The wait after the first failure; doubled by each further failure.
const FIRST_FAILURE_DELAY: Duration = Duration::from_millis(200);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// Password verifications (PBKDF2, CPU-bound) running at once.
const CONCURRENT_VERIFICATIONS: usize = 2;

/// The broker's authentication state: whether it is on, the super users, and recent failures.
#[derive(Debug)]
pub struct Authenticator {
    enabled: bool,
    super_users: BTreeSet<String>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    verifying: Semaphore,
}

impl Authenticator {
    pub fn new(enabled: bool, super_users: &[String]) -> Authenticator {
        Authenticator {
            enabled,
            super_users: super_users.iter().cloned().collect(),
            failures: Mutex::default(),
            verifying: Semaphore::new(CONCURRENT_VERIFICATIONS),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Waits as long as recent failures from `ip` require before a credential is checked
    /// (SASL on the Kafka listener checks its own way, under the same throttle).
    pub(crate) async fn throttle(&self, ip: Option<IpAddr>) {
        let wait = self.delay(ip);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Records the outcome of a credential check from `ip` (a failure is logged).
    pub(crate) fn record(&self, remote: Option<SocketAddr>, user: &str, ok: bool) {
        let ip = remote.map(|a| a.ip());
        if ok {
            self.succeeded(ip);
        } else {
            self.failed(ip);
            log_failure(remote, user);
        }
    }

    /// How long an attempt from `ip` waits before it is verified (0 without recent failures).
    fn delay(&self, ip: Option<IpAddr>) -> Duration {
        let Some(ip) = ip else { return Duration::ZERO };
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.get(&ip) {
            Some((n, at)) if at.elapsed() < FAILURE_MEMORY && *n > 0 => {
                FIRST_FAILURE_DELAY.saturating_mul(1 << (n - 1).min(8)).min(MAX_FAILURE_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_TRACKED_ADDRESSES {
            f.retain(|_, (_, at)| at.elapsed() < FAILURE_MEMORY);
            if f.len() >= MAX_TRACKED_ADDRESSES {
                f.clear();
            }
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
    }

    fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
        }
    }
}

/// Credentials a request presented in its metadata.
pub(crate) struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
}

/// Establishes who sends a request on the connection `conn` (auth on).
pub(crate) async fn authenticate(
    shared: &Shared,
    conn: Option<&ConnInfo>,
    credentials: Option<Credentials>,
) -> Result<Principal, Status> {
    let auth = &shared.auth;
    let remote = conn.and_then(|c| c.remote);
    let Some(creds) = credentials else {
        return match conn.and_then(|c| c.certificate_name.clone()) {
            Some(cn) => Ok(Principal::user(&cn)),
            None => Err(Status::unauthenticated(
                "authentication required: log in with a user and password (--user) or \
                 present a client certificate",
            )),
        };
    };
    let presented = presented_digest(&creds);
    let image = shared.cluster.image();
    let stored = image.users.get(&creds.user);
    if let (Some(conn), Some(stored)) = (conn, stored) {
        let cached = conn.login.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = cached.as_ref()
            && l.presented == presented
            && l.stored_key == stored.stored_key
        {
            return Ok(l.principal.clone());
        }
    }
    let wait = auth.delay(remote.map(|a| a.ip()));
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let ok = match stored {
        Some(c) => {
            let Ok(_permit) = auth.verifying.acquire().await else {
                return Err(Status::unavailable("the broker is stopping"));
            };
            let (password, c) = (creds.password.clone(), c.clone());
            tokio::task::spawn_blocking(move || {
                silt_core::scram::verify(&password, &c.salt, c.iterations, &c.stored_key)
            })
            .await
            .unwrap_or(false)
        }
        None => false,
    };
    if !ok {
        auth.failed(remote.map(|a| a.ip()));
        log_failure(remote, &creds.user);
        return Err(Status::unauthenticated(format!(
            "authentication failed for user {:?}: unknown user or wrong password",
            creds.user
        )));
    }
    auth.succeeded(remote.map(|a| a.ip()));
    let principal = Principal::user(&creds.user);
    if let (Some(conn), Some(stored)) = (conn, stored) {
        *conn.login.lock().unwrap_or_else(|p| p.into_inner()) = Some(Login {
            presented,
            stored_key: stored.stored_key.clone(),
            principal: principal.clone(),
        });
    }
    Ok(principal)
}

fn log_failure(remote: Option<SocketAddr>, user: &str) {
    let peer = remote.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    tracing::warn!(%peer, user, "failed login");
}

fn presented_digest(c: &Credentials) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(c.user.len() as u64).to_be_bytes());
    ctx.update(c.user.as_bytes());
    ctx.update(&c.password);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What a request may do: its principal (none with auth off).
#[derive(Debug, Clone, Default)]
pub struct Access {
    principal: Option<Principal>,
}

impl Access {
    /// The access of `principal` (a Kafka connection's, once authenticated).
    pub(crate) fn with_principal(principal: Option<Principal>) -> Access {
        Access { principal }
    }

    /// The access of a request the [`layer`] let through.
    pub fn of<T>(req: &tonic::Request<T>) -> Access {
        Access { principal: req.extensions().get::<Principal>().cloned() }
    }

    /// Whether the request may perform `op` on the resource.
    pub(crate) fn may(
        &self,
        shared: &Shared,
        op: AclOperation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if !shared.auth.enabled {
            return true;
        }
        let Some(p) = &self.principal else { return false };
        shared.auth.super_users.contains(p.as_str())
            || shared.cluster.image().acl_allows(p.as_str(), op, rt, name)
    }

    /// Whether the request may perform `op` on some resource of type `rt`.
    pub(crate) fn may_any(&self, shared: &Shared, op: AclOperation, rt: ResourceType) -> bool {
        if !shared.auth.enabled {
            return true;
        }
        let Some(p) = &self.principal else { return false };
        shared.auth.super_users.contains(p.as_str())
            || silt_raft::image::acls_allow_any(&shared.cluster.image().acls, p.as_str(), op, rt)
    }

    /// Whether the request may perform `op` on the cluster.
    pub(crate) fn may_cluster(&self, shared: &Shared, op: AclOperation) -> bool {
        self.may(shared, op, ResourceType::Cluster, silt_raft::CLUSTER_RESOURCE)
    }

    /// `op` on topic `topic`, or TOPIC_AUTHORIZATION_FAILED.
    pub(crate) fn topic(
        &self,
        shared: &Shared,
        op: AclOperation,
        topic: &str,
    ) -> Result<(), crate::error::WireError> {
        if self.may(shared, op, ResourceType::Topic, topic) {
            return Ok(());
        }
        Err(crate::error::WireError::new(
            silt_proto::v1::ErrorCode::TopicAuthorizationFailed,
            format!("{} may not {op:?} topic {topic}", self.name()),
        ))
    }

    /// Writing `topic` from a client: never an internal topic, else WRITE on it.
    pub(crate) fn topic_write(
        &self,
        shared: &Shared,
        topic: &str,
    ) -> Result<(), crate::error::WireError> {
        if is_internal_topic(topic) {
            return Err(crate::error::WireError::new(
                silt_proto::v1::ErrorCode::TopicAuthorizationFailed,
                format!("{topic} is an internal topic: only brokers write it"),
            ));
        }
        self.topic(shared, AclOperation::Write, topic)
    }

    /// `op` on consumer group `group`, or GROUP_AUTHORIZATION_FAILED.
    pub(crate) fn group(
        &self,
        shared: &Shared,
        op: AclOperation,
        group: &str,
    ) -> Result<(), crate::error::WireError> {
        if self.may(shared, op, ResourceType::Group, group) {
            return Ok(());
        }
        Err(crate::error::WireError::new(
            silt_proto::v1::ErrorCode::GroupAuthorizationFailed,
            format!("{} may not {op:?} group {group}", self.name()),
        ))
    }

    /// `op` on transactional id `id`, or TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub(crate) fn transactional_id(
        &self,
        shared: &Shared,
        op: AclOperation,
        id: &str,
    ) -> Result<(), crate::error::WireError> {
        if self.may(shared, op, ResourceType::TransactionalId, id) {
            return Ok(());
        }
        Err(crate::error::WireError::new(
            silt_proto::v1::ErrorCode::TransactionalIdAuthorizationFailed,
            format!("{} may not {op:?} transactional id {id}", self.name()),
        ))
    }

    /// `op` on the cluster, or CLUSTER_AUTHORIZATION_FAILED.
    pub(crate) fn cluster(
        &self,
        shared: &Shared,
        op: AclOperation,
    ) -> Result<(), crate::error::WireError> {
        if self.may_cluster(shared, op) {
            return Ok(());
        }
        Err(crate::error::WireError::new(
            silt_proto::v1::ErrorCode::ClusterAuthorizationFailed,
            format!("{} may not {op:?} the cluster", self.name()),
        ))
    }

    /// The principal, for logs and messages (`ANONYMOUS` with auth off).
    pub fn name(&self) -> &str {
        self.principal.as_ref().map_or("User:ANONYMOUS", |p| p.as_str())
    }
}

/// Internal topics (`__` names) are written only by the brokers themselves.
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_one_address_double_the_wait_up_to_the_cap() {
        let a = Authenticator::new(true, &[]);
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        assert_eq!(a.delay(ip), Duration::ZERO);
        a.failed(ip);
        assert_eq!(a.delay(ip), FIRST_FAILURE_DELAY);
        a.failed(ip);
        assert_eq!(a.delay(ip), 2 * FIRST_FAILURE_DELAY);
        for _ in 0..20 {
            a.failed(ip);
        }
        assert_eq!(a.delay(ip), MAX_FAILURE_DELAY);
        assert_eq!(a.delay(Some("10.0.0.2".parse().unwrap())), Duration::ZERO, "per address");
        a.succeeded(ip);
        assert_eq!(a.delay(ip), Duration::ZERO);
    }

    #[test]
    fn principals_are_user_names() {
        assert!(check_principal("User:alice").is_ok());
        assert!(check_principal("alice").is_err());
        assert!(check_principal("User:").is_err());
        assert!(check_principal("User:*").is_err());
        assert!(check_principal("User:a\nb").is_err());
    }
}
