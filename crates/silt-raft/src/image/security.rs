//! Users and ACLs in the cluster image: SCRAM-SHA-256 credentials (never a password) and
//! Kafka-style ACL bindings, with the pure decision of whether an ACL set allows an operation.
//! Super users and "is authentication on" are broker config, decided by the broker before it
//! asks [`ClusterImage::acl_allows`](crate::ClusterImage::acl_allows).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A user's SCRAM-SHA-256 credential (RFC 5802/7677): the salt, the PBKDF2 iteration count, and
/// the keys derived from the salted password. The password itself is never stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential").field("iterations", &self.iterations).finish()
    }
}

/// What an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How an ACL's resource name matches: exactly (`*` = every resource of the type), or as a
/// prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

/// Kafka's ACL operations (`All` covers every one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
}

impl AclOperation {
    /// Whether an ACL for `self` allows `requested` (Kafka's implications: read, write, delete
    /// and alter imply describe; alter-configs implies describe-configs).
    fn allows(self, requested: AclOperation) -> bool {
        use AclOperation::*;
        self == requested
            || self == All
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a deny for `self` denies `requested` (only itself and `All`: a deny is never
    /// widened by implication).
    fn denies(self, requested: AclOperation) -> bool {
        self == requested || self == AclOperation::All
    }
}

/// Allow or deny; a matching deny wins over any allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclPermission {
    Allow,
    Deny,
}

/// One ACL: `principal` (`User:NAME`, or `User:*` for every principal) may or may not perform
/// `operation` on the resources `resource_name` matches under `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub principal: String,
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// The wildcard principal and literal resource name.
pub const WILDCARD: &str = "*";
/// The one cluster resource's name.
pub const CLUSTER_RESOURCE: &str = "cluster";

impl AclBinding {
    fn matches_principal(&self, principal: &str) -> bool {
        self.principal == principal || self.principal == "User:*"
    }

    fn matches_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

/// Selects ACLs to list or remove: every `None` field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub principal: Option<String>,
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: Option<PatternType>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// Whether `acl` is selected (fields compared exactly: a filter for topic `a` does not
    /// select a prefixed ACL on `a`'s prefix).
    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.resource_name.as_ref().is_none_or(|n| *n == acl.resource_name)
            && self.pattern.is_none_or(|p| p == acl.pattern)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// Whether `acls` allow `principal` to perform `operation` on the resource: some allow matches
/// and no deny does. No matching ACL = denied.
pub fn acls_allow(
    acls: &BTreeSet<AclBinding>,
    principal: &str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    let mut allowed = false;
    for acl in acls {
        if !acl.matches_principal(principal) || !acl.matches_resource(resource_type, name) {
            continue;
        }
        match acl.permission {
            AclPermission::Deny if acl.operation.denies(operation) => return false,
            AclPermission::Allow if acl.operation.allows(operation) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Whether `acls` allow `principal` `operation` on some resource of the type (Kafka's
/// "authorize by resource type", used for idempotent producer ids): an allow exists that no
/// deny on every resource of the type (literal `*` or empty prefix) shadows.
pub fn acls_allow_any(
    acls: &BTreeSet<AclBinding>,
    principal: &str,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    let relevant =
        acls.iter().filter(|a| a.matches_principal(principal) && a.resource_type == resource_type);
    let mut allowed = false;
    for acl in relevant {
        let everything = match acl.pattern {
            PatternType::Literal => acl.resource_name == WILDCARD,
            PatternType::Prefixed => acl.resource_name.is_empty(),
        };
        match acl.permission {
            AclPermission::Deny if everything && acl.operation.denies(operation) => return false,
            AclPermission::Allow if acl.operation.allows(operation) => allowed = true,
            _ => {}
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        principal: &str,
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        op: AclOperation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            principal: principal.into(),
            resource_type: rt,
            resource_name: name.into(),
            pattern,
            operation: op,
            permission: perm,
        }
    }

    use AclOperation::*;
    use AclPermission::*;
    use PatternType::*;
    use ResourceType::*;

    #[test]
    fn no_acl_denies_and_an_allow_grants_exactly_its_operation() {
        let mut acls = BTreeSet::new();
        assert!(!acls_allow(&acls, "User:a", Read, Topic, "t"));
        acls.insert(acl("User:a", Topic, "t", Literal, Read, Allow));
        assert!(acls_allow(&acls, "User:a", Read, Topic, "t"));
        assert!(acls_allow(&acls, "User:a", Describe, Topic, "t"), "read implies describe");
        assert!(!acls_allow(&acls, "User:a", Write, Topic, "t"));
        assert!(!acls_allow(&acls, "User:b", Read, Topic, "t"));
        assert!(!acls_allow(&acls, "User:a", Read, Topic, "t2"));
        assert!(!acls_allow(&acls, "User:a", Read, Group, "t"));
    }

    #[test]
    fn deny_wins_over_allow_and_is_not_widened() {
        let mut acls = BTreeSet::new();
        acls.insert(acl("User:*", Topic, "*", Literal, All, Allow));
        acls.insert(acl("User:a", Topic, "secret", Prefixed, Read, Deny));
        assert!(acls_allow(&acls, "User:a", Read, Topic, "public"));
        assert!(!acls_allow(&acls, "User:a", Read, Topic, "secret-1"));
        assert!(
            acls_allow(&acls, "User:a", Describe, Topic, "secret-1"),
            "deny read ≠ deny describe"
        );
        assert!(acls_allow(&acls, "User:b", Read, Topic, "secret-1"));
    }

    #[test]
    fn prefixed_and_wildcard_patterns_match_by_type() {
        let mut acls = BTreeSet::new();
        acls.insert(acl("User:a", Topic, "orders.", Prefixed, Write, Allow));
        acls.insert(acl("User:a", Group, "*", Literal, Read, Allow));
        assert!(acls_allow(&acls, "User:a", Write, Topic, "orders.eu"));
        assert!(!acls_allow(&acls, "User:a", Write, Topic, "order"));
        assert!(acls_allow(&acls, "User:a", Read, Group, "anything"));
        assert!(acls_allow(&acls, "User:a", Describe, Group, "anything"));
        assert!(!acls_allow(&acls, "User:a", Delete, Group, "anything"));
        assert!(acls_allow_any(&acls, "User:a", Write, Topic));
        assert!(!acls_allow_any(&acls, "User:b", Write, Topic));
        acls.insert(acl("User:a", Topic, "", Prefixed, Write, Deny));
        assert!(!acls_allow_any(&acls, "User:a", Write, Topic));
    }

    #[test]
    fn alter_configs_implies_describe_configs_only() {
        let acls: BTreeSet<_> =
            [acl("User:a", Topic, "t", Literal, AlterConfigs, Allow)].into_iter().collect();
        assert!(acls_allow(&acls, "User:a", DescribeConfigs, Topic, "t"));
        assert!(!acls_allow(&acls, "User:a", Describe, Topic, "t"));
        assert!(!acls_allow(&acls, "User:a", Alter, Topic, "t"));
    }

    #[test]
    fn filters_select_fields_exactly() {
        let a = acl("User:a", Topic, "t", Prefixed, Read, Allow);
        assert!(AclFilter::default().matches(&a));
        let f = AclFilter { resource_name: Some("t".into()), ..Default::default() };
        assert!(f.matches(&a));
        let f = AclFilter { pattern: Some(Literal), ..Default::default() };
        assert!(!f.matches(&a));
        let f = AclFilter { principal: Some("User:b".into()), ..Default::default() };
        assert!(!f.matches(&a));
    }
}
