//! ForwardMessageToDeadLetterQueue: a PushConsumer that gave up on a message (its own retry
//! policy is used up) moves it to the group's dead-letter topic at once, instead of waiting
//! for txmq to do so when the group's delivery attempts run out. The same replicated move the
//! scheduler makes (`Operation::DeadLetter`), asked for by the lease's holder: accepted only
//! while the lease named by the receipt handle is still the current one.

use tonic::Status;
use txmq_proto::rocketmq as rmq;
use txmq_proto::rocketmq::Code;
use txmq_state::{CommandResult, DeadLetterItem, Need, Operation};

use super::{codes, name};
use crate::auth::Caller;
use crate::client_service::ClientService;

pub async fn forward(
    native: &ClientService,
    caller: &Caller,
    req: rmq::ForwardMessageToDeadLetterQueueRequest,
) -> Option<rmq::Status> {
    let (group, topic) = (name(&req.group), name(&req.topic));
    let need = Need::Consume {
        topic: &topic,
        group: &group,
    };
    let action = "move a message to the dead letters";
    if let Err(e) = native.access.require(caller, action, &[need]) {
        return codes::from_grpc(&e, Code::Forbidden);
    }
    let Some((queue, offset, lease_index)) = txmq_state::parse_receipt(&req.receipt_handle) else {
        return codes::status(Code::InvalidReceiptHandle, "not a txmq receipt handle");
    };
    let message = match native.reader.message_at(&topic, queue, offset) {
        Ok(Some(read)) => read.message,
        Ok(None) => {
            return codes::status(Code::MessageNotFound, "the message is no longer retained");
        }
        Err(e) => return codes::status(Code::InternalServerError, e.to_string()),
    };
    let op = Operation::DeadLetter {
        group,
        topic,
        items: vec![DeadLetterItem {
            queue,
            offset,
            lease_index,
            message,
        }],
        on_request: true,
    };
    match native.proposer.write(op).await.map_err(Status::from) {
        Ok(CommandResult::DeadLettered(1)) => {
            metrics::counter!("txmq_messages_dead_lettered_total").increment(1);
            codes::ok()
        }
        Ok(CommandResult::DeadLettered(_)) => codes::status(
            Code::InvalidReceiptHandle,
            "this delivery's lease is over (the message may have been delivered again); only \
             the current delivery can move it",
        ),
        Ok(other) => codes::from_grpc(&crate::convert::unexpected(other), Code::NotFound),
        Err(e) => codes::from_grpc(&e, Code::TopicNotFound),
    }
}
