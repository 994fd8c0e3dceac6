//! Tool-call accumulation: fragments of `delta.tool_calls` in, complete calls out.
//!
//! Servers disagree on how they stream a call, so matching a fragment to its call is lenient:
//! by `index` when there is one (whatever number it starts at), by `id` when there is none (a new
//! id starts a new call, no id continues the last call). `id` and `name` are taken from the first
//! fragment that carries a non-empty one and never concatenated, because some servers resend the
//! name on every fragment. Arguments are concatenated verbatim and parsed only once the call is
//! complete; text that does not parse is kept raw, never "fixed".

use serde_json::Value;

use crate::error::StreamError;
use crate::event::{Fragment, ToolCall};

/// Caps that keep a hostile or broken server from growing memory without bound.
pub(crate) const MAX_CALLS: usize = 1024;
pub(crate) const MAX_ARGUMENTS_BYTES: usize = 16 * 1024 * 1024;

/// The calls of one choice's turn, in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct ToolCalls {
    calls: Vec<ToolCall>,
}

fn non_empty(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl ToolCalls {
    /// Adds one element of a `delta.tool_calls` array.
    pub(crate) fn apply<'a>(&mut self, fragment: &'a Value) -> anyhow::Result<Fragment<'a>> {
        let server_index = fragment.get("index").and_then(Value::as_u64);
        let id = non_empty(fragment.get("id"));
        let function = fragment.get("function");
        let name = non_empty(function.and_then(|f| f.get("name")));
        let arguments = function.and_then(|f| f.get("arguments"));

        let position = self.find_or_start(server_index, id)?;
        let call = &mut self.calls[position];
        if call.id.is_empty()
            && let Some(id) = id
        {
            call.id = id.to_owned();
        }
        if call.name.is_empty()
            && let Some(name) = name
        {
            call.name = name.to_owned();
        }
        let arguments_delta = match arguments {
            Some(Value::String(text)) => text.as_str(),
            // A few servers send the arguments already parsed, as an object, in one piece.
            Some(value @ (Value::Object(_) | Value::Array(_))) => {
                call.arguments = value.to_string();
                ""
            }
            _ => "",
        };
        if call.arguments.len() + arguments_delta.len() > MAX_ARGUMENTS_BYTES {
            return Err(StreamError(format!(
                "tool call arguments exceed {MAX_ARGUMENTS_BYTES} bytes; refusing to buffer them"
            ))
            .into());
        }
        call.arguments.push_str(arguments_delta);
        Ok(Fragment {
            index: call.index,
            id,
            name,
            arguments_delta,
        })
    }

    fn find_or_start(
        &mut self,
        server_index: Option<u64>,
        id: Option<&str>,
    ) -> anyhow::Result<usize> {
        let existing = match server_index {
            Some(index) => self
                .calls
                .iter()
                .rposition(|c| c.server_index == Some(index))
                // Some servers reuse one index for every call: a different id is a new call.
                .filter(|&i| {
                    id.is_none_or(|id| self.calls[i].id.is_empty() || self.calls[i].id == id)
                }),
            None => match (id, self.calls.last()) {
                (Some(id), Some(last)) if !last.id.is_empty() && last.id != id => None,
                (_, Some(_)) => Some(self.calls.len() - 1),
                (_, None) => None,
            },
        };
        if let Some(position) = existing {
            return Ok(position);
        }
        if self.calls.len() == MAX_CALLS {
            return Err(
                StreamError(format!("more than {MAX_CALLS} tool calls in one turn")).into(),
            );
        }
        self.calls.push(ToolCall {
            index: self.calls.len(),
            server_index,
            ..ToolCall::default()
        });
        Ok(self.calls.len() - 1)
    }

    /// Hands over the complete calls, leaving this empty for a next turn.
    pub(crate) fn take(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assemble(fragments: &[Value]) -> Vec<(usize, String, String, String)> {
        let mut calls = ToolCalls::default();
        for f in fragments {
            calls.apply(f).unwrap();
        }
        calls
            .take()
            .into_iter()
            .map(|c| (c.index, c.id, c.name, c.arguments))
            .collect()
    }

    fn call(index: usize, id: &str, name: &str, args: &str) -> (usize, String, String, String) {
        (index, id.into(), name.into(), args.into())
    }

    #[test]
    fn fragments_concatenate_by_index() {
        let got = assemble(&[
            json!({"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}),
            json!({"index":0,"function":{"arguments":"{\"ci"}}),
            json!({"index":0,"function":{"arguments":"ty\":\"Par"}}),
            json!({"index":0,"function":{"arguments":"is\"}"}}),
        ]);
        assert_eq!(
            got,
            [call(0, "call_1", "get_weather", r#"{"city":"Paris"}"#)]
        );
    }

    #[test]
    fn parallel_calls_interleave_by_index() {
        let got = assemble(&[
            json!({"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}}),
            json!({"index":1,"id":"b","function":{"name":"g","arguments":"{\"y\":"}}),
            json!({"index":0,"function":{"arguments":"1}"}}),
            json!({"index":1,"function":{"arguments":"2}"}}),
        ]);
        assert_eq!(
            got,
            [
                call(0, "a", "f", r#"{"x":1}"#),
                call(1, "b", "g", r#"{"y":2}"#)
            ]
        );
    }

    #[test]
    fn index_starting_at_one_is_renumbered_from_zero() {
        let got = assemble(&[
            json!({"index":1,"id":"a","function":{"name":"f","arguments":"{}"}}),
            json!({"index":2,"id":"b","function":{"name":"g","arguments":"{}"}}),
        ]);
        assert_eq!(got, [call(0, "a", "f", "{}"), call(1, "b", "g", "{}")]);
    }

    #[test]
    fn missing_index_matches_by_id_then_continues_the_last_call() {
        let got = assemble(&[
            json!({"id":"a","function":{"name":"f","arguments":"{\"x\""}}),
            json!({"function":{"arguments":":1}"}}),
            json!({"id":"b","function":{"name":"g","arguments":"{}"}}),
            json!({"id":"b","function":{"arguments":""}}),
        ]);
        assert_eq!(
            got,
            [call(0, "a", "f", r#"{"x":1}"#), call(1, "b", "g", "{}")]
        );
    }

    #[test]
    fn a_repeated_name_is_not_concatenated_and_empty_continuations_are_ignored() {
        let got = assemble(&[
            json!({"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\""}}),
            json!({"index":0,"id":"","function":{"name":"f","arguments":":"}}),
            json!({"index":0,"id":"a","function":{"name":"","arguments":"1}"}}),
        ]);
        assert_eq!(got, [call(0, "a", "f", r#"{"x":1}"#)]);
    }

    #[test]
    fn one_index_reused_with_new_ids_makes_new_calls() {
        let got = assemble(&[
            json!({"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}),
            json!({"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}),
        ]);
        assert_eq!(got, [call(0, "a", "f", "{}"), call(1, "b", "g", "{}")]);
    }

    #[test]
    fn arguments_sent_as_an_object_are_kept_as_json_text() {
        let got =
            assemble(&[json!({"index":0,"id":"a","function":{"name":"f","arguments":{"x":1}}})]);
        assert_eq!(got, [call(0, "a", "f", r#"{"x":1}"#)]);
    }

    #[test]
    fn fragment_reports_what_it_added() {
        let mut calls = ToolCalls::default();
        let first = json!({"index":0,"id":"a","function":{"name":"f","arguments":"{"}});
        let fragment = calls.apply(&first).unwrap();
        assert_eq!(
            fragment,
            Fragment {
                index: 0,
                id: Some("a"),
                name: Some("f"),
                arguments_delta: "{"
            }
        );
    }

    #[test]
    fn invalid_arguments_do_not_parse_but_are_kept() {
        let mut calls = ToolCalls::default();
        calls
            .apply(&json!({"index":0,"function":{"name":"f","arguments":"{oops"}}))
            .unwrap();
        let done = calls.take();
        assert_eq!(done[0].parsed_arguments(), None);
        assert_eq!(done[0].arguments, "{oops");
    }

    #[test]
    fn too_many_calls_is_an_error_not_unbounded_memory() {
        let mut calls = ToolCalls::default();
        let mut result = Ok(());
        for i in 0..=MAX_CALLS as u64 {
            result = calls.apply(&json!({"index": i})).map(drop);
        }
        assert!(result.unwrap_err().is::<StreamError>());
    }
}
