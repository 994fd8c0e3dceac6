//! The `--json` sink: one JSON object per line on stdout, written as each event happens.
//!
//! Lines are built in a reused buffer; delta lines are written when their network read has been
//! decoded (that read's lines in one `write`), any other event at once. A reader never sees half
//! an object. The schema is a contract, documented in the
//! README's "JSON Lines" section.
//!
//! JSON allows U+2028, U+2029 and U+0085 raw inside strings, but some readers split lines on
//! them (Python's `str.splitlines`, JavaScript before ES2019), so each line is checked once it
//! is rendered and they are written as `\u2028`, `\u2029` and `\u0085`.

use std::io::{self, Write};

use serde_json::Value;

use crate::emit::text::millis;
use crate::event::{Event, Sink};

pub(crate) struct JsonSink<W: Write> {
    out: W,
    line: Vec<u8>,
}

/// Writes one JSON object field by field, `type` first, straight into the line buffer: no
/// `Value` tree per event, and a stable field order a person can read down a column.
struct Object<'a> {
    line: &'a mut Vec<u8>,
}

impl<'a> Object<'a> {
    fn new(line: &'a mut Vec<u8>, kind: &str) -> Self {
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.push(b'"');
        Object { line }
    }

    /// Keys are escaped too: usage keys come from the server.
    fn key(&mut self, key: &str) -> io::Result<()> {
        self.line.push(b',');
        serde_json::to_writer(&mut *self.line, key)?;
        self.line.push(b':');
        Ok(())
    }

    fn str(mut self, key: &str, value: &str) -> io::Result<Self> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.line, value)?;
        Ok(self)
    }

    fn opt_str(mut self, key: &str, value: Option<&str>) -> io::Result<Self> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.line, &value)?;
        Ok(self)
    }

    fn num(mut self, key: &str, value: u64) -> io::Result<Self> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.line, &value)?;
        Ok(self)
    }

    fn value(mut self, key: &str, value: &Value) -> io::Result<Self> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.line, value)?;
        Ok(self)
    }

    fn end(self) {
        self.line.push(b'}');
    }
}

/// The hot path: `{"type":KIND,"choice":N,"delta":TEXT}`.
fn delta_line(line: &mut Vec<u8>, kind: &str, choice: u64, delta: &str) -> io::Result<()> {
    Object::new(line, kind)
        .num("choice", choice)?
        .str("delta", delta)?
        .end();
    Ok(())
}

impl<W: Write> JsonSink<W> {
    pub(crate) fn new(out: W) -> Self {
        JsonSink {
            out,
            line: Vec::with_capacity(256),
        }
    }

