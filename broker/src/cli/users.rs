//! `txmq user …`, `txmq acl …` and `txmq whoami`: users and their rights.

use std::io::BufRead;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use txmq_client::{AccessRight, Client, ClientError, UserInfo};

use super::Output;
use super::output::human_time;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (without rights: grant them with `txmq acl grant`).
    Create {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user and its rights (refused for the last administrator).
    Delete { name: String },
    /// Every user with its rights (never a password or its hash).
    List,
    /// Set a user's password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Make a new secret key for a user, for RocketMQ clients (their access key is the user's
    /// name); printed once, never shown again. Replaces any earlier one.
    AccessKey {
        name: String,
        /// Delete the user's secret key instead.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PasswordArgs {
    /// The new password (visible in the process list and shell history: prefer
    /// --password-stdin).
    #[arg(long = "new-password", value_name = "PASSWORD")]
    pub new_password: Option<String>,
    /// Read the new password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Give a user a right.
    Grant(RightArgs),
    /// Take a right away (name it exactly as it was granted).
    Revoke(RightArgs),
    /// Every user's rights (or one user's).
    List { name: Option<String> },
}

#[derive(Debug, Args)]
pub struct RightArgs {
    pub name: String,
    /// Send to topics matching the pattern (a name, or a prefix ending in `*`): plain and half
    /// messages, their transactions' decisions and check-backs.
    #[arg(long, value_name = "TOPIC_PATTERN", conflicts_with_all = ["consume", "admin"])]
    pub produce: Option<String>,
    /// Receive from topics matching the pattern, in the groups of `--group`: receive, ack,
    /// change invisibility, read, describe and reset those groups.
    #[arg(
        long,
        value_name = "TOPIC_PATTERN",
        requires = "group",
        conflicts_with = "admin"
    )]
    pub consume: Option<String>,
    /// The consumer groups of a `--consume` right (a name, or a prefix ending in `*`).
    #[arg(long, value_name = "GROUP_PATTERN", requires = "consume")]
    pub group: Option<String>,
    /// Everything: topics, groups' settings, membership, operator decisions, users and rights.
    #[arg(long)]
    pub admin: bool,
}

impl RightArgs {
    fn right(&self) -> Result<AccessRight, ClientError> {
        let right = |kind: &str, topics: &str, groups: &str| AccessRight {
            kind: kind.into(),
            topics: topics.into(),
            groups: groups.into(),
        };
        match (&self.produce, &self.consume, &self.group, self.admin) {
            (Some(topics), None, None, false) => Ok(right("produce", topics, "")),
            (None, Some(topics), Some(groups), false) => Ok(right("consume", topics, groups)),
            (None, None, None, true) => Ok(right("admin", "", "")),
            _ => Err(ClientError::new(
                "invalid_argument",
                "name one right: --produce TOPIC_PATTERN, --consume TOPIC_PATTERN --group \
                 GROUP_PATTERN, or --admin",
            )),
        }
    }
}

impl PasswordArgs {
    fn read(&self) -> Result<String, ClientError> {
        if let Some(p) = &self.new_password {
            return Ok(p.clone());
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| ClientError::new("invalid_argument", format!("reading stdin: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

pub async fn user(client: &Client, cmd: UserCommand, out: Output) -> Result<(), ClientError> {
    match cmd {
        UserCommand::Create { name, password } => {
            let info = client.create_user(&name, &password.read()?).await?;
            print_user(&info, out, "created user");
        }
        UserCommand::Passwd { name, password } => {
            let info = client.change_password(&name, &password.read()?).await?;
            print_user(&info, out, "changed the password of");
        }
        UserCommand::Delete { name } => {
            client.delete_user(&name).await?;
            out.print(&json!({"deleted_user": name}), || {
                format!("deleted user {name}")
            });
        }
        UserCommand::List => print_users(&client.list_users().await?, out),
        UserCommand::AccessKey { name, remove } => {
            let key = client.create_access_key(&name, remove).await?;
            let json = json!({"access_key": key.access_key, "secret_key": key.secret_key});
            out.print(&json, || match remove {
                true => format!("deleted the secret key of {name}"),
                false => format!(
                    "access key: {}\nsecret key: {}\n(shown once: give both to the RocketMQ client's credentials)",
                    key.access_key, key.secret_key
                ),
            });
        }
    }
    Ok(())
}

pub async fn acl(client: &Client, cmd: AclCommand, out: Output) -> Result<(), ClientError> {
    match cmd {
        AclCommand::Grant(args) => {
            let info = client.grant(&args.name, args.right()?).await?;
            print_user(&info, out, "rights of");
        }
        AclCommand::Revoke(args) => {
            let info = client.revoke(&args.name, args.right()?).await?;
            print_user(&info, out, "rights of");
        }
        AclCommand::List { name } => {
            let mut users = client.list_users().await?;
            if let Some(name) = name {
                users.retain(|u| u.name == name);
                if users.is_empty() {
                    return Err(ClientError::new(
                        "not_found",
                        format!("user '{name}' does not exist"),
                    ));
                }
            }
            print_users(&users, out);
        }
    }
    Ok(())
}

pub async fn who_am_i(client: &Client, out: Output) -> Result<(), ClientError> {
    let info = client.who_am_i().await?;
    if !info.authentication {
        let doc = json!({"name": info.name, "authentication": false});
        out.print(&doc, || {
            "authentication is off on this node: every caller may do everything".into()
        });
        return Ok(());
    }
    print_user(&info, out, "you are");
    Ok(())
}

fn user_json(u: &UserInfo) -> Value {
    json!({
        "name": u.name,
        "created_ms": u.created_ms,
        "rights": u.rights.iter().map(right_text).collect::<Vec<_>>(),
    })
}

fn right_text(r: &AccessRight) -> String {
    match r.kind.as_str() {
        "produce" => format!("--produce {}", r.topics),
        "consume" => format!("--consume {} --group {}", r.topics, r.groups),
        "admin" => "--admin".into(),
        other => other.to_string(),
    }
}

fn user_text(u: &UserInfo) -> String {
    let rights: Vec<String> = u.rights.iter().map(right_text).collect();
    let rights = match rights.is_empty() {
        true => "(no rights)".to_string(),
        false => rights.join(", "),
    };
    format!("{}  created {}  {rights}", u.name, human_time(u.created_ms))
}

fn print_user(u: &UserInfo, out: Output, what: &str) {
    out.print(&user_json(u), || format!("{what} {}", user_text(u)));
}

fn print_users(users: &[UserInfo], out: Output) {
    let doc = json!({"users": users.iter().map(user_json).collect::<Vec<_>>()});
    out.print(&doc, || {
        users.iter().map(user_text).collect::<Vec<_>>().join("\n")
    });
}
