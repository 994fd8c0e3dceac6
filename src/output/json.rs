//! The `--json` sink: one JSON object per line on stdout, flushed as each event happens.
//!
//! Each line is built in a reused buffer and written with one `write_all`, so a reader never sees
//! half an object and a delta costs one syscall. The schema is a contract, documented in the
//! README's "JSON Lines" section.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::event::{Event, Sink};

pub struct JsonSink<W: Write> {
    out: W,
    line: Vec<u8>,
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink {
            out,
            line: Vec::with_capacity(256),
        }
    }

    /// The hot path: a delta event written without building a `Value`.
    fn delta(&mut self, kind: &str, choice: u64, delta: &str) -> io::Result<()> {
        write!(self.line, r#"{{"type":"{kind}","choice":{choice},"delta":"#)?;
        serde_json::to_writer(&mut self.line, delta)?;
        self.line.push(b'}');
        Ok(())
    }

    fn value(&mut self, value: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.line, value)?;
        Ok(())
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
        self.line.clear();
        match *event {
            Event::Start { id, model, created } => {
                self.value(&json!({"type":"start","id":id,"model":model,"created":created}))?
            }
            Event::Content { choice, delta } => self.delta("content", choice, delta)?,
            Event::Reasoning { choice, delta } => self.delta("reasoning", choice, delta)?,
            Event::Refusal { choice, delta } => self.delta("refusal", choice, delta)?,
            Event::ToolCallDelta { choice, fragment } => self.value(&json!({
                "type": "tool_call_delta",
                "choice": choice,
                "index": fragment.index,
                "id": fragment.id,
                "name": fragment.name,
                "arguments_delta": fragment.arguments_delta,
            }))?,
            Event::ToolCall { choice, call } => {
                let mut object = json!({
                    "type": "tool_call",
                    "choice": choice,
                    "index": call.index,
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.parsed_arguments(),
                });
                if object["arguments"].is_null() {
                    object["arguments_raw"] = Value::from(call.arguments.as_str());
                }
                self.value(&object)?
            }
            Event::Finish { choice, reason } => {
                self.value(&json!({"type":"finish","choice":choice,"reason":reason}))?
            }
            Event::Usage(usage) => {
                let mut object = Map::with_capacity(usage.len() + 1);
                object.insert("type".into(), "usage".into());
                for (key, value) in usage.iter().filter(|(key, _)| *key != "type") {
                    object.insert(key.clone(), value.clone());
                }
                self.value(&Value::Object(object))?
            }
            Event::End(summary) => self.value(&json!({
                "type": "end",
                "time_to_first_token_ms": summary.time_to_first_token.map(millis),
                "duration_ms": millis(summary.duration),
                "tool_calls": summary.tool_calls,
            }))?,
            Event::Error(report) => self.value(&json!({
                "type": "error",
                "message": report.message,
                "status": report.status,
                "code": report.code,
            }))?,
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ErrorReport;

    fn render(events: &[Event<'_>]) -> String {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        for event in events {
            sink.emit(event).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn deltas_are_escaped_json_one_per_line() {
        let got = render(&[
            Event::Content {
                choice: 0,
                delta: "a \"quoted\"\nline é",
            },
            Event::Reasoning {
                choice: 2,
                delta: "\u{1}",
            },
        ]);
        assert_eq!(
            got,
            "{\"type\":\"content\",\"choice\":0,\"delta\":\"a \\\"quoted\\\"\\nline é\"}\n\
             {\"type\":\"reasoning\",\"choice\":2,\"delta\":\"\\u0001\"}\n"
        );
    }

    #[test]
    fn error_event_has_status_and_code_fields() {
        let report = ErrorReport {
            message: "HTTP 429: slow down".into(),
            status: Some(429),
            code: Some("rate_limit_exceeded".into()),
        };
        assert_eq!(
            render(&[Event::Error(&report)]),
            "{\"code\":\"rate_limit_exceeded\",\"message\":\"HTTP 429: slow down\",\"status\":429,\"type\":\"error\"}\n"
        );
    }

    #[test]
    fn usage_keeps_every_field_the_server_sent() {
        let usage: Map<String, Value> = serde_json::from_str(
            r#"{"prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":4}}"#,
        )
        .unwrap();
        let line: Value = serde_json::from_str(&render(&[Event::Usage(&usage)])).unwrap();
        assert_eq!(
            line,
            json!({"type":"usage","prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":4}})
        );
    }
}
