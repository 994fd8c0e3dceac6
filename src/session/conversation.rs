//! The conversation: the `messages` sent, loaded from a transcript file, extended by each turn,
//! and saved back atomically.
//!
//! A transcript is an OpenAI `messages` JSON array, or JSON Lines with one message per line; it is
//! saved in the format it was loaded in (or by the `--save` file's extension: `.jsonl` is JSON
//! Lines). Saving replaces the file atomically ([`crate::session::replace`]), so an interrupted
//! run never leaves half a transcript.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};

use crate::error::UsageError;
use crate::event::ToolCall;
use crate::session::attach::object;
use crate::session::replace::{replace_file, replaceable, resolve_symlinks};
use crate::transport::request::OUTPUT_ITEMS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
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
pub(crate) struct Conversation {
    /// Each message shared, not copied, with the requests that send it: they can be large.
    pub(crate) messages: Vec<Arc<Value>>,
    /// The format the transcript was loaded in, if it was.
    pub(crate) format: Option<Format>,
}

impl Conversation {
    pub(crate) fn new() -> Self {
        Conversation {
            messages: Vec::new(),
            format: None,
        }
    }

    /// Loads a transcript: a JSON array of messages, or one message per line.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
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
            messages: messages
                .into_iter()
                .map(without_null_content)
                .map(Arc::new)
                .collect(),
            format: Some(format),
        })
    }

    /// Replaces the first system message, or puts one first when there is none.
    pub(crate) fn set_system(&mut self, system: &str) {
        let message = Arc::new(json!({"role": "system", "content": system}));
        match self.messages.iter_mut().find(|m| m["role"] == "system") {
            Some(existing) => *existing = message,
            None => self.messages.insert(0, message),
        }
    }

    /// Forgets everything but the system message (chat's `/clear`).
    pub(crate) fn clear(&mut self) {
        self.messages.retain(|m| m["role"] == "system");
    }

    pub(crate) fn push_user(&mut self, text: impl Into<String>) {
        let message = object([("role", "user".into()), ("content", text.into().into())]);
        self.messages.push(Arc::new(message));
    }

    /// A user message with attachments: the text first, then each attachment's content part.
    /// The text is moved in, not copied: a prompt may be tens of MiB.
    pub(crate) fn push_user_with(&mut self, text: impl Into<String>, attachments: Vec<Value>) {
        let text: String = text.into();
        if attachments.is_empty() {
            return self.push_user(text);
        }
        let mut parts = vec![object([("type", "text".into()), ("text", text.into())])];
        parts.extend(attachments);
        let message = object([("role", "user".into()), ("content", parts.into())]);
        self.messages.push(Arc::new(message));
    }

    /// The assistant's turn: its text and the tool calls it made. A turn of calls alone has no
    /// `content` at all: strict servers (pydantic models) refuse `"content": null`, and the API
    /// makes the field optional when there are `tool_calls`.
    pub(crate) fn push_assistant(&mut self, content: &str, tool_calls: &[ToolCall]) {
        let mut message = json!({"role": "assistant"});
        if !content.is_empty() || tool_calls.is_empty() {
            message["content"] = Value::from(content);
        }
        if !tool_calls.is_empty() {
            message["tool_calls"] = tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect();
        }
        self.messages.push(Arc::new(message));
    }

    /// The text of an answer that did not finish, marked so that a person reading the file, and
    /// the model reading it back, can tell: `[answer incomplete: why]`.
    pub(crate) fn push_partial_answer(&mut self, text: &str, why: &str) {
        let separator = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        self.push_assistant(&format!("{text}{separator}[answer incomplete: {why}]"), &[]);
    }

    pub(crate) fn push_tool_result(&mut self, call_id: &str, content: &str) {
        self.messages.push(Arc::new(
            json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        ));
    }

    /// Keeps the Responses API's output items with the assistant message just pushed, to send
    /// back as received in the next request of a tool loop or chat. Reasoning items go back
    /// only when they carry their reasoning (`encrypted_content` or `content`): a bare one
    /// refers to a stored response. Unless the requests are `stored`, the items go back
    /// without their `id`s, which name stored items (OpenAI's own store-less client, Codex,
    /// never sends them either).
    pub(crate) fn keep_output_items(&mut self, items: &[Value], stored: bool) {
        let Some(last) = self
            .messages
            .last_mut()
            .filter(|m| m["role"] == "assistant")
        else {
            return;
        };
        let carries_reasoning = |item: &Value| {
            item.get("encrypted_content").is_some_and(|c| !c.is_null())
                || item["content"].as_array().is_some_and(|c| !c.is_empty())
        };
        let kept: Vec<Value> = items
            .iter()
            .filter(|item| item["type"] != "reasoning" || carries_reasoning(item))
            .map(|item| match item {
                Value::Object(fields) if !stored => {
                    let mut fields = fields.clone();
                    fields.remove("id");
                    Value::Object(fields)
                }
                other => other.clone(),
            })
            .collect();
        Arc::make_mut(last)[OUTPUT_ITEMS] = Value::Array(kept);
    }

    /// Gives every call of the last assistant message that has no result yet a result saying
    /// why it was not run, so the conversation stays sendable: the API rejects an assistant
    /// message whose `tool_calls` are not all answered. Returns how many it answered.
    pub(crate) fn answer_unanswered_calls(&mut self, why: &str) -> usize {
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
    pub(crate) fn close_unfinished(&mut self, in_flight: Option<&str>, why: &str) {
        if let Some(text) = in_flight {
            self.push_partial_answer(text, why);
        }
        self.answer_unanswered_calls(why);
    }

    /// The ids of the tool calls in the last assistant message.
    pub(crate) fn pending_tool_call_ids(&self) -> Vec<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m["role"] == "assistant")
            .and_then(|m| m["tool_calls"].as_array())
            .map(|calls| calls.iter().filter_map(|c| c["id"].as_str()).collect())
            .unwrap_or_default()
    }

    /// Writes the transcript atomically: a temporary file beside the file `path` names (through
    /// any symlinks), then a rename over it.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let format = self.format.unwrap_or_else(|| Format::for_path(path));
        // Written into the file as it is serialized, not into a copy first: attachments.
        let write = |out: &mut dyn Write| -> io::Result<()> {
            match format {
                Format::Array => {
                    let messages: Vec<Saved<'_>> = self.messages.iter().map(|m| Saved(m)).collect();
                    serde_json::to_writer_pretty(&mut *out, &messages)?;
                    out.write_all(b"\n")
                }
                Format::Lines => self.messages.iter().try_for_each(|message| {
                    serde_json::to_writer(&mut *out, &Saved(message))?;
                    out.write_all(b"\n")
                }),
            }
        };
        replace_file(path, write).with_context(|| save_failed(path))
    }

    /// Refuses, before any request, a `--save` path that the save would refuse after it.
    pub(crate) fn check_save_path(path: &Path) -> anyhow::Result<()> {
        resolve_symlinks(path)
            .and_then(|target| replaceable(&target).map(drop))
            .with_context(|| save_failed(path))
    }
}

