//! Messages between the RocketMQ protocol and txmq's own.
//!
//! A RocketMQ message becomes a txmq message with its tag and first key; what txmq has no field
//! for travels in reserved properties (prefix `rmq.`): the client's message id (delivered back
//! unchanged, to RocketMQ consumers as the message id), every key, the born time and host.
//! Messages sent through txmq's own API reach RocketMQ consumers with txmq's message id.

use std::collections::HashMap;

use prost_types::{Duration as PbDuration, Timestamp};
use txmq_proto::client as pb;
use txmq_proto::rocketmq as rmq;

/// The client's message id.
pub const MESSAGE_ID: &str = "rmq.message-id";
/// Every key, joined by [`KEY_SEPARATOR`] (txmq's key field holds the first).
pub const KEYS: &str = "rmq.keys";
pub const BORN_MS: &str = "rmq.born-ms";
pub const BORN_HOST: &str = "rmq.born-host";
/// The sending client's id (see [`crate::checkers::SENDER_PROPERTY`]).
pub const SENDER: &str = crate::checkers::SENDER_PROPERTY;
const KEY_SEPARATOR: char = '\u{1}';

/// The parts of a RocketMQ message a txmq send needs.
pub struct Outgoing {
    pub topic: String,
    pub message_id: String,
    pub message_type: rmq::MessageType,
    pub key: String,
    pub tag: String,
    pub body: bytes::Bytes,
    pub properties: HashMap<String, String>,
}

/// Takes a RocketMQ message apart; `Err` names what is missing. `sender` is the sending
/// client's id: a check-back of a transactional message goes to that client first.
pub fn outgoing(message: rmq::Message, sender: Option<&str>) -> Result<Outgoing, String> {
    let topic = message.topic.map(|t| t.name).unwrap_or_default();
    if topic.is_empty() {
        return Err("the message names no topic".into());
    }
    let system = message.system_properties.unwrap_or_default();
    if system.message_id.is_empty() {
        return Err("the message has no message_id".into());
    }
    let mut properties = message.user_properties;
    if let Some(reserved) = properties.keys().find(|k| k.starts_with("rmq.")) {
        return Err(format!(
            "user property '{reserved}' uses the prefix 'rmq.', which txmq reserves"
        ));
    }
    properties.insert(MESSAGE_ID.into(), system.message_id.clone());
    if let Some(sender) = sender {
        properties.insert(SENDER.into(), sender.to_string());
    }
    if system.keys.len() > 1 {
        properties.insert(KEYS.into(), system.keys.join(&KEY_SEPARATOR.to_string()));
    }
    if let Some(born) = &system.born_timestamp {
        properties.insert(BORN_MS.into(), timestamp_ms(born).to_string());
    }
    if !system.born_host.is_empty() {
        properties.insert(BORN_HOST.into(), system.born_host.clone());
    }
    Ok(Outgoing {
        topic,
        message_type: rmq::MessageType::try_from(system.message_type)
            .unwrap_or(rmq::MessageType::Unspecified),
        message_id: system.message_id,
        key: system.keys.first().cloned().unwrap_or_default(),
        tag: system.tag.unwrap_or_default(),
        body: message.body,
        properties,
    })
}

/// The message as RocketMQ clients read it. `delivery` carries what only a receive has.
pub struct Incoming {
    pub topic: String,
    pub message_id: String,
    pub key: String,
    pub tag: String,
    pub body: bytes::Bytes,
    pub properties: HashMap<String, String>,
    pub born_at_ms: u64,
    pub message_type: rmq::MessageType,
}

/// A received txmq message as RocketMQ delivers it (queue, offset, handle, attempt included).
pub fn delivered(m: pb::Message, invisible_ms: u64, namespace: &str) -> rmq::Message {
    let (queue, offset, attempt, handle) =
        (m.queue, m.offset, m.delivery_attempt, m.receipt_handle);
    let mut message = rocketmq_message(
        Incoming {
            topic: m.topic,
            message_id: m.message_id,
            key: m.key,
            tag: m.tag,
            body: m.body,
            properties: m.properties,
            born_at_ms: m.born_at_ms,
            message_type: rmq::MessageType::Normal,
        },
        namespace,
    );
    if let Some(system) = message.system_properties.as_mut() {
        system.queue_id = queue as i32;
        system.queue_offset = Some(offset as i64);
        system.delivery_attempt = Some(attempt as i32);
        system.receipt_handle = Some(handle);
        system.invisible_duration = Some(duration_ms(invisible_ms));
    }
    message
}

