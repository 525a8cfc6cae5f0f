//! Conversions between the client API's protobuf types and the replicated types, with the
//! request validation that gives callers clear errors before anything is proposed.

use std::collections::BTreeMap;

use tonic::Status;
use txmq_proto::client as pb;
use txmq_raft_store::machine::reader::{ReadError, ReadMessage};
use txmq_state::TopicMeta;
use txmq_state::limits;
use txmq_state::{CommandResult, NewMessage, Rejection, TopicKind, TopicSpec};

pub fn topic_kind_to_pb(kind: TopicKind) -> pb::TopicType {
    match kind {
        TopicKind::Normal => pb::TopicType::Normal,
        TopicKind::Transaction => pb::TopicType::Transaction,
    }
}

pub fn topic_info(meta: &TopicMeta) -> pb::TopicInfo {
    pb::TopicInfo {
        name: meta.name.clone(),
        r#type: topic_kind_to_pb(meta.kind) as i32,
        queues: meta.queues,
        retention_ms: meta.retention_ms,
        retention_bytes: meta.retention_bytes,
        created_at_ms: meta.created_at_ms,
        queue_info: (0..meta.queues)
            .map(|q| pb::QueueInfo {
                queue: q,
                low_offset: meta.low_offsets[q as usize],
                next_offset: meta.next_offsets[q as usize],
            })
            .collect(),
    }
}

/// Validates and defaults a topic creation request.
pub fn topic_spec(req: pb::CreateTopicRequest) -> Result<TopicSpec, Status> {
    limits::validate_new_topic_name(&req.name).map_err(Status::invalid_argument)?;
    let kind = match pb::TopicType::try_from(req.r#type) {
        Ok(pb::TopicType::Normal) => TopicKind::Normal,
        Ok(pb::TopicType::Transaction) => TopicKind::Transaction,
        _ => {
            return Err(Status::invalid_argument(
                "topic type must be 'normal' or 'transaction'",
            ));
        }
    };
    let queues = if req.queues == 0 {
        limits::DEFAULT_QUEUES
    } else {
        req.queues
    };
    limits::validate_queues(queues).map_err(Status::invalid_argument)?;
    let retention_ms = if req.retention_ms == 0 {
        limits::DEFAULT_RETENTION_MS
    } else {
        req.retention_ms
    };
    Ok(TopicSpec {
        name: req.name,
        kind,
        queues,
        retention_ms,
        retention_bytes: req.retention_bytes,
    })
}

/// Validates a send request into a message.
pub fn new_message(req: pb::SendRequest, max_body: usize) -> Result<(String, NewMessage), Status> {
    limits::validate_name("topic", &req.topic).map_err(Status::invalid_argument)?;
    let properties: BTreeMap<String, String> = req.properties.into_iter().collect();
    limits::validate_message(&req.key, &req.tag, &properties, req.body.len(), max_body)
        .map_err(Status::invalid_argument)?;
    Ok((
        req.topic,
        NewMessage {
            key: req.key,
            tag: req.tag,
            body: req.body.to_vec(),
            properties,
        },
    ))
}

/// Most messages in one `SendBatch`.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// A batch request holds 1 to [`MAX_BATCH_MESSAGES`] items.
pub fn check_batch_len(n: usize) -> Result<(), Status> {
    if n == 0 || n > MAX_BATCH_MESSAGES {
        return Err(Status::invalid_argument(format!(
            "a batch holds 1 to {MAX_BATCH_MESSAGES} items, not {n}"
        )));
    }
    Ok(())
}

/// Validates a batch: every message as in `Send`, at most [`MAX_BATCH_MESSAGES`], and bodies
/// that together fit in `max_body` (one request must fit the node's message size limit).
pub fn new_batch(
    req: pb::SendBatchRequest,
    max_body: usize,
) -> Result<(String, Vec<NewMessage>), Status> {
    limits::validate_name("topic", &req.topic).map_err(Status::invalid_argument)?;
    check_batch_len(req.messages.len())?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let properties: BTreeMap<String, String> = m.properties.into_iter().collect();
        limits::validate_message(&m.key, &m.tag, &properties, m.body.len(), max_body)
            .map_err(|e| Status::invalid_argument(format!("message {i} of the batch: {e}")))?;
        messages.push(NewMessage {
            key: m.key,
            tag: m.tag,
            body: m.body.to_vec(),
            properties,
        });
    }
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    if total > max_body {
        return Err(Status::invalid_argument(format!(
            "the bodies of a batch total {total} bytes; the maximum is {max_body} (--max-message-bytes)"
        )));
    }
    Ok((req.topic, messages))
}

/// Maps a business rejection to the gRPC status a client acts on.
pub fn rejection_status(r: Rejection) -> Status {
    let msg = r.to_string();
    match r {
        Rejection::TopicExists(_) => Status::already_exists(msg),
        Rejection::PendingTransactions { .. } => Status::failed_precondition(msg),
        Rejection::UnknownGroup { .. } => Status::not_found(msg),
        Rejection::UnknownTopic(_) => Status::not_found(msg),
        Rejection::WrongTopicType { .. } => Status::failed_precondition(msg),
        Rejection::Invalid(_) => Status::invalid_argument(msg),
        Rejection::UnknownTransaction(_) => Status::not_found(msg),
        Rejection::WrongGroup { .. } => Status::permission_denied(msg),
        Rejection::ConflictingDecision { .. } => Status::failed_precondition(msg),
        Rejection::InvalidReceipt(_) => Status::invalid_argument(msg),
        Rejection::StaleReceipt(_) => Status::failed_precondition(msg),
        Rejection::UserExists(_) => Status::already_exists(msg),
        Rejection::UnknownUser(_) => Status::not_found(msg),
        Rejection::LastAdmin => Status::failed_precondition(msg),
    }
}

/// Any result other than the expected one is a bug; say so rather than guess.
pub fn unexpected(result: CommandResult) -> Status {
    match result {
        CommandResult::Rejected(r) => rejection_status(r),
        other => Status::internal(format!("unexpected command result: {other:?}")),
    }
}

pub fn read_status(e: ReadError) -> Status {
    match e {
        ReadError::UnknownTopic(_) => Status::not_found(e.to_string()),
        ReadError::UnknownQueue { .. } => Status::invalid_argument(e.to_string()),
        ReadError::Storage(_) | ReadError::Corrupt(_) => Status::internal(e.to_string()),
    }
}

pub fn message_to_pb(m: ReadMessage) -> pb::Message {
    pb::Message {
        message_id: m.message.message_id,
        topic: m.topic,
        queue: m.queue,
        offset: m.offset,
        key: m.message.key,
        tag: m.message.tag,
        body: m.message.body.into(),
        properties: m.message.properties.into_iter().collect(),
        born_at_ms: m.message.born_at_ms,
        delivery_attempt: 0,
        receipt_handle: String::new(),
    }
}
