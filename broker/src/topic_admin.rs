//! Creating, changing and deleting topics and consumer groups (the admin-only writes of the
//! client API): validate, propose, convert.

use tonic::Status;
use txmq_proto::client as pb;
use txmq_state::{CommandResult, Operation, limits};

use crate::convert;
use crate::proposer::Proposer;

pub async fn create_topic(
    proposer: &Proposer,
    request: pb::CreateTopicRequest,
) -> Result<pb::CreateTopicResponse, Status> {
    let spec = convert::topic_spec(request)?;
    match proposer.write(Operation::CreateTopic(spec)).await? {
        CommandResult::TopicCreated(meta) => Ok(pb::CreateTopicResponse {
            topic: Some(convert::topic_info(&meta)),
        }),
        other => Err(convert::unexpected(other)),
    }
}

pub async fn delete_topic(
    proposer: &Proposer,
    name: String,
) -> Result<pb::DeleteTopicResponse, Status> {
    limits::validate_name("topic", &name).map_err(Status::invalid_argument)?;
    match proposer.write(Operation::DeleteTopic { name }).await? {
        CommandResult::TopicDeleted { messages } => Ok(pb::DeleteTopicResponse { messages }),
        other => Err(convert::unexpected(other)),
    }
}

pub async fn update_topic(
    proposer: &Proposer,
    r: pb::UpdateTopicRequest,
) -> Result<pb::TopicInfo, Status> {
    limits::validate_name("topic", &r.name).map_err(Status::invalid_argument)?;
    if r.retention_ms.is_none() && r.retention_bytes.is_none() {
        return Err(Status::invalid_argument(
            "nothing to update: give a retention time and/or size",
        ));
    }
    if r.retention_ms == Some(0) {
        return Err(Status::invalid_argument("a retention time must be above 0"));
    }
    let op = Operation::UpdateTopic {
        name: r.name,
        retention_ms: r.retention_ms,
        retention_bytes: r.retention_bytes,
    };
    match proposer.write(op).await? {
        CommandResult::TopicUpdated(meta) => Ok(convert::topic_info(&meta)),
        other => Err(convert::unexpected(other)),
    }
}

pub async fn delete_group(
    proposer: &Proposer,
    r: pb::DeleteGroupRequest,
) -> Result<pb::DeleteGroupResponse, Status> {
    limits::validate_name("consumer group", &r.group).map_err(Status::invalid_argument)?;
    limits::validate_name("topic", &r.topic).map_err(Status::invalid_argument)?;
    let op = Operation::DeleteGroup {
        group: r.group,
        topic: r.topic,
    };
    match proposer.write(op).await? {
        CommandResult::GroupDeleted => Ok(pb::DeleteGroupResponse {}),
        other => Err(convert::unexpected(other)),
    }
}