    fn render(line: &mut Vec<u8>, event: &Event<'_>) -> io::Result<()> {
        match *event {
            Event::Start { id, model, created } => Object::new(line, "start")
                .opt_str("id", id)?
                .opt_str("model", model)?
                .value("created", &created.map_or(Value::Null, Value::from))?
                .end(),
            Event::Content { choice, delta } => delta_line(line, "content", choice, delta)?,
            Event::Reasoning { choice, delta } => delta_line(line, "reasoning", choice, delta)?,
            Event::Refusal { choice, delta } => delta_line(line, "refusal", choice, delta)?,
            Event::ToolCallDelta { choice, fragment } => Object::new(line, "tool_call_delta")
                .num("choice", choice)?
                .num("index", fragment.index as u64)?
                .opt_str("id", fragment.id)?
                .opt_str("name", fragment.name)?
                .str("arguments_delta", fragment.arguments_delta)?
                .end(),
            Event::ToolCallNotRun { .. } | Event::Completed(_) => {}
            Event::ToolCall { choice, call } => {
                let arguments = call.parsed_arguments();
                let object = Object::new(line, "tool_call")
                    .num("choice", choice)?
                    .num("index", call.index as u64)?
                    .str("id", &call.id)?
                    .str("name", &call.name)?
                    .value("arguments", arguments.as_ref().unwrap_or(&Value::Null))?;
                match arguments {
                    Some(_) => object.end(),
                    None => object.str("arguments_raw", &call.arguments)?.end(),
                }
            }
            Event::ToolResult {
                choice,
                call,
                outcome,
            } => {
                let object = Object::new(line, "tool_result")
                    .num("choice", choice)?
                    .num("index", call.index as u64)?
                    .str("id", &call.id)?
                    .str("name", &call.name)?
                    .value(
                        "exit_code",
                        &outcome.exit_code.map_or(Value::Null, Value::from),
                    )?
                    .value("timed_out", &Value::from(outcome.timed_out))?
                    .num("output_bytes", outcome.output_bytes as u64)?
                    .value("truncated", &Value::from(outcome.truncated))?
                    .str("output", &outcome.content)?;
                // An MCP call's: which server ran it, and whether it was an error.
                match (&outcome.server, outcome.is_error) {
                    (Some(server), Some(is_error)) => object
                        .str("server", server)?
                        .value("is_error", &Value::from(is_error))?
                        .end(),
                    _ => object.end(),
                }
            }
            Event::Finish {
                choice,
                reason,
                incomplete_reason,
            } => {
                let object = Object::new(line, "finish")
                    .num("choice", choice)?
                    .str("reason", reason)?;
                match incomplete_reason {
                    Some(why) => object.str("incomplete_reason", why)?.end(),
                    None => object.end(),
                }
            }
            Event::Schema { valid, error } => Object::new(line, "schema")
                .value("valid", &Value::from(valid))?
                .opt_str("error", error)?
                .end(),
            Event::Usage(usage) => {
                let mut object = Object::new(line, "usage");
                for (key, value) in usage.iter().filter(|(key, _)| *key != "type") {
                    object = object.value(key, value)?;
                }
                object.end()
            }
            Event::End(summary) => {
                let ttft = summary.time_to_first_token.map(millis);
                let usage = summary.usage.clone().map_or(Value::Null, Value::Object);
                Object::new(line, "end")
                    .value(
                        "time_to_first_token_ms",
                        &ttft.map_or(Value::Null, Value::from),
                    )?
                    .value("duration_ms", &Value::from(millis(summary.duration)))?
                    .num("requests", summary.requests as u64)?
                    .num("tool_calls", summary.tool_calls as u64)?
                    .value("usage", &usage)?
                    .value(
                        "tokens_per_second",
                        &summary.tokens_per_second().map_or(Value::Null, Value::from),
                    )?
                    .end()
            }
            Event::Error(report) => Object::new(line, "error")
                .str("message", &report.message)?
                .value("status", &report.status.map_or(Value::Null, Value::from))?
                .opt_str("code", report.code.as_deref())?
                .end(),
            Event::Interrupted(interruption) => Object::new(line, "error")
                .str("message", "interrupted")?
                .value("status", &Value::Null)?
                .value("code", &Value::Null)?
                .str("signal", interruption.signal.name())?
                .end(),
        }
        Ok(())
    }
}

/// The character at `bytes[i..]` if it is one that serde_json leaves raw but a line splitter
/// may break on, as (its UTF-8 length, its escape). Matching all the bytes matters: an em dash
/// (E2 80 94) or a no-break space (C2 A0) starts the same way.
fn line_break_at(bytes: &[u8], i: usize) -> Option<(usize, &'static [u8])> {
    match bytes[i..] {
        [0xE2, 0x80, 0xA8, ..] => Some((3, br"\u2028")),
        [0xE2, 0x80, 0xA9, ..] => Some((3, br"\u2029")),
        [0xC2, 0x85, ..] => Some((2, br"\u0085")),
        _ => None,
    }
}

/// Where the first character that [`line_break_at`] matches starts. This runs on every line
/// that is not pure ASCII, and text full of em dashes and curly quotes (E2 80 xx) is common, so
/// it does not stop at each lead byte: it looks, 16 bytes at a time and without branches (so the
/// compiler can use SIMD), for the last bytes of the three characters (A8, A9, 85), and checks
/// byte by byte only where one turns up.
fn first_line_break(bytes: &[u8]) -> Option<usize> {
    const CHUNK: usize = 16;
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        let suspect = chunk.iter().fold(0u8, |seen, &b| {
            seen | u8::from(b == 0x85) | u8::from(b & 0xFE == 0xA8)
        }) != 0;
        if suspect {
            // A character may start up to two bytes before the chunk that holds its last byte.
            let start = (n * CHUNK).saturating_sub(2);
            let end = n * CHUNK + chunk.len();
            if let Some(at) = (start..end).find(|&i| line_break_at(bytes, i).is_some()) {
                return Some(at);
            }
        }
    }
    None
}

