//! `txmq txn …`: transactional messages from the command line.

use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use txmq_client::{
    CheckRequest, Client, ClientError, EndTransactionRequest, LocalTransactionState,
    SendHalfRequest, TransactionChecker, TransactionInfo, TransactionProducer,
};

use super::Output;

#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// Send a half message, then (optionally) the decision.
    Send(TxnSendArgs),
    /// Decide a pending transaction.
    End(TxnEndArgs),
    /// Stay connected and answer check-backs for a producer group.
    Checker(TxnCheckerArgs),
    /// Pending transactions with their age and check count.
    List(TxnListArgs),
    /// One transaction's state, reason and history.
    Show { transaction_id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecideArg {
    Commit,
    Rollback,
    Unknown,
    /// Send no decision: the broker will check back.
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndArg {
    Commit,
    Rollback,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AnswerArg {
    Commit,
    Rollback,
    Unknown,
}

#[derive(Debug, Args)]
pub struct TxnSendArgs {
    pub topic: String,
    /// The producer group that owns the transaction.
    #[arg(long)]
    pub group: String,
    #[command(flatten)]
    pub message: super::message::MessageArgs,
    /// The decision to send after the half message.
    #[arg(long, value_enum, default_value = "commit")]
    pub decide: DecideArg,
    /// Ask for a later first check-back than the server default (capped at 1h).
    #[arg(long)]
    pub check_delay: Option<crate::config::HumanDuration>,
}

#[derive(Debug, Args)]
pub struct TxnEndArgs {
    pub transaction_id: String,
    #[arg(long)]
    pub group: String,
    #[arg(value_enum)]
    pub decision: EndArg,
    /// Record the decision as an operator's (reason `operator`).
    #[arg(long)]
    pub operator: bool,
}

#[derive(Debug, Args)]
pub struct TxnCheckerArgs {
    #[arg(long)]
    pub group: String,
    /// The answer to every check.
    #[arg(long, value_enum)]
    pub answer: AnswerArg,
    /// A name for this instance in the broker's logs.
    #[arg(long, default_value = "txmq-cli")]
    pub instance_id: String,
}

#[derive(Debug, Args)]
pub struct TxnListArgs {
    /// Only this producer group.
    #[arg(long, default_value = "")]
    pub group: String,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

pub async fn run(client: &Client, cmd: TxnCommand, out: Output) -> Result<(), ClientError> {
    match cmd {
        TxnCommand::Send(args) => send(client, args, out).await,
        TxnCommand::End(args) => end(client, args, out).await,
        TxnCommand::Checker(args) => checker(client, args, out).await,
        TxnCommand::List(args) => {
            let list = client.list_transactions(&args.group, args.limit).await?;
            let doc = json!({
                "transactions": list.transactions.iter().map(txn_json).collect::<Vec<_>>(),
                "pending_total": list.pending_total,
            });
            out.print(&doc, || {
                let mut s = format!("{} pending", list.pending_total);
                for t in &list.transactions {
                    s.push_str(&format!(
                        "\n{}\t{}\t{}\t{}\tchecks {}/{}\tage {:.1}s",
                        t.transaction_id,
                        t.group,
                        t.topic,
                        t.state,
                        t.check_count,
                        t.max_checks,
                        t.age_seconds
                    ));
                }
                s
            });
            Ok(())
        }
        TxnCommand::Show { transaction_id } => {
            let t = client.get_transaction(&transaction_id).await?;
            out.print(&txn_json(&t), || {
                use super::output::human_time;
                let mut s = format!(
                    "{} {} ({}) group {} topic {}\n  created {}  decided {}  next check {}  \
                     deadline {}  checks {}/{}",
                    t.transaction_id,
                    t.state,
                    t.reason,
                    t.group,
                    t.topic,
                    human_time(t.created_at_ms),
                    human_time(t.decided_at_ms),
                    human_time(t.next_check_at_ms),
                    human_time(t.deadline_at_ms),
                    t.check_count,
                    t.max_checks
                );
                for e in &t.history {
                    s.push_str(&format!("\n  {}  {}", human_time(e.at_ms), e.description));
                }
                s
            });
            Ok(())
        }
    }
}

/// A transaction as the JSON object of `txn list` / `txn show`.
pub fn txn_json(t: &TransactionInfo) -> Value {
    json!({
        "transaction_id": t.transaction_id,
        "group": t.group,
        "topic": t.topic,
        "message_id": t.message_id,
        "state": t.state,
        "reason": t.reason,
        "check_count": t.check_count,
        "max_checks": t.max_checks,
        "age_seconds": t.age_seconds,
        "created_at_ms": t.created_at_ms,
        "decided_at_ms": t.decided_at_ms,
        "next_check_at_ms": t.next_check_at_ms,
        "deadline_at_ms": t.deadline_at_ms,
        "queue": t.queue,
        "offset": t.offset,
        "history": t.history.iter().map(|e| json!({"at_ms": e.at_ms, "event": e.event, "description": e.description})).collect::<Vec<_>>(),
    })
}

async fn send(client: &Client, args: TxnSendArgs, out: Output) -> Result<(), ClientError> {
    let producer = TransactionProducer::new(client.clone(), args.group);
    let (body, key, tag, properties) = args.message.into_parts()?;
    let request = SendHalfRequest {
        topic: args.topic,
        body,
        key,
        tag,
        properties,
        ..Default::default()
    };
    let half = producer
        .send_half(request, args.check_delay.map(|d| d.0))
        .await?;
    let decision = match args.decide {
        DecideArg::Commit => Some(LocalTransactionState::Commit),
        DecideArg::Rollback => Some(LocalTransactionState::Rollback),
        DecideArg::Unknown => Some(LocalTransactionState::Unknown),
        DecideArg::None => None,
    };
    let end = match decision {
        Some(d) => Some(producer.end(&half.transaction_id, d).await?),
        None => None,
    };
    let state = end
        .as_ref()
        .map(|e| e.state.clone())
        .unwrap_or_else(|| "pending".into());
    let doc = json!({
        "transaction_id": half.transaction_id,
        "message_id": half.message_id,
        "topic": half.topic,
        "state": state,
        "queue": end.as_ref().and_then(|e| e.queue),
        "offset": end.as_ref().and_then(|e| e.offset),
    });
    out.print(&doc, || {
        format!(
            "transaction {} ({}) is {state}",
            half.transaction_id, half.message_id
        )
    });
    Ok(())
}

async fn end(client: &Client, args: TxnEndArgs, out: Output) -> Result<(), ClientError> {
    let decision = match args.decision {
        EndArg::Commit => LocalTransactionState::Commit,
        EndArg::Rollback => LocalTransactionState::Rollback,
    };
    let request = EndTransactionRequest {
        transaction_id: args.transaction_id,
        group: args.group,
        decision: decision.to_pb() as i32,
        operator: args.operator,
    };
    let r = client.end_transaction(request).await?;
    let doc = json!({
        "transaction_id": r.transaction_id,
        "state": r.state,
        "reason": r.reason,
        "repeated": r.repeated,
        "message_id": r.message_id,
        "queue": r.queue,
        "offset": r.offset,
    });
    let again = if r.repeated {
        " (already decided so)"
    } else {
        ""
    };
    out.print(&doc, || {
        format!("transaction {} is {}{again}", r.transaction_id, r.state)
    });
    Ok(())
}

/// Answers every check with the same state and prints each one.
struct FixedAnswer {
    answer: LocalTransactionState,
    out: Output,
}

impl TransactionChecker for FixedAnswer {
    async fn check(&self, request: &CheckRequest) -> LocalTransactionState {
        let answer = match self.answer {
            LocalTransactionState::Commit => "commit",
            LocalTransactionState::Rollback => "rollback",
            LocalTransactionState::Unknown => "unknown",
        };
        let doc = json!({"transaction_id": request.transaction_id, "answer": answer, "attempt": request.attempt});
        self.out.print(&doc, || {
            format!(
                "check {} of {}: answered {answer}",
                request.attempt, request.transaction_id
            )
        });
        self.answer
    }
}

async fn checker(client: &Client, args: TxnCheckerArgs, out: Output) -> Result<(), ClientError> {
    let answer = match args.answer {
        AnswerArg::Commit => LocalTransactionState::Commit,
        AnswerArg::Rollback => LocalTransactionState::Rollback,
        AnswerArg::Unknown => LocalTransactionState::Unknown,
    };
    let group = args.group.clone();
    let producer = TransactionProducer::new(client.clone(), args.group);
    let handle = producer.start_checker(Arc::new(FixedAnswer { answer, out }), args.instance_id);
    let shutdown = super::serve::shutdown_signal();
    tokio::pin!(shutdown);
    let mut connection = handle.connection();
    loop {
        // Text mode says where it is connected (stderr: stdout carries only the answers).
        if !out.json() {
            match connection.borrow_and_update().clone() {
                Some(leader) => eprintln!(
                    "connected to the leader at {leader}; waiting for check-backs of group \
                     '{group}'… (Ctrl-C to stop)"
                ),
                None => eprintln!("connecting to the leader…"),
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            changed = connection.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
