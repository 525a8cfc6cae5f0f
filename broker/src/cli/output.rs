//! Printing results as text or as JSON (one document per command, one object per line for
//! streams), and errors as `{"error": {"code", "message"}}` with a non-zero exit status.

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use serde_json::{Value, json};
use txmq_client::ClientError;

use super::OutputFormat;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: OutputFormat,
}

impl Output {
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints one result: the JSON document, or the text rendering.
    pub fn print(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json() {
            print_line(value);
        } else {
            print_line(text());
        }
    }

    /// Prints an error and returns the failing exit code.
    pub fn fail(&self, code: &str, message: &str) -> ExitCode {
        if self.json() {
            print_line(json!({"error": {"code": code, "message": message}}));
        } else {
            eprintln!("error ({code}): {message}");
        }
        ExitCode::FAILURE
    }

    pub fn client_error(&self, e: &ClientError) -> ExitCode {
        self.fail(&e.code, &e.message)
    }
}

/// A time in milliseconds since the Unix epoch as text people read (RFC 3339, UTC, ms);
/// "-" for 0 (not set). JSON output keeps the epoch milliseconds.
pub fn human_time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Writes one line to stdout. When the reader has gone away (`txmq read … | head -1`), the
/// command ends quietly, as other command-line tools do; `println!` panicked there.
fn print_line(line: impl Display) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}")
        && e.kind() == ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Reports a command-line parsing error, as JSON when `--output json` was asked for.
pub fn parse_error(raw: &[String], e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let wants_json = raw.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
        || raw.iter().any(|a| a == "--output=json");
    if wants_json {
        let message = e.render().to_string();
        let message = message
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ");
        print_line(json!({"error": {"code": "invalid_argument", "message": message}}));
    } else {
        let _ = e.print();
    }
    ExitCode::from(2)
}

#[cfg(test)]
mod time_tests {
    use super::human_time;

    #[test]
    fn epoch_milliseconds_read_as_utc_dates() {
        assert_eq!(human_time(0), "-");
        assert_eq!(human_time(1_796_541_746_834), "2026-12-06T07:22:26.834Z");
    }
}