/// Escapes U+2028, U+2029 and U+0085 in `line[start..]`, a rendered JSON object. In serialized
/// JSON these bytes can only be inside a string (key or value), where the escape means the same
/// character, so no parsing is needed. An ASCII line, the usual case, costs one `is_ascii`; the
/// line is rebuilt only when it holds one of the characters.
fn escape_line_breaks(line: &mut Vec<u8>, start: usize) {
    let rendered = &line[start..];
    if rendered.is_ascii() {
        return;
    }
    let Some(first) = first_line_break(rendered) else {
        return;
    };
    let tail = line.split_off(start + first);
    let mut i = 0;
    while i < tail.len() {
        match line_break_at(&tail, i) {
            Some((length, escape)) => {
                line.extend_from_slice(escape);
                i += length;
            }
            None => {
                line.push(tail[i]);
                i += 1;
            }
        }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    /// Delta lines wait for [`Sink::flush`] at the end of their network read; any other event
    /// is written at once, with them.
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
        match event {
            // Its `tool_call` event was written when the call completed.
            Event::ToolCallNotRun { .. } => return Ok(()),
            // The `error` event that follows is the last word.
            Event::Completed(_) => return Ok(()),
            _ => {}
        }
        let start = self.line.len();
        if let Err(err) = Self::render(&mut self.line, event) {
            self.line.truncate(start);
            return Err(err);
        }
        escape_line_breaks(&mut self.line, start);
        self.line.push(b'\n');
        match event {
            Event::Content { .. }
            | Event::Reasoning { .. }
            | Event::Refusal { .. }
            | Event::ToolCallDelta { .. } => Ok(()),
            _ => self.flush(),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let written = self
            .out
            .write_all(&self.line)
            .and_then(|()| self.out.flush());
        self.line.clear();
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ErrorReport;
    use serde_json::{Map, json};

    fn render(events: &[Event<'_>]) -> String {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        for event in events {
            sink.emit(event).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
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
            "{\"type\":\"error\",\"message\":\"HTTP 429: slow down\",\"status\":429,\"code\":\"rate_limit_exceeded\"}\n"
        );
    }

    /// Issue #12, defect 13: U+2028 and U+2029 were written raw, and readers that split lines on
    /// them (Python's `str.splitlines`, older JavaScript) cut the object in two. Every string
    /// the sink writes, keys included, escapes them, and U+0085 (NEL, which `splitlines` also
    /// splits on); other characters that start with the same bytes (an em dash) stay raw.
    #[test]
    fn defect13_line_and_paragraph_separators_are_escaped_in_every_string() {
        let text = "a\u{2028}b\u{2029}c\u{85}d \u{2014}\u{a0}";
        let usage: Map<String, Value> =
            serde_json::from_value(json!({ text: 1, "detail": {text: text} })).unwrap();
        let report = ErrorReport {
            message: text.into(),
            status: None,
            code: Some(text.into()),
        };
        let out = render(&[
            Event::Content {
                choice: 0,
                delta: text,
            },
            Event::Usage(&usage),
            Event::Error(&report),
        ]);
        assert!(!out.contains(['\u{2028}', '\u{2029}', '\u{85}']), "{out}");
        assert!(
            out.contains("a\\u2028b\\u2029c\\u0085d \u{2014}\u{a0}"),
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        for line in &lines {
            let pieces = line.split(['\u{2028}', '\u{2029}', '\u{85}']).count();
            assert_eq!(pieces, 1, "{line}");
        }
        let parsed: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed[0]["delta"], text);
        assert_eq!(parsed[1][text], 1);
        assert_eq!(parsed[1]["detail"][text], text);
        assert_eq!(parsed[2]["message"], text);
        assert_eq!(parsed[2]["code"], text);
    }

    /// The search goes 16 bytes at a time; a separator is found wherever it falls, across a
    /// chunk boundary too, and the text around it comes back unchanged.
    #[test]
    fn a_separator_is_escaped_at_every_offset() {
        for filler in ["x", "\u{2014}", "\u{e9}", "\u{a0}"] {
            for count in 0..40 {
                for separator in ["\u{2028}", "\u{2029}", "\u{85}"] {
                    let text = format!("{}{separator}{}", filler.repeat(count), filler);
                    let out = render(&[Event::Content {
                        choice: 0,
                        delta: &text,
                    }]);
                    assert!(!out.contains(separator), "{count} {filler:?}: {out}");
                    let parsed: Value = serde_json::from_str(&out).unwrap();
                    assert_eq!(parsed["delta"], text.as_str());
                }
            }
        }
    }

    #[test]
    fn hostile_usage_keys_are_escaped() {
        let usage: Map<String, Value> = serde_json::from_str(r#"{"a\"b":1}"#).unwrap();
        let line = render(&[Event::Usage(&usage)]);
        assert_eq!(line, "{\"type\":\"usage\",\"a\\\"b\":1}\n");
    }

    #[test]
    fn usage_keeps_every_field_the_server_sent() {
        let usage: Map<String, Value> = serde_json::from_str(
            r#"{"prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":4}}"#,
        )
        .unwrap();
        let line = render(&[Event::Usage(&usage)]);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            json!({"type":"usage","prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":4}})
        );
        assert!(line.starts_with(r#"{"type":"usage","#), "{line}");
    }
}
