//! A message on the command line: its content as flags (shared by `send` and `txn send`) and
//! its JSON form (shared by `read`, `consume` and `txn`).

use base64::Engine;
use clap::Args;
use serde_json::{Value, json};
use txmq_client::{ClientError, Message};

/// A message's content, shared by `send` and `txn send`.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The body as text; `-` reads it from standard input (any bytes).
    #[arg(
        long,
        required_unless_present = "body_file",
        conflicts_with = "body_file"
    )]
    pub body: Option<String>,
    /// Read the body from this file (any bytes); `-` is standard input.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<std::path::PathBuf>,
    /// Messages with the same key go to the same queue.
    #[arg(long, default_value = "")]
    pub key: String,
    #[arg(long, default_value = "")]
    pub tag: String,
    /// A property as k=v; repeat for several.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// The most body bytes read from a file or standard input: the largest body a node can be
/// configured to accept (`--max-message-bytes` at most 64 MiB), plus one to notice more.
const MAX_BODY_READ: u64 = 64 * 1024 * 1024 + 1;

/// (body, key, tag, properties) in the form the requests take.
pub type MessageParts = (
    tonic::codegen::Bytes,
    String,
    String,
    std::collections::HashMap<String, String>,
);

impl MessageArgs {
    /// The message in the form the requests take, its body read from the file or standard
    /// input when asked.
    pub fn into_parts(self) -> Result<MessageParts, ClientError> {
        let body = match (self.body, self.body_file) {
            (Some(text), _) if text != "-" => text.into_bytes(),
            (Some(_), _) => read_body(None)?,
            (None, Some(path)) if path.as_os_str() == "-" => read_body(None)?,
            (None, Some(path)) => read_body(Some(&path))?,
            (None, None) => Vec::new(),
        };
        Ok((
            body.into(),
            self.key,
            self.tag,
            self.properties.into_iter().collect(),
        ))
    }
}

/// A body from `path`, or from standard input (`None`), refused past [`MAX_BODY_READ`].
fn read_body(path: Option<&std::path::Path>) -> Result<Vec<u8>, ClientError> {
    use std::io::Read;
    let what = path.map_or("standard input".to_string(), |p| p.display().to_string());
    let source: Box<dyn Read> = match path {
        Some(p) => Box::new(std::fs::File::open(p).map_err(|e| {
            ClientError::new(
                "invalid_argument",
                format!("cannot read the body from {what}: {e}"),
            )
        })?),
        None => Box::new(std::io::stdin()),
    };
    let mut body = Vec::new();
    source
        .take(MAX_BODY_READ)
        .read_to_end(&mut body)
        .map_err(|e| {
            ClientError::new(
                "invalid_argument",
                format!("cannot read the body from {what}: {e}"),
            )
        })?;
    if body.len() as u64 == MAX_BODY_READ {
        return Err(ClientError::new(
            "invalid_argument",
            format!("the body in {what} is larger than 64 MiB, more than any node accepts"),
        ));
    }
    Ok(body)
}

pub fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("property '{s}' must look like key=value"))
}

/// A message as one JSON object; the body as text when it is UTF-8, else base64.
pub fn message_json(m: &Message) -> Value {
    let (body, encoding) = match std::str::from_utf8(&m.body) {
        Ok(s) => (s.to_string(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&m.body),
            "base64",
        ),
    };
    json!({
        "message_id": m.message_id,
        "topic": m.topic,
        "queue": m.queue,
        "offset": m.offset,
        "key": m.key,
        "tag": m.tag,
        "body": body,
        "body_encoding": encoding,
        "properties": m.properties,
        "delivery_attempt": m.delivery_attempt,
        "born_at_ms": m.born_at_ms,
    })
}
