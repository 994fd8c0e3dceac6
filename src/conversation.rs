//! The conversation: the `messages` sent, loaded from a transcript file, extended by each turn,
//! and saved back atomically.
//!
//! A transcript is an OpenAI `messages` JSON array, or JSON Lines with one message per line; it is
//! saved in the format it was loaded in (or by the `--save` file's extension: `.jsonl` is JSON
//! Lines). Saving writes a temporary file in the same directory and renames it over the target,
//! so an interrupted run never leaves half a transcript.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::error::UsageError;
use crate::tool_calls::ToolCall;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Array,
    Lines,
}

impl Format {
    fn for_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Format::Lines,
            _ => Format::Array,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub messages: Vec<Value>,
    /// The format the transcript was loaded in, if it was.
    pub format: Option<Format>,
}

impl Conversation {
    pub fn new() -> Self {
        Conversation {
            messages: Vec::new(),
            format: None,
        }
    }

    /// Loads a transcript: a JSON array of messages, or one message per line.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read --messages {}", path.display()))?;
        Self::parse(&text)
            .map_err(|why| UsageError(format!("--messages {}: {why}", path.display())).into())
    }

    fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_start();
        let (messages, format) = if trimmed.starts_with('[') {
            let messages: Vec<Value> = serde_json::from_str(trimmed)
                .map_err(|e| format!("not a JSON array of messages: {e}"))?;
            (messages, Format::Array)
        } else {
            let mut messages = Vec::new();
            for (number, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let message = serde_json::from_str(line)
                    .map_err(|e| format!("line {}: not a JSON message: {e}", number + 1))?;
                messages.push(message);
            }
            (messages, Format::Lines)
        };
        for (i, message) in messages.iter().enumerate() {
            if message.get("role").and_then(Value::as_str).is_none() {
                return Err(format!("message {} has no \"role\"", i + 1));
            }
        }
        Ok(Conversation {
            messages,
            format: Some(format),
        })
    }

    /// Replaces the first system message, or puts one first when there is none.
    pub fn set_system(&mut self, system: &str) {
        let message = json!({"role": "system", "content": system});
        match self.messages.iter_mut().find(|m| m["role"] == "system") {
            Some(existing) => *existing = message,
            None => self.messages.insert(0, message),
        }
    }

    /// Forgets everything but the system message (chat's `/clear`).
    pub fn clear(&mut self) {
        self.messages.retain(|m| m["role"] == "system");
    }

    pub fn push_user(&mut self, text: &str) {
        self.messages.push(json!({"role": "user", "content": text}));
    }

    /// The assistant's turn: its text (or `null`) and the tool calls it made.
    pub fn push_assistant(&mut self, content: &str, tool_calls: &[ToolCall]) {
        let mut message = json!({
            "role": "assistant",
            "content": if content.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::from(content) },
        });
        if !tool_calls.is_empty() {
            message["tool_calls"] = tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect();
        }
        self.messages.push(message);
    }

    /// The text of an answer that did not finish, marked so that a person reading the file, and
    /// the model reading it back, can tell: `[answer incomplete: why]`.
    pub fn push_partial_answer(&mut self, text: &str, why: &str) {
        let separator = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        self.push_assistant(&format!("{text}{separator}[answer incomplete: {why}]"), &[]);
    }

    pub fn push_tool_result(&mut self, call_id: &str, content: &str) {
        self.messages
            .push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
    }

    /// Gives every call of the last assistant message that has no result yet a result saying
    /// why it was not run, so the conversation stays sendable: the API rejects an assistant
    /// message whose `tool_calls` are not all answered. Returns how many it answered.
    pub fn answer_unanswered_calls(&mut self, why: &str) -> usize {
        let Some(last_assistant) = self.messages.iter().rposition(|m| m["role"] == "assistant")
        else {
            return 0;
        };
        let answered: Vec<String> = self.messages[last_assistant + 1..]
            .iter()
            .filter(|m| m["role"] == "tool")
            .filter_map(|m| m["tool_call_id"].as_str().map(str::to_owned))
            .collect();
        let unanswered: Vec<String> = self
            .pending_tool_call_ids()
            .into_iter()
            .filter(|id| !answered.iter().any(|a| a == id))
            .map(str::to_owned)
            .collect();
        for id in &unanswered {
            self.push_tool_result(id, &format!("error: this tool call was not run: {why}"));
        }
        unanswered.len()
    }

    /// Ends the conversation of an answer that did not finish: the text that arrived of the
    /// request in flight (if one was), marked, and results for calls that were not run.
    pub fn close_unfinished(&mut self, in_flight: Option<&str>, why: &str) {
        if let Some(text) = in_flight {
            self.push_partial_answer(text, why);
        }
        self.answer_unanswered_calls(why);
    }

    /// The ids of the tool calls in the last assistant message.
    pub fn pending_tool_call_ids(&self) -> Vec<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m["role"] == "assistant")
            .and_then(|m| m["tool_calls"].as_array())
            .map(|calls| calls.iter().filter_map(|c| c["id"].as_str()).collect())
            .unwrap_or_default()
    }

    /// Writes the transcript atomically: a temporary file beside `path`, then a rename.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let format = self.format.unwrap_or_else(|| Format::for_path(path));
        let mut text = Vec::new();
        match format {
            Format::Array => {
                serde_json::to_writer_pretty(&mut text, &self.messages)?;
                text.push(b'\n');
            }
            Format::Lines => {
                for message in &self.messages {
                    serde_json::to_writer(&mut text, message)?;
                    text.push(b'\n');
                }
            }
        }
        let temporary = temporary_path(path);
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&temporary);
            anyhow::Error::new(err).context(format!(
                "cannot save the conversation to {}",
                path.display()
            ))
        })
    }
}

