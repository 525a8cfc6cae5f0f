//! SendMessage: each message becomes a txmq send (NORMAL) or half message (TRANSACTION) on its
//! topic, checked against the topic's type first. A transactional message's producer group is
//! its topic's name (RocketMQ producers have none), which EndTransaction and check-backs use.
//! FIFO (message group) and DELAY (delivery time) messages are refused as not supported.

use txmq_proto::client as pb;
use txmq_proto::client::txmq_server::Txmq;
use txmq_proto::rocketmq as rmq;
use txmq_proto::rocketmq::Code;
use txmq_state::TopicKind;

use super::{codes, convert, route};
use crate::auth::Caller;
use crate::client_service::ClientService;

/// The response's own status: OK when every entry is, the entry's when there is one, else
/// MULTIPLE_RESULTS (the clients read each entry then).
pub fn overall<'a>(statuses: impl Iterator<Item = &'a Option<rmq::Status>>) -> Option<rmq::Status> {
    let statuses: Vec<&Option<rmq::Status>> = statuses.collect();
    let all_ok = statuses
        .iter()
        .all(|s| s.as_ref().is_some_and(|s| s.code == Code::Ok as i32));
    match statuses.as_slice() {
        _ if all_ok => codes::ok(),
        [only] => (*only).clone(),
        _ => codes::status(
            Code::MultipleResults,
            "some messages failed; see each entry",
        ),
    }
}

pub async fn send(
    native: &ClientService,
    caller: &Caller,
    req: rmq::SendMessageRequest,
    sender: Option<&str>,
) -> rmq::SendMessageResponse {
    if req.messages.is_empty() {
        return rmq::SendMessageResponse {
            status: codes::status(Code::BadRequest, "a send carries at least one message"),
            entries: Vec::new(),
        };
    }
    let mut entries = Vec::with_capacity(req.messages.len());
    for message in req.messages {
        entries.push(send_one(native, caller, message, sender).await);
    }
    rmq::SendMessageResponse {
        status: overall(entries.iter().map(|e| &e.status)),
        entries,
    }
}

fn failed(status: Option<rmq::Status>) -> rmq::SendResultEntry {
    rmq::SendResultEntry {
        status,
        ..Default::default()
    }
}

/// Refuses what txmq does not store: FIFO and DELAY messages, and a type the topic does not
/// take (a transactional message needs a transaction topic and the other way round).
fn refuse(
    system: &rmq::SystemProperties,
    out: &convert::Outgoing,
    kind: TopicKind,
) -> Option<Option<rmq::Status>> {
    if system.message_group.is_some() || out.message_type == rmq::MessageType::Fifo {
        return Some(codes::status(
            Code::Unsupported,
            "FIFO messages (message groups) are not supported by txmq yet",
        ));
    }
    if system.delivery_timestamp.is_some() || out.message_type == rmq::MessageType::Delay {
        return Some(codes::status(
            Code::Unsupported,
            "DELAY messages (delivery timestamps) are not supported by txmq yet",
        ));
    }
    let accepted = route::accepted_type(kind);
    if out.message_type != accepted {
        return Some(codes::status(
            Code::MessagePropertyConflictWithType,
            format!(
                "topic '{}' takes {} messages, not {}",
                out.topic,
                accepted.as_str_name(),
                out.message_type.as_str_name()
            ),
        ));
    }
    None
}

async fn send_one(
    native: &ClientService,
    caller: &Caller,
    message: rmq::Message,
    sender: Option<&str>,
) -> rmq::SendResultEntry {
    // Only the system properties are kept for the checks below, not a copy of the body.
    let system = message.system_properties.clone().unwrap_or_default();
    let out = match convert::outgoing(message, sender) {
        Ok(out) => out,
        Err(e) => return failed(codes::status(Code::BadRequest, e)),
    };
    let Some(kind) = native.reader.topic(&out.topic).map(|t| t.kind) else {
        return failed(codes::status(
            Code::TopicNotFound,
            format!("topic '{}' does not exist", out.topic),
        ));
    };
    if let Some(status) = refuse(&system, &out, kind) {
        return failed(status);
    }
    let check_delay_ms = system
        .orphaned_transaction_recovery_duration
        .as_ref()
        .map_or(0, convert::millis);
    let message_id = out.message_id.clone();
    let result = match kind {
        TopicKind::Normal => send_normal(native, caller, out).await,
        TopicKind::Transaction => send_half(native, caller, out, check_delay_ms).await,
    };
    match result {
        Ok((transaction_id, offset)) => rmq::SendResultEntry {
            status: codes::ok(),
            message_id,
            transaction_id,
            offset,
            recall_handle: String::new(),
        },
        Err(e) => failed(codes::from_grpc(&e, Code::TopicNotFound)),
    }
}

async fn send_normal(
    native: &ClientService,
    caller: &Caller,
    out: convert::Outgoing,
) -> Result<(String, i64), tonic::Status> {
    let request = super::native(
        caller,
        pb::SendRequest {
            topic: out.topic,
            body: out.body,
            key: out.key,
            tag: out.tag,
            properties: out.properties,
        },
    );
    let sent = native.send(request).await?.into_inner();
    Ok((String::new(), sent.offset as i64))
}

async fn send_half(
    native: &ClientService,
    caller: &Caller,
    out: convert::Outgoing,
    check_delay_ms: u64,
) -> Result<(String, i64), tonic::Status> {
    let request = super::native(
        caller,
        pb::SendHalfRequest {
            group: out.topic.clone(),
            topic: out.topic,
            body: out.body,
            key: out.key,
            tag: out.tag,
            properties: out.properties,
            check_delay_ms,
        },
    );
    let half = native.send_half(request).await?.into_inner();
    Ok((half.transaction_id, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_status_is_ok_the_one_entry_or_multiple_results() {
        let ok = codes::ok();
        let bad = codes::status(Code::TopicNotFound, "no");
        assert_eq!(overall([&ok, &ok].into_iter()).map(|s| s.code), Some(20000));
        assert_eq!(overall([&bad].into_iter()).map(|s| s.code), Some(40402));
        assert_eq!(
            overall([&ok, &bad].into_iter()).map(|s| s.code),
            Some(30000)
        );
    }
}
