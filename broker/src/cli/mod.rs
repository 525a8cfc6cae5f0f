//! The `txmq` command line: `serve`, `dev`, and the client commands.

mod bench;
pub mod certs;
mod cluster_check;
mod commands;
mod connection;
mod dev;
mod group;
mod message;
mod message_lookup;
mod output;
mod serve;
mod txn;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::ServeArgs;
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "txmq",
    version,
    about = "txmq: a Raft-replicated message broker with transactional messages"
)]
pub struct Cli {
    /// Nodes to talk to: host:port[,host:port...] of their client API.
    #[arg(
        long,
        global = true,
        env = "TXMQ_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9870",
        help_heading = "Client options"
    )]
    pub endpoints: Vec<String>,
    /// Output format of client commands.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = OutputFormat::Text,
        help_heading = "Client options"
    )]
    pub output: OutputFormat,
    #[command(flatten)]
    pub connection: connection::ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a CA (kept if present) and a node and a client certificate signed by it.
    Create(certs::CreateCertsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node.
    Serve(Box<ServeArgs>),
    /// Start a local 3-node cluster under ./txmq-data for trying things out.
    Dev(dev::DevArgs),
    /// Make a local CA and certificates for trying TLS (not for production).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Create, list and describe topics.
    #[command(subcommand)]
    Topic(commands::TopicCommand),
    /// Publish a message to a normal topic.
    Send(commands::SendArgs),
    /// Receive (and acknowledge) messages as a consumer group; one line per message (a JSON
    /// object per line with `--output json`).
    Consume(group::ConsumeArgs),
    /// Consumer groups: list, describe, reset, config.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Read committed messages by offset from the node asked.
    Read(commands::ReadArgs),
    /// Look a message up by id or by key.
    #[command(subcommand)]
    Message(message_lookup::MessageCommand),
    /// Transactional messages: send, decide, answer check-backs, inspect.
    #[command(subcommand)]
    Txn(txn::TxnCommand),
    /// Load generator: publish, txn or consume, with a latency/throughput summary.
    Bench(bench::BenchArgs),
    /// Cluster status and membership.
    #[command(subcommand)]
    Cluster(commands::ClusterCommand),
    /// Users (when the cluster runs with authentication): create, delete, list, passwd.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Users' rights: grant, revoke, list.
    #[command(subcommand)]
    Acl(users::AclCommand),
    /// Who the node takes you for, and what you may do.
    Whoami,
}

/// The client options, global so they may come before or after a client command.
const CLIENT_OPTIONS: [&str; 8] = [
    "endpoints",
    "output",
    "tls_ca",
    "tls_server_name",
    "tls_client_cert",
    "tls_client_key",
    "user",
    "password",
];

/// The command line. clap hands global options to every subcommand; `serve` and `dev` never
/// use the client options, so their help does not list them.
pub fn command_line() -> clap::Command {
    let command = <Cli as clap::CommandFactory>::command();
    // A subcommand that already has an argument of a global's id keeps its own copy: give
    // `serve` and `dev` hidden copies.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| CLIENT_OPTIONS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().hide(true))
        .collect();
    ["serve", "dev"]
        .into_iter()
        .fold(command, |command, server| {
            command.mut_subcommand(server, |sub| sub.args(hidden.clone()))
        })
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Arguments as the OS gives them: one that is not UTF-8 is clap's error to report, not a
    // panic (`std::env::args` panics on it).
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = command_line()
        .try_get_matches_from(&raw)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let lossy: Vec<String> = raw
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return output::parse_error(&lossy, e);
        }
    };
    match cli.command {
        Command::Serve(args) => serve::serve(*args),
        Command::Dev(args) => dev::dev(args),
        Command::Certs(CertsCommand::Create(args)) => create_certs(&args, Output::new(cli.output)),
        command => {
            let out = Output::new(cli.output);
            let runtime = match client_runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    return out.fail("internal", &format!("cannot start the async runtime: {e}"));
                }
            };
            let options = match cli.connection.options(&cli.endpoints) {
                Ok(options) => options,
                Err(e) => return out.client_error(&e),
            };
            runtime.block_on(run_client_command(command, &cli.endpoints, options, out))
        }
    }
}

