//! Users and ACLs (the `Security` service), through [`Admin`]. A user's password never leaves
//! the client: it derives the SCRAM-SHA-256 credential (random salt) and sends that.

use silt_proto::v1::security_client::SecurityClient;
use silt_proto::v1::{self, ErrorCode};

use crate::client::Transport;
use crate::{Admin, ClientError};

fn security(t: Transport) -> SecurityClient<Transport> {
    SecurityClient::new(t).max_decoding_message_size(crate::client::MAX_DECODE_BYTES)
}

fn check(code: i32, message: &str) -> Result<(), ClientError> {
    if code == ErrorCode::None as i32 { Ok(()) } else { Err(ClientError::server(code, message)) }
}

impl Admin {
    /// Creates user `name` with `password`, or replaces its password.
    pub async fn put_user(&self, name: &str, password: &str) -> Result<(), ClientError> {
        use ring::rand::SecureRandom;
        if password.is_empty() {
            return Err(ClientError::InvalidArgument("the password must not be empty".into()));
        }
        let mut salt = [0u8; silt_core::scram::SALT_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| ClientError::InvalidArgument("no system randomness for a salt".into()))?;
        let iterations = silt_core::scram::DEFAULT_ITERATIONS;
        let keys = silt_core::scram::derive(password.as_bytes(), &salt, iterations);
        let req = v1::PutUserRequest {
            name: name.to_string(),
            salt: salt.to_vec().into(),
            iterations,
            stored_key: keys.stored_key.to_vec().into(),
            server_key: keys.server_key.to_vec().into(),
        };
        let r = self
            .with_any(|t| {
                let req = req.clone();
                async move { security(t).put_user(req).await }
            })
            .await?;
        check(r.error_code, &r.error_message)
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), ClientError> {
        let req = v1::DeleteUserRequest { name: name.to_string() };
        let r = self
            .with_any(|t| {
                let req = req.clone();
                async move { security(t).delete_user(req).await }
            })
            .await?;
        check(r.error_code, &r.error_message)
    }

    /// Every user with its credential's iteration count, in name order.
    pub async fn list_users(&self) -> Result<Vec<v1::UserListing>, ClientError> {
        let r = self
            .with_any(|t| async move { security(t).list_users(v1::ListUsersRequest {}).await })
            .await?;
        check(r.error_code, &r.error_message)?;
        Ok(r.users)
    }

    pub async fn create_acls(&self, acls: Vec<v1::Acl>) -> Result<(), ClientError> {
        let req = v1::CreateAclsRequest { acls };
        let r = self
            .with_any(|t| {
                let req = req.clone();
                async move { security(t).create_acls(req).await }
            })
            .await?;
        check(r.error_code, &r.error_message)
    }

    /// Removes the ACLs `filter` selects; returns them.
    pub async fn delete_acls(&self, filter: v1::AclFilter) -> Result<Vec<v1::Acl>, ClientError> {
        let req = v1::DeleteAclsRequest { filter: Some(filter) };
        let r = self
            .with_any(|t| {
                let req = req.clone();
                async move { security(t).delete_acls(req).await }
            })
            .await?;
        check(r.error_code, &r.error_message)?;
        Ok(r.acls)
    }

    pub async fn list_acls(&self, filter: v1::AclFilter) -> Result<Vec<v1::Acl>, ClientError> {
        let req = v1::ListAclsRequest { filter: Some(filter) };
        let r = self
            .with_any(|t| {
                let req = req.clone();
                async move { security(t).list_acls(req).await }
            })
            .await?;
        check(r.error_code, &r.error_message)?;
        Ok(r.acls)
    }
}
