//! `silt user` and `silt acl`, and the password prompt.

use std::io::{BufRead, Write};

use serde_json::json;
use silt_client::Client;
use silt_proto::v1;

use crate::args::{AclArgs, AclCmd, OperationArg, Output, UserCmd};
use crate::error::CliError;

/// Reads a password from the terminal without echoing it (`stty -echo` on /dev/tty); without a
/// terminal, an error that names the environment variables instead.
pub fn prompt_password(prompt: &str) -> Result<String, CliError> {
    let no_tty = || {
        CliError::usage(
            "no terminal to ask for a password: set SILT_PASSWORD (or SILT_NEW_PASSWORD)",
        )
    };
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty");
    let Ok(mut tty) = tty else { return Err(no_tty()) };
    let stty = |arg: &str| {
        std::fs::File::open("/dev/tty").ok().and_then(|stdin| {
            std::process::Command::new("stty").arg(arg).stdin(stdin).status().ok()
        })
    };
    let _ = write!(tty, "{prompt}");
    let _ = tty.flush();
    let hidden = stty("-echo").is_some_and(|s| s.success());
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    if hidden {
        stty("echo");
        let _ = writeln!(tty);
    }
    read.map_err(|_| no_tty())?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(CliError::usage("empty password"));
    }
    Ok(password)
}

/// The new password of `user create`: SILT_NEW_PASSWORD, else SILT_PASSWORD unless it is the
/// login's own, else a prompt (twice).
fn new_password(name: &str, logged_in: bool) -> Result<String, CliError> {
    for (var, usable) in [("SILT_NEW_PASSWORD", true), ("SILT_PASSWORD", !logged_in)] {
        if let Ok(p) = std::env::var(var)
            && usable
            && !p.is_empty()
        {
            return Ok(p);
        }
    }
    let first = prompt_password(&format!("new password for {name}: "))?;
    if prompt_password("again: ")? != first {
        return Err(CliError::usage("the passwords differ"));
    }
    Ok(first)
}

pub async fn user(
    client: &Client,
    cmd: UserCmd,
    out: Output,
    logged_in: bool,
) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        UserCmd::Create { name } => {
            let password = new_password(&name, logged_in)?;
            admin.put_user(&name, &password).await?;
            match out {
                Output::Json => {
                    outln!("{}", json!({"user": name, "principal": format!("User:{name}")}))
                }
                Output::Text => outln!("user {name} saved (principal User:{name})"),
            }
        }
        UserCmd::Delete { name } => {
            admin.delete_user(&name).await?;
            match out {
                Output::Json => outln!("{}", json!({"deleted": name})),
                Output::Text => outln!("user {name} deleted"),
            }
        }
        UserCmd::List => {
            let users = admin.list_users().await?;
            match out {
                Output::Json => {
                    let list: Vec<_> = users
                        .iter()
                        .map(|u| json!({"name": u.name, "mechanism": "SCRAM-SHA-256", "iterations": u.iterations}))
                        .collect();
                    outln!("{}", json!({ "users": list }));
                }
                Output::Text => {
                    outln!("{:<32} {:<14} ITERATIONS", "NAME", "MECHANISM");
                    for u in &users {
                        outln!("{:<32} {:<14} {}", u.name, "SCRAM-SHA-256", u.iterations);
                    }
                }
            }
        }
    }
    Ok(())
}

fn operation(op: OperationArg) -> v1::AclOperation {
    match op {
        OperationArg::All => v1::AclOperation::All,
        OperationArg::Read => v1::AclOperation::Read,
        OperationArg::Write => v1::AclOperation::Write,
        OperationArg::Create => v1::AclOperation::Create,
        OperationArg::Delete => v1::AclOperation::Delete,
        OperationArg::Alter => v1::AclOperation::Alter,
        OperationArg::Describe => v1::AclOperation::Describe,
        OperationArg::DescribeConfigs => v1::AclOperation::DescribeConfigs,
        OperationArg::AlterConfigs => v1::AclOperation::AlterConfigs,
    }
}

/// The resource type and name the flags name, if any.
fn resource(a: &AclArgs) -> Option<(v1::ResourceType, String)> {
    let r = &a.resource;
    if let Some(t) = &r.topic {
        Some((v1::ResourceType::Topic, t.clone()))
    } else if let Some(g) = &r.group {
        Some((v1::ResourceType::Group, g.clone()))
    } else if let Some(t) = &r.transactional_id {
        Some((v1::ResourceType::TransactionalId, t.clone()))
    } else if r.cluster {
        Some((v1::ResourceType::Cluster, "cluster".to_string()))
    } else {
        None
    }
}

