//! ReceiveMessage for SimpleConsumer and PushConsumer: a txmq receive (a lease for the group,
//! long polling included) answered as RocketMQ's stream — a status, one response per message,
//! then the delivery time; an empty poll is MESSAGE_NOT_FOUND.
//!
//! Tag filters: a message whose tag the group's expression does not match is acknowledged at
//! once and not delivered, which is what a RocketMQ broker does for a group whose subscription
//! excludes it. SQL92 filters are not served.

use txmq_proto::client as pb;
use txmq_proto::rocketmq as rmq;

use super::{codes, convert};

/// Which tags a receive's filter expression lets through.
#[derive(Debug, PartialEq)]
pub enum TagFilter {
    All,
    AnyOf(Vec<String>),
}

impl TagFilter {
    /// `*`, empty, or tags joined by `||`; `Err` for SQL92 (not served).
    pub fn parse(filter: Option<&rmq::FilterExpression>) -> Result<TagFilter, String> {
        let Some(f) = filter else {
            return Ok(TagFilter::All);
        };
        if f.r#type == rmq::FilterType::Sql as i32 {
            return Err("SQL92 filter expressions are not supported by txmq; filter by tag".into());
        }
        let expression = f.expression.trim();
        if expression.is_empty() || expression == "*" {
            return Ok(TagFilter::All);
        }
        Ok(TagFilter::AnyOf(
            expression
                .split("||")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        ))
    }

    pub fn admits(&self, tag: &str) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::AnyOf(tags) => tags.iter().any(|t| t == tag),
        }
    }
}

/// The native receive a RocketMQ receive asks for.
pub fn native_request(req: &rmq::ReceiveMessageRequest) -> Result<pb::ReceiveRequest, String> {
    let group = req
        .group
        .as_ref()
        .map(|g| g.name.clone())
        .unwrap_or_default();
    let topic = req
        .message_queue
        .as_ref()
        .and_then(|q| q.topic.as_ref())
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if group.is_empty() || topic.is_empty() {
        return Err("a receive needs a consumer group and a message queue's topic".into());
    }
    Ok(pb::ReceiveRequest {
        group,
        topic,
        max: req.batch_size.max(1) as u32,
        invisible_ms: req.invisible_duration.as_ref().map_or(0, convert::millis),
        wait_ms: req.long_polling_timeout.as_ref().map_or(0, convert::millis),
    })
}

/// The response stream's parts for the messages received (empty: MESSAGE_NOT_FOUND).
pub fn responses(
    messages: Vec<pb::Message>,
    invisible_ms: u64,
    namespace: &str,
) -> Vec<rmq::ReceiveMessageResponse> {
    use rmq::receive_message_response::Content;
    if messages.is_empty() {
        return vec![rmq::ReceiveMessageResponse {
            content: Some(Content::Status(
                codes::status(rmq::Code::MessageNotFound, "no new message").unwrap_or_default(),
            )),
        }];
    }
    let mut parts = vec![rmq::ReceiveMessageResponse {
        content: Some(Content::Status(codes::ok().unwrap_or_default())),
    }];
    parts.extend(messages.into_iter().map(|m| rmq::ReceiveMessageResponse {
        content: Some(Content::Message(convert::delivered(
            m,
            invisible_ms,
            namespace,
        ))),
    }));
    parts.push(rmq::ReceiveMessageResponse {
        content: Some(Content::DeliveryTimestamp(convert::timestamp(
            crate::clock::now_ms(),
        ))),
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(expression: &str) -> rmq::FilterExpression {
        rmq::FilterExpression {
            r#type: rmq::FilterType::Tag as i32,
            expression: expression.into(),
        }
    }

    #[test]
    fn tag_expressions_parse_like_rocketmq_and_sql_is_refused() {
        assert_eq!(TagFilter::parse(None), Ok(TagFilter::All));
        assert_eq!(TagFilter::parse(Some(&filter("*"))), Ok(TagFilter::All));
        let f = TagFilter::parse(Some(&filter("paid || shipped"))).expect("tags");
        assert!(f.admits("paid") && f.admits("shipped") && !f.admits("other"));
        let sql = rmq::FilterExpression {
            r#type: rmq::FilterType::Sql as i32,
            expression: "a > 1".into(),
        };
        assert!(TagFilter::parse(Some(&sql)).is_err());
    }

    #[test]
    fn an_empty_poll_is_message_not_found_and_a_full_one_ends_with_a_time() {
        use rmq::receive_message_response::Content;
        let empty = responses(Vec::new(), 30_000, "");
        assert!(
            matches!(&empty[..], [rmq::ReceiveMessageResponse { content: Some(Content::Status(s)) }] if s.code == 40401)
        );
        let m = pb::Message {
            message_id: "m".into(),
            topic: "t".into(),
            receipt_handle: "h".into(),
            delivery_attempt: 2,
            ..Default::default()
        };
        let full = responses(vec![m], 30_000, "");
        assert_eq!(full.len(), 3);
        assert!(matches!(&full[0].content, Some(Content::Status(s)) if s.code == 20000));
        match &full[1].content {
            Some(Content::Message(m)) => {
                let s = m.system_properties.as_ref().expect("system properties");
                assert_eq!(s.receipt_handle.as_deref(), Some("h"));
                assert_eq!(s.delivery_attempt, Some(2));
            }
            other => panic!("a message expected, got {other:?}"),
        }
        assert!(matches!(
            full[2].content,
            Some(Content::DeliveryTimestamp(_))
        ));
    }
}