/// A message in RocketMQ's form, its reserved properties moved back into system properties.
pub fn rocketmq_message(mut m: Incoming, namespace: &str) -> rmq::Message {
    let message_id = m.properties.remove(MESSAGE_ID).unwrap_or(m.message_id);
    let keys = match m.properties.remove(KEYS) {
        Some(all) => all.split(KEY_SEPARATOR).map(str::to_string).collect(),
        None if m.key.is_empty() => Vec::new(),
        None => vec![m.key],
    };
    let born_ms = m
        .properties
        .remove(BORN_MS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(m.born_at_ms);
    let born_host = m.properties.remove(BORN_HOST).unwrap_or_default();
    m.properties.remove(SENDER);
    let body_digest = rmq::Digest {
        r#type: rmq::DigestType::Crc32 as i32,
        checksum: format!("{:08X}", crc32fast::hash(&m.body)),
    };
    rmq::Message {
        topic: Some(rmq::Resource {
            resource_namespace: namespace.to_string(),
            name: m.topic,
        }),
        user_properties: m.properties,
        system_properties: Some(rmq::SystemProperties {
            tag: (!m.tag.is_empty()).then_some(m.tag),
            keys,
            message_id,
            body_digest: Some(body_digest),
            // Clients refuse (and silently drop checks of) messages without an encoding.
            body_encoding: rmq::Encoding::Identity as i32,
            message_type: m.message_type as i32,
            born_timestamp: Some(timestamp(born_ms)),
            born_host,
            store_timestamp: Some(timestamp(m.born_at_ms)),
            ..Default::default()
        }),
        body: m.body,
    }
}

/// A check-back's message, as the producer's checker sees it.
pub fn checked_message(check: &pb::CheckRequest) -> rmq::Message {
    rocketmq_message(
        Incoming {
            topic: check.topic.clone(),
            message_id: check.message_id.clone(),
            key: check.key.clone(),
            tag: check.tag.clone(),
            body: check.body.clone(),
            properties: check.properties.clone(),
            born_at_ms: 0,
            message_type: rmq::MessageType::Transaction,
        },
        "",
    )
}

pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn timestamp_ms(t: &Timestamp) -> u64 {
    let ms = t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000);
    ms.max(0) as u64
}

pub fn duration_ms(ms: u64) -> PbDuration {
    PbDuration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A protocol duration in milliseconds (negative ones count as zero).
pub fn millis(d: &PbDuration) -> u64 {
    let ms = d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000);
    ms.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(keys: &[&str]) -> rmq::Message {
        rmq::Message {
            topic: Some(rmq::Resource {
                resource_namespace: String::new(),
                name: "orders".into(),
            }),
            user_properties: HashMap::from([("region".to_string(), "eu".to_string())]),
            system_properties: Some(rmq::SystemProperties {
                tag: Some("paid".into()),
                keys: keys.iter().map(|k| k.to_string()).collect(),
                message_id: "01ABCDEF".into(),
                born_timestamp: Some(timestamp(1_700_000_000_123)),
                born_host: "app-1".into(),
                message_type: rmq::MessageType::Transaction as i32,
                ..Default::default()
            }),
            body: bytes::Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn a_message_survives_the_trip_through_txmq_unchanged() {
        let out = outgoing(sent(&["k1", "k2"]), Some("client-1")).expect("valid");
        assert_eq!(
            out.properties.get(SENDER).map(String::as_str),
            Some("client-1")
        );
        assert_eq!((out.key.as_str(), out.tag.as_str()), ("k1", "paid"));
        assert_eq!(out.message_type, rmq::MessageType::Transaction);
        let back = rocketmq_message(
            Incoming {
                topic: out.topic,
                message_id: "txmq-id".into(),
                key: out.key,
                tag: out.tag,
                body: out.body,
                properties: out.properties,
                born_at_ms: 1_700_000_000_999,
                message_type: rmq::MessageType::Normal,
            },
            "",
        );
        let system = back.system_properties.expect("system properties");
        assert_eq!(system.message_id, "01ABCDEF", "the client's id, not txmq's");
        assert_eq!(system.keys, vec!["k1", "k2"]);
        assert_eq!(system.tag.as_deref(), Some("paid"));
        assert_eq!(system.born_host, "app-1");
        assert_eq!(system.born_timestamp, Some(timestamp(1_700_000_000_123)));
        assert_eq!(system.body_encoding, rmq::Encoding::Identity as i32);
        assert_eq!(
            system.body_digest.map(|d| d.checksum).as_deref(),
            Some("3610A686")
        );
        assert_eq!(
            back.user_properties,
            HashMap::from([("region".into(), "eu".into())])
        );
    }

    #[test]
    fn reserved_properties_and_missing_ids_are_refused() {
        let mut m = sent(&[]);
        m.user_properties.insert("rmq.keys".into(), "x".into());
        assert!(outgoing(m, None).is_err());
        let mut m = sent(&[]);
        if let Some(s) = m.system_properties.as_mut() {
            s.message_id.clear();
        }
        assert!(outgoing(m, None).is_err());
    }
}