/// The filter the flags given select (absent flags match anything).
fn filter(a: &AclArgs) -> v1::AclFilter {
    let (principal, permission) = match (&a.allow, &a.deny) {
        (Some(p), _) => (Some(p.clone()), v1::AclPermission::Allow),
        (None, Some(p)) => (Some(p.clone()), v1::AclPermission::Deny),
        (None, None) => (None, v1::AclPermission::Unspecified),
    };
    let (resource_type, resource_name) = match resource(a) {
        Some((t, n)) => (t, Some(n)),
        None => (v1::ResourceType::Unspecified, None),
    };
    let pattern = match (a.prefixed, resource_name.is_some()) {
        (true, _) => v1::PatternType::Prefixed,
        (false, true) => v1::PatternType::Literal,
        (false, false) => v1::PatternType::Unspecified,
    };
    v1::AclFilter {
        principal,
        resource_type: resource_type as i32,
        resource_name,
        pattern: pattern as i32,
        operation: a.operation.map_or(v1::AclOperation::Unspecified, operation) as i32,
        permission: permission as i32,
    }
}

fn name_of(v: &str, prefix: &str) -> String {
    v.trim_start_matches(prefix).to_lowercase().replace('_', "-")
}

fn acl_json(a: &v1::Acl) -> serde_json::Value {
    json!({
        "principal": a.principal,
        "permission": name_of(a.permission().as_str_name(), "ACL_PERMISSION_"),
        "operation": name_of(a.operation().as_str_name(), "ACL_OPERATION_"),
        "resource_type": name_of(a.resource_type().as_str_name(), "RESOURCE_TYPE_"),
        "resource_name": a.resource_name,
        "pattern": name_of(a.pattern().as_str_name(), "PATTERN_TYPE_"),
    })
}

fn print_acls(acls: &[v1::Acl], out: Output) -> Result<(), CliError> {
    match out {
        Output::Json => {
            let list: Vec<_> = acls.iter().map(acl_json).collect();
            outln!("{}", json!({ "acls": list }));
        }
        Output::Text => {
            outln!(
                "{:<24} {:<10} {:<17} {:<16} {:<9} NAME",
                "PRINCIPAL",
                "PERMISSION",
                "OPERATION",
                "RESOURCE",
                "PATTERN"
            );
            for a in acls {
                let j = acl_json(a);
                let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
                outln!(
                    "{:<24} {:<10} {:<17} {:<16} {:<9} {}",
                    a.principal,
                    s("permission"),
                    s("operation"),
                    s("resource_type"),
                    s("pattern"),
                    a.resource_name
                );
            }
        }
    }
    Ok(())
}

pub async fn acl(client: &Client, cmd: AclCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        AclCmd::Add(a) => {
            let f = filter(&a);
            let principal = f.principal.clone().ok_or_else(|| {
                CliError::usage("acl add needs --allow PRINCIPAL or --deny PRINCIPAL")
            })?;
            let op = a.operation.ok_or_else(|| CliError::usage("acl add needs --operation"))?;
            let (rt, name) = resource(&a).ok_or_else(|| {
                CliError::usage("acl add needs --topic, --group, --transactional-id or --cluster")
            })?;
            let acl = v1::Acl {
                principal,
                resource_type: rt as i32,
                resource_name: name,
                pattern: if a.prefixed {
                    v1::PatternType::Prefixed
                } else {
                    v1::PatternType::Literal
                } as i32,
                operation: operation(op) as i32,
                permission: f.permission,
            };
            admin.create_acls(vec![acl.clone()]).await?;
            match out {
                Output::Json => outln!("{}", json!({ "added": acl_json(&acl) })),
                Output::Text => print_acls(&[acl], out)?,
            }
        }
        AclCmd::Remove(a) => {
            let f = filter(&a);
            if f.principal.is_none() && f.resource_type == 0 && f.operation == 0 {
                return Err(CliError::usage(
                    "acl remove needs at least one of --allow/--deny, --operation and a resource",
                ));
            }
            let removed = admin.delete_acls(f).await?;
            match out {
                Output::Json => {
                    let list: Vec<_> = removed.iter().map(acl_json).collect();
                    outln!("{}", json!({ "removed": list }));
                }
                Output::Text => {
                    outln!("removed {} ACL(s)", removed.len());
                    if !removed.is_empty() {
                        print_acls(&removed, out)?;
                    }
                }
            }
        }
        AclCmd::List(a) => print_acls(&admin.list_acls(filter(&a)).await?, out)?,
    }
    Ok(())
}