/// Runs one client command against the cluster at `endpoints`.
async fn run_client_command(
    command: Command,
    endpoints: &[String],
    options: txmq_client::ClientOptions,
    out: Output,
) -> ExitCode {
    let client = match txmq_client::Client::with_options(endpoints, options) {
        Ok(c) => c,
        Err(e) => return out.client_error(&e),
    };
    let result = match command {
        Command::Topic(cmd) => commands::topic(&client, cmd, out).await,
        Command::Send(args) => commands::send(&client, args, out).await,
        Command::Read(args) => commands::read(&client, args, out).await,
        Command::Message(cmd) => message_lookup::run(&client, cmd, out).await,
        Command::Cluster(cmd) => commands::cluster(&client, cmd, out).await,
        Command::Txn(cmd) => txn::run(&client, cmd, out).await,
        Command::Bench(args) => return bench::run(&client, args, out).await,
        Command::Consume(args) => group::consume(&client, args, out).await,
        Command::Group(cmd) => group::group(&client, cmd, out).await,
        Command::User(cmd) => users::user(&client, cmd, out).await,
        Command::Acl(cmd) => users::acl(&client, cmd, out).await,
        Command::Whoami => users::who_am_i(&client, out).await,
        Command::Serve(_) | Command::Dev(_) | Command::Certs(_) => {
            unreachable!("handled by cli::main")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => out.client_error(&e),
    }
}

/// `txmq certs create`: writes the files and names them.
fn create_certs(args: &certs::CreateCertsArgs, out: Output) -> ExitCode {
    match certs::create(&args.dir, &args.hosts) {
        Ok(files) => {
            out.print(
                &serde_json::json!({
                    "ca": files.ca, "node_cert": files.node_cert, "node_key": files.node_key,
                    "client_cert": files.client_cert, "client_key": files.client_key,
                }),
                || {
                    format!(
                        "wrote {} (CA), {} + {} (node), {} + {} (client)",
                        files.ca.display(),
                        files.node_cert.display(),
                        files.node_key.display(),
                        files.client_cert.display(),
                        files.client_key.display()
                    )
                },
            );
            ExitCode::SUCCESS
        }
        Err(e) => out.fail("invalid_argument", &e),
    }
}

/// The small runtime of the client commands and `txmq dev` (two worker threads are plenty).
pub(crate) fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(args: &[&str]) -> String {
        match command_line().try_get_matches_from(args) {
            Err(e) => e.render().to_string(),
            Ok(_) => panic!("{args:?} did not print help"),
        }
    }

    #[test]
    fn server_commands_do_not_list_client_options() {
        for server in ["serve", "dev"] {
            let text = help(&["txmq", server, "--help"]);
            for flag in [
                "--endpoints",
                "--tls-client-cert",
                "--user",
                "--password",
                "--output",
            ] {
                assert!(
                    !text.contains(flag),
                    "`txmq {server} --help` lists {flag}:\n{text}"
                );
            }
        }
        let text = help(&["txmq", "topic", "list", "--help"]);
        assert!(
            text.contains("--endpoints") && text.contains("--user"),
            "{text}"
        );
    }

    #[test]
    fn client_options_go_before_or_after_the_command() {
        for args in [
            ["txmq", "--endpoints", "a:1", "topic", "list"],
            ["txmq", "topic", "list", "--endpoints", "a:1"],
        ] {
            let matches = command_line().try_get_matches_from(args).expect("parses");
            let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("a Cli");
            assert_eq!(cli.endpoints, vec!["a:1".to_string()]);
        }
        let serve = command_line().try_get_matches_from(["txmq", "serve", "--node-id", "1"]);
        assert!(serve.is_ok(), "{serve:?}");
    }
}