impl Default for Conversation {
    fn default() -> Self {
        Self::new()
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.gptstream-{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_an_array_or_json_lines() {
        let array = Conversation::parse(r#"[{"role":"user","content":"a"}]"#).unwrap();
        assert_eq!(array.format, Some(Format::Array));
        let lines = Conversation::parse(
            "{\"role\":\"system\",\"content\":\"s\"}\n\n{\"role\":\"user\",\"content\":\"a\"}\n",
        )
        .unwrap();
        assert_eq!(lines.format, Some(Format::Lines));
        assert_eq!(lines.messages.len(), 2);
    }

    #[test]
    fn rejects_what_is_not_a_transcript() {
        assert!(
            Conversation::parse("[1]")
                .unwrap_err()
                .contains("no \"role\"")
        );
        assert!(
            Conversation::parse("{oops\n")
                .unwrap_err()
                .starts_with("line 1")
        );
    }

    #[test]
    fn system_replaces_or_goes_first() {
        let mut c = Conversation::parse(r#"[{"role":"user","content":"a"}]"#).unwrap();
        c.set_system("one");
        c.set_system("two");
        assert_eq!(c.messages[0], json!({"role":"system","content":"two"}));
        assert_eq!(c.messages.len(), 2);
    }

    #[test]
    fn assistant_tool_calls_and_results_round_trip() {
        let mut c = Conversation::new();
        let call = ToolCall::new("call_1", "f", "{}");
        c.push_assistant("", std::slice::from_ref(&call));
        assert_eq!(c.pending_tool_call_ids(), ["call_1"]);
        c.push_tool_result("call_1", "42");
        assert_eq!(
            c.messages,
            [
                json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}),
                json!({"role":"tool","tool_call_id":"call_1","content":"42"}),
            ]
        );
    }

    #[test]
    fn unanswered_calls_get_a_result_that_says_why() {
        let mut c = Conversation::new();
        let calls = [ToolCall::new("a", "f", "{}"), ToolCall::new("b", "g", "{}")];
        c.push_assistant("", &calls);
        c.push_tool_result("a", "1");
        assert_eq!(c.answer_unanswered_calls("interrupted by SIGINT"), 1);
        assert_eq!(
            c.messages.last().unwrap(),
            &json!({"role":"tool","tool_call_id":"b","content":"error: this tool call was not run: interrupted by SIGINT"})
        );
        assert_eq!(c.answer_unanswered_calls("again"), 0);
        c.push_user("next");
        c.close_unfinished(Some("Hel"), "why");
        assert_eq!(
            c.messages.last().unwrap(),
            &json!({"role":"assistant","content":"Hel\n[answer incomplete: why]"})
        );
    }

    #[test]
    fn save_is_atomic_and_keeps_the_format() {
        let dir = std::env::temp_dir().join(format!("gptstream-conv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chat.jsonl");
        let mut c = Conversation::new();
        c.push_user("hi");
        c.save(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"content\":\"hi\",\"role\":\"user\"}\n"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::remove_dir_all(dir).unwrap();
    }
}
