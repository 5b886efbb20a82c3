//! `Security`: users (SCRAM-SHA-256 credentials) and ACLs, committed through the metadata
//! quorum. Changes need ALTER on the cluster, listings DESCRIBE on the cluster.

use std::sync::Arc;

use silt_proto::v1::{self, ErrorCode};
use silt_raft::{
    AclBinding, AclFilter, AclOperation, AclPermission, Command, CommandResponse, PatternType,
    ResourceType, ScramCredential,
};
use tonic::{Request, Response, Status};

use super::admin::propose;
use crate::auth::{Access, check_principal, check_user_name};
use crate::broker::Shared;
use crate::error::WireError;

/// ACLs one request may create.
const MAX_ACLS_PER_REQUEST: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) struct SecurityService {
    shared: Arc<Shared>,
}

impl SecurityService {
    pub fn new(shared: Arc<Shared>) -> SecurityService {
        SecurityService { shared }
    }

    /// Waits (bounded) until this broker's image satisfies `done`, so a change is visible here
    /// when the call returns.
    async fn await_local(&self, done: impl Fn(&silt_raft::ClusterImage) -> bool) {
        for _ in 0..500 {
            if done(&self.shared.cluster.image()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn put_user(&self, r: v1::PutUserRequest) -> Result<(), WireError> {
        check_user_name(&r.name).map_err(invalid)?;
        silt_core::scram::check_credential(&r.salt, r.iterations, &r.stored_key, &r.server_key)
            .map_err(invalid)?;
        let credential = ScramCredential {
            salt: r.salt.to_vec(),
            iterations: r.iterations,
            stored_key: r.stored_key.to_vec(),
            server_key: r.server_key.to_vec(),
        };
        let name = r.name.clone();
        propose(
            &self.shared,
            Command::PutUser { name: name.clone(), credential: credential.clone() },
        )
        .await?;
        self.await_local(|i| i.users.get(&name) == Some(&credential)).await;
        tracing::info!(user = %name, "user credential set");
        Ok(())
    }

    async fn delete_user(&self, name: String) -> Result<(), WireError> {
        propose(&self.shared, Command::DeleteUser { name: name.clone() }).await?;
        self.await_local(|i| !i.users.contains_key(&name)).await;
        tracing::info!(user = %name, "user deleted");
        Ok(())
    }

    async fn create_acls(&self, acls: Vec<v1::Acl>) -> Result<(), WireError> {
        if acls.len() > MAX_ACLS_PER_REQUEST {
            return Err(invalid(format!("at most {MAX_ACLS_PER_REQUEST} ACLs per request")));
        }
        let acls = acls.into_iter().map(acl_from_proto).collect::<Result<Vec<_>, _>>()?;
        propose(&self.shared, Command::CreateAcls { acls: acls.clone() }).await?;
        self.await_local(|i| acls.iter().all(|a| i.acls.contains(a))).await;
        for a in &acls {
            tracing::info!(acl = ?a, "ACL created");
        }
        Ok(())
    }

    async fn delete_acls(&self, filter: Option<v1::AclFilter>) -> Result<Vec<v1::Acl>, WireError> {
        let filter = filter_from_proto(filter.unwrap_or_default())?;
        let removed = match propose(&self.shared, Command::DeleteAcls { filters: vec![filter] })
            .await?
        {
            CommandResponse::AclsDeleted(removed) => removed,
            other => {
                return Err(WireError::new(ErrorCode::UnknownServerError, format!("{other:?}")));
            }
        };
        self.await_local(|i| removed.iter().all(|a| !i.acls.contains(a))).await;
        for a in &removed {
            tracing::info!(acl = ?a, "ACL removed");
        }
        Ok(removed.iter().map(acl_to_proto).collect())
    }
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, message)
}

fn resource_type(v: i32) -> Result<Option<ResourceType>, WireError> {
    Ok(match v1::ResourceType::try_from(v) {
        Ok(v1::ResourceType::Unspecified) => None,
        Ok(v1::ResourceType::Topic) => Some(ResourceType::Topic),
        Ok(v1::ResourceType::Group) => Some(ResourceType::Group),
        Ok(v1::ResourceType::Cluster) => Some(ResourceType::Cluster),
        Ok(v1::ResourceType::TransactionalId) => Some(ResourceType::TransactionalId),
        Err(_) => return Err(invalid(format!("unknown resource type {v}"))),
    })
}

fn pattern(v: i32) -> Result<Option<PatternType>, WireError> {
    Ok(match v1::PatternType::try_from(v) {
        Ok(v1::PatternType::Unspecified) => None,
        Ok(v1::PatternType::Literal) => Some(PatternType::Literal),
        Ok(v1::PatternType::Prefixed) => Some(PatternType::Prefixed),
        Err(_) => return Err(invalid(format!("unknown pattern type {v}"))),
    })
}

fn operation(v: i32) -> Result<Option<AclOperation>, WireError> {
    use v1::AclOperation as P;
    Ok(Some(match P::try_from(v) {
        Ok(P::Unspecified) => return Ok(None),
        Ok(P::All) => AclOperation::All,
        Ok(P::Read) => AclOperation::Read,
        Ok(P::Write) => AclOperation::Write,
        Ok(P::Create) => AclOperation::Create,
        Ok(P::Delete) => AclOperation::Delete,
        Ok(P::Alter) => AclOperation::Alter,
        Ok(P::Describe) => AclOperation::Describe,
        Ok(P::DescribeConfigs) => AclOperation::DescribeConfigs,
        Ok(P::AlterConfigs) => AclOperation::AlterConfigs,
        Err(_) => return Err(invalid(format!("unknown operation {v}"))),
    }))
}

fn permission(v: i32) -> Result<Option<AclPermission>, WireError> {
    Ok(match v1::AclPermission::try_from(v) {
        Ok(v1::AclPermission::Unspecified) => None,
        Ok(v1::AclPermission::Allow) => Some(AclPermission::Allow),
        Ok(v1::AclPermission::Deny) => Some(AclPermission::Deny),
        Err(_) => return Err(invalid(format!("unknown permission {v}"))),
    })
}

/// A complete, checked ACL.
fn acl_from_proto(a: v1::Acl) -> Result<AclBinding, WireError> {
    let missing = |what: &str| invalid(format!("an ACL needs a {what}"));
    if a.principal != "User:*" {
        check_principal(&a.principal).map_err(invalid)?;
    }
    let resource_type = resource_type(a.resource_type)?.ok_or_else(|| missing("resource type"))?;
    let resource_name = match resource_type {
        ResourceType::Cluster => silt_raft::CLUSTER_RESOURCE.to_string(),
        _ if a.resource_name.is_empty() || a.resource_name.len() > 1024 => {
            return Err(invalid("an ACL's resource name must be 1 to 1024 bytes"));
        }
        _ => a.resource_name,
    };
    Ok(AclBinding {
        principal: a.principal,
        resource_type,
        resource_name,
        pattern: pattern(a.pattern)?.unwrap_or(PatternType::Literal),
        operation: operation(a.operation)?.ok_or_else(|| missing("operation"))?,
        permission: permission(a.permission)?.ok_or_else(|| missing("permission (allow/deny)"))?,
    })
}

fn filter_from_proto(f: v1::AclFilter) -> Result<AclFilter, WireError> {
    Ok(AclFilter {
        principal: f.principal,
        resource_type: resource_type(f.resource_type)?,
        resource_name: f.resource_name,
        pattern: pattern(f.pattern)?,
        operation: operation(f.operation)?,
        permission: permission(f.permission)?,
    })
}

fn acl_to_proto(a: &AclBinding) -> v1::Acl {
    let resource_type = match a.resource_type {
        ResourceType::Topic => v1::ResourceType::Topic,
        ResourceType::Group => v1::ResourceType::Group,
        ResourceType::Cluster => v1::ResourceType::Cluster,
        ResourceType::TransactionalId => v1::ResourceType::TransactionalId,
    };
    let pattern = match a.pattern {
        PatternType::Literal => v1::PatternType::Literal,
        PatternType::Prefixed => v1::PatternType::Prefixed,
    };
    let operation = match a.operation {
        AclOperation::All => v1::AclOperation::All,
        AclOperation::Read => v1::AclOperation::Read,
        AclOperation::Write => v1::AclOperation::Write,
        AclOperation::Create => v1::AclOperation::Create,
        AclOperation::Delete => v1::AclOperation::Delete,
        AclOperation::Alter => v1::AclOperation::Alter,
        AclOperation::Describe => v1::AclOperation::Describe,
        AclOperation::DescribeConfigs => v1::AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs => v1::AclOperation::AlterConfigs,
    };
    let permission = match a.permission {
        AclPermission::Allow => v1::AclPermission::Allow,
        AclPermission::Deny => v1::AclPermission::Deny,
    };
    v1::Acl {
        principal: a.principal.clone(),
        resource_type: resource_type as i32,
        resource_name: a.resource_name.clone(),
        pattern: pattern as i32,
        operation: operation as i32,
        permission: permission as i32,
    }
}

fn answer(r: Result<(), WireError>) -> v1::SecurityResponse {
    match r {
        Ok(()) => v1::SecurityResponse::default(),
        Err(e) => v1::SecurityResponse { error_code: e.code as i32, error_message: e.message },
    }
}

fn acls_answer(r: Result<Vec<v1::Acl>, WireError>) -> v1::AclsResponse {
    match r {
        Ok(acls) => v1::AclsResponse { acls, ..Default::default() },
        Err(e) => v1::AclsResponse {
            error_code: e.code as i32,
            error_message: e.message,
            acls: Vec::new(),
        },
    }
}

#[tonic::async_trait]
impl v1::security_server::Security for SecurityService {
    async fn put_user(
        &self,
        req: Request<v1::PutUserRequest>,
    ) -> Result<Response<v1::SecurityResponse>, Status> {
        let access = Access::of(&req);
        let r = match access.cluster(&self.shared, AclOperation::Alter) {
            Ok(()) => self.put_user(req.into_inner()).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(answer(r)))
    }

    async fn delete_user(
        &self,
        req: Request<v1::DeleteUserRequest>,
    ) -> Result<Response<v1::SecurityResponse>, Status> {
        let access = Access::of(&req);
        let r = match access.cluster(&self.shared, AclOperation::Alter) {
            Ok(()) => self.delete_user(req.into_inner().name).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(answer(r)))
    }

    async fn list_users(
        &self,
        req: Request<v1::ListUsersRequest>,
    ) -> Result<Response<v1::ListUsersResponse>, Status> {
        let access = Access::of(&req);
        Ok(Response::new(match access.cluster(&self.shared, AclOperation::Describe) {
            Ok(()) => v1::ListUsersResponse {
                users: self
                    .shared
                    .cluster
                    .image()
                    .users
                    .iter()
                    .map(|(name, c)| v1::UserListing {
                        name: name.clone(),
                        iterations: c.iterations,
                    })
                    .collect(),
                ..Default::default()
            },
            Err(e) => v1::ListUsersResponse {
                error_code: e.code as i32,
                error_message: e.message,
                users: Vec::new(),
            },
        }))
    }

    async fn create_acls(
        &self,
        req: Request<v1::CreateAclsRequest>,
    ) -> Result<Response<v1::SecurityResponse>, Status> {
        let access = Access::of(&req);
        let r = match access.cluster(&self.shared, AclOperation::Alter) {
            Ok(()) => self.create_acls(req.into_inner().acls).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(answer(r)))
    }

    async fn delete_acls(
        &self,
        req: Request<v1::DeleteAclsRequest>,
    ) -> Result<Response<v1::AclsResponse>, Status> {
        let access = Access::of(&req);
        let r = match access.cluster(&self.shared, AclOperation::Alter) {
            Ok(()) => self.delete_acls(req.into_inner().filter).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(acls_answer(r)))
    }

    async fn list_acls(
        &self,
        req: Request<v1::ListAclsRequest>,
    ) -> Result<Response<v1::AclsResponse>, Status> {
        let access = Access::of(&req);
        let r = access.cluster(&self.shared, AclOperation::Describe).and_then(|()| {
            let filter = filter_from_proto(req.into_inner().filter.unwrap_or_default())?;
            let image = self.shared.cluster.image();
            Ok(image.acls.iter().filter(|a| filter.matches(a)).map(acl_to_proto).collect())
        });
        Ok(Response::new(acls_answer(r)))
    }
}
