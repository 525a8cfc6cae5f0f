//! Validation of names and sizes. Used at the gRPC edge (clear errors early) and again by the
//! state machine (which must never store anything invalid, whoever proposed it).

/// The longest topic or group name.
pub const MAX_NAME_LEN: usize = 128;
/// The most queues a topic may have.
pub const MAX_QUEUES: u32 = 256;
/// The default number of queues.
pub const DEFAULT_QUEUES: u32 = 4;
/// The default retention: 72 hours.
pub const DEFAULT_RETENTION_MS: u64 = 72 * 3600 * 1000;
/// The most properties one message may carry.
pub const MAX_PROPERTIES: usize = 64;
/// The longest key, tag, property name or property value.
pub const MAX_SHORT_TEXT: usize = 1024;
/// The default maximum body size: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Checks a topic or group name: 1..=128 characters from `[A-Za-z0-9._-]`, not starting with
/// `.` (reserved for internal names).
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "{what} name is empty; use 1 to {MAX_NAME_LEN} characters from [A-Za-z0-9._-]"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name is {} characters long; the maximum is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} name '{}' contains {bad:?}; only [A-Za-z0-9._-] are allowed",
            name.escape_debug()
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "{what} name '{name}' starts with '.', which is reserved for internal names"
        ));
    }
    Ok(())
}

/// Checks the name of a topic a user creates: a valid name outside the reserved prefixes.
pub fn validate_new_topic_name(name: &str) -> Result<(), String> {
    validate_name("topic", name)?;
    if name.starts_with(crate::DLQ_PREFIX) {
        return Err(format!(
            "topic names starting with '{}' are reserved for dead-letter topics",
            crate::DLQ_PREFIX
        ));
    }
    Ok(())
}

/// Checks the number of queues of a new topic.
pub fn validate_queues(queues: u32) -> Result<(), String> {
    if queues == 0 || queues > MAX_QUEUES {
        return Err(format!(
            "a topic needs 1 to {MAX_QUEUES} queues, not {queues}"
        ));
    }
    Ok(())
}

/// Checks a message's key, tag, properties and body size.
pub fn validate_message(
    key: &str,
    tag: &str,
    properties: &std::collections::BTreeMap<String, String>,
    body_len: usize,
    max_body: usize,
) -> Result<(), String> {
    if body_len > max_body {
        return Err(format!(
            "message body is {body_len} bytes; the maximum is {max_body} bytes (server setting max_message_bytes)"
        ));
    }
    if key.len() > MAX_SHORT_TEXT || tag.len() > MAX_SHORT_TEXT {
        return Err(format!(
            "message key and tag may be at most {MAX_SHORT_TEXT} bytes each"
        ));
    }
    if properties.len() > MAX_PROPERTIES {
        return Err(format!(
            "message has {} properties; the maximum is {MAX_PROPERTIES}",
            properties.len()
        ));
    }
    for (k, v) in properties {
        if k.is_empty() || k.len() > MAX_SHORT_TEXT || v.len() > MAX_SHORT_TEXT {
            return Err(format!(
                "property names must be 1 to {MAX_SHORT_TEXT} bytes and values at most {MAX_SHORT_TEXT} bytes"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("topic", "orders.v1_a-b").is_ok());
        assert!(validate_name("topic", "").unwrap_err().contains("empty"));
        assert!(
            validate_name("topic", &"a".repeat(129))
                .unwrap_err()
                .contains("maximum is 128")
        );
        assert!(validate_name("topic", &"a".repeat(128)).is_ok());
        assert!(validate_name("topic", "a b").unwrap_err().contains("' '"));
        assert!(validate_name("topic", "ü").is_err());
        assert!(
            validate_name("topic", ".x")
                .unwrap_err()
                .contains("reserved")
        );
    }

    #[test]
    fn queues() {
        assert!(validate_queues(0).is_err());
        assert!(validate_queues(1).is_ok());
        assert!(validate_queues(256).is_ok());
        assert!(validate_queues(257).is_err());
    }
}