fn save_failed(path: &Path) -> String {
    format!("cannot save the conversation to {}", path.display())
}

/// An assistant message of tool calls saved by an older version as `"content": null`, as it is
/// written now: without `content`, which strict servers refuse as `null`.
fn without_null_content(mut message: Value) -> Value {
    if let Value::Object(fields) = &mut message
        && fields.get("content").is_some_and(Value::is_null)
        && fields
            .get("tool_calls")
            .is_some_and(|calls| !calls.is_null())
    {
        fields.shift_remove("content");
    }
    message
}

/// A message as saved: without our own keys, written from the message itself rather than from a
/// copy (attachments make messages large).
struct Saved<'a>(&'a Value);

impl serde::Serialize for Saved<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(fields) if fields.contains_key(OUTPUT_ITEMS) => {
                let mut map = serializer.serialize_map(Some(fields.len() - 1))?;
                for (key, value) in fields.iter().filter(|(key, _)| *key != OUTPUT_ITEMS) {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

impl Default for Conversation {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        assert_eq!(*c.messages[0], json!({"role":"system","content":"two"}));
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
                Arc::new(
                    json!({"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]})
                ),
                Arc::new(json!({"role":"tool","tool_call_id":"call_1","content":"42"})),
            ]
        );
    }

    /// A scratch directory of its own for each test, so tests running at once do not collide.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gptstream-conv-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn hi() -> Conversation {
        let mut c = Conversation::new();
        c.push_user("hi");
        c
    }

    /// Issue #12, defect 8: `--save` replaced a `chmod 600` transcript with a 0644 file.
    #[cfg(unix)]
    #[test]
    fn defect8_save_keeps_the_mode_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("chat.json");
        for mode in [0o600, 0o640, 0o604] {
            fs::write(&path, "[]\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            hi().save(&path).unwrap();
            let kept = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(kept, mode, "{kept:o}");
            assert!(fs::read_to_string(&path).unwrap().contains("\"hi\""));
        }
        assert_eq!(names_in(&dir), ["chat.json"]);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Issue #12, defect 8: the replacement file took our owner, not the old file's. Only root
    /// may give a file away, so elsewhere there is nothing to check and the test says so.
    #[cfg(unix)]
    #[test]
    fn save_keeps_the_owner_of_the_file_it_replaces_when_allowed() {
        use std::os::unix::fs::MetadataExt;
        let dir = scratch("owner");
        let path = dir.join("chat.json");
        fs::write(&path, "[]\n").unwrap();
        let nobody = 65_534;
        if std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).is_err() {
            eprintln!("not root: cannot give a file away, nothing to check");
            fs::remove_dir_all(dir).unwrap();
            return;
        }
        hi().save(&path).unwrap();
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), (nobody, nobody));
        fs::remove_dir_all(dir).unwrap();
    }

    /// Issue #12, defect 8: `--save` turned a symlink into a regular file. The link stays, its
    /// target gets the content; a dangling link gets its target created.
    #[cfg(unix)]
    #[test]
    fn defect8_save_writes_through_a_symlink_and_keeps_it() {
        let dir = scratch("symlink");
        fs::create_dir_all(dir.join("real")).unwrap();
        fs::write(dir.join("real/chat.json"), "[]\n").unwrap();
        std::os::unix::fs::symlink("real/chat.json", dir.join("link.json")).unwrap();
        std::os::unix::fs::symlink("link.json", dir.join("chain.json")).unwrap();
        std::os::unix::fs::symlink("real/new.jsonl", dir.join("dangling.jsonl")).unwrap();

        hi().save(&dir.join("chain.json")).unwrap();
        hi().save(&dir.join("dangling.jsonl")).unwrap();

        for link in ["link.json", "chain.json", "dangling.jsonl"] {
            let meta = fs::symlink_metadata(dir.join(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "{link} is no longer a link");
        }
        assert!(
            fs::read_to_string(dir.join("real/chat.json"))
                .unwrap()
                .contains("\"hi\"")
        );
        assert_eq!(
            fs::read_to_string(dir.join("real/new.jsonl")).unwrap(),
            "{\"role\":\"user\",\"content\":\"hi\"}\n"
        );
        assert_eq!(
            names_in(&dir),
            ["chain.json", "dangling.jsonl", "link.json", "real"]
        );
        assert_eq!(names_in(&dir.join("real")), ["chat.json", "new.jsonl"]);
        fs::remove_dir_all(dir).unwrap();
    }

    /// A failed save leaves no temporary file behind (here: the target is a directory).
    #[test]
    fn a_failed_save_leaves_no_temporary_file() {
        let dir = scratch("failed");
        fs::create_dir_all(dir.join("chat.json/inside")).unwrap();
        let err = hi().save(&dir.join("chat.json")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot save the conversation to "),
            "{err:#}"
        );
        assert_eq!(names_in(&dir), ["chat.json"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn output_items_keep_their_reasoning_and_lose_their_ids_unless_stored() {
        let message = json!({"id":"msg_1","type":"message","role":"assistant","content":[]});
        let call =
            json!({"id":"fc_1","type":"function_call","call_id":"c","name":"f","arguments":"{}"});
        let encrypted =
            json!({"id":"rs_1","type":"reasoning","summary":[],"encrypted_content":"gAAA"});
        let bare = json!({"id":"rs_2","type":"reasoning","summary":[]});
        let items = [encrypted.clone(), bare, message.clone(), call.clone()];
        let mut c = Conversation::new();
        c.push_assistant("", &[]);
        c.keep_output_items(&items, true);
        assert_eq!(
            c.messages[0][OUTPUT_ITEMS],
            json!([encrypted, message, call])
        );
        c.keep_output_items(&items, false);
        assert_eq!(
            c.messages[0][OUTPUT_ITEMS],
            json!([{"type":"reasoning","summary":[],"encrypted_content":"gAAA"},
                   {"type":"message","role":"assistant","content":[]},
                   {"type":"function_call","call_id":"c","name":"f","arguments":"{}"}])
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
            **c.messages.last().unwrap(),
            json!({"role":"tool","tool_call_id":"b","content":"error: this tool call was not run: interrupted by SIGINT"})
        );
        assert_eq!(c.answer_unanswered_calls("again"), 0);
        c.push_user("next");
        c.close_unfinished(Some("Hel"), "why");
        assert_eq!(
            **c.messages.last().unwrap(),
            json!({"role":"assistant","content":"Hel\n[answer incomplete: why]"})
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
            "{\"role\":\"user\",\"content\":\"hi\"}\n"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::remove_dir_all(dir).unwrap();
    }
}
