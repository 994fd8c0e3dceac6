//! JSON-RPC 2.0 as MCP uses it: one message per line on stdio, built and told apart by hand with
//! serde_json (the official SDK needs an async runtime this binary does not carry).

use std::io::{self, BufRead};

use serde_json::{Value, json};

/// The longest message a server may send, as the longest SSE line: far past any real tool
/// result, yet bounded, so a runaway server cannot grow our memory.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How many messages a transport's reader may hand over before the client takes them: one, so
/// that what waits is bounded in bytes, not only in number. A message parsed can take many
/// times its size (a MiB of `[0,0,...]` is tens of MiB of JSON values); 64 waiting messages of
/// [`MAX_MESSAGE`] would be gigabytes. The reader then waits, and so does the server.
pub(crate) const QUEUE: usize = 1;

/// What the server said, one line at a time.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An answer to request `id`: its `result`, or its `error`.
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    /// A request of the server's own (`ping`, `roots/list`, `sampling/createMessage`...).
    Request { id: Value, method: String },
    /// A notification (logging, progress, `tools/list_changed`).
    Notification { method: String, params: Value },
    /// A line that is no JSON-RPC message; `what` says what it was, shortly.
    Garbage { what: String },
    /// A line over [`MAX_MESSAGE`].
    TooLong,
}

/// What a transport's reader hands over to the client.
#[derive(Debug)]
pub(crate) enum FromServer {
    Message(Incoming),
    /// stdout ended: the server exited, or closed it.
    Closed,
    /// The HTTP exchange of request `id` failed: no answer will come. `refused`: the server
    /// answered with an HTTP error status (it is there, and said no).
    Failed {
        id: Value,
        why: String,
        refused: bool,
    },
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Value,
}

impl Incoming {
    /// Tells one line apart.
    pub(crate) fn parse(line: &[u8]) -> Incoming {
        match serde_json::from_slice(line) {
            Ok(value) => Incoming::of(value),
            Err(_) => Incoming::Garbage {
                what: format!("not JSON: {:?}", shown(line)),
            },
        }
    }

    /// Tells one JSON value apart.
    pub(crate) fn of(value: Value) -> Incoming {
        let method = value.get("method").and_then(Value::as_str);
        let id = value
            .get("id")
            .filter(|id| id.is_number() || id.is_string());
        match (method, id) {
            (Some(method), Some(id)) => Incoming::Request {
                id: id.clone(),
                method: method.to_owned(),
            },
            (Some(method), None) => Incoming::Notification {
                method: method.to_owned(),
                params: value.get("params").cloned().unwrap_or(Value::Null),
            },
            (None, Some(id)) => {
                let outcome = match (value.get("result"), value.get("error")) {
                    (Some(result), None) => Ok(result.clone()),
                    (_, Some(error)) => Err(RpcError {
                        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                        message: error
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("(no message)")
                            .to_owned(),
                        data: error.get("data").cloned().unwrap_or(Value::Null),
                    }),
                    (None, None) => {
                        return Incoming::Garbage {
                            what: "an answer with neither result nor error".into(),
                        };
                    }
                };
                Incoming::Response {
                    id: id.clone(),
                    outcome,
                }
            }
            (None, None) => Incoming::Garbage {
                what: format!(
                    "no JSON-RPC message: {:?}",
                    shown(value.to_string().as_bytes())
                ),
            },
        }
    }
}

/// The start of a line, for an error message.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(80)]);
    crate::error::scrub(text.trim_end())
}

pub(crate) fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// The answer to a request of the server's: `ping` is answered, anything else is a method this
/// client does not offer (it declares no roots, sampling or elicitation capability).
pub(crate) fn answer(id: &Value, method: &str) -> Value {
    if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})
    }
}

/// Reads `reader` line by line, each line at most `max` bytes: a longer one is reported once as
/// [`Incoming::TooLong`] and skipped to its end, never held whole. Blank lines are skipped.
pub(crate) fn read_messages(
    mut reader: impl BufRead,
    max: usize,
    mut each: impl FnMut(Incoming) -> bool,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            // The end; a last line without its newline still counts.
            if !too_long && !line.iter().all(u8::is_ascii_whitespace) {
                each(Incoming::parse(&line));
            }
            return Ok(());
        }
        let (taken, complete) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        let piece = &buffer[..if complete { taken - 1 } else { taken }];
        if !too_long {
            if line.len() + piece.len() > max {
                too_long = true;
                line = Vec::new();
                if !each(Incoming::TooLong) {
                    return Ok(());
                }
            } else {
                line.extend_from_slice(piece);
            }
        }
        reader.consume(taken);
        if complete {
            let message = (!too_long && !line.iter().all(u8::is_ascii_whitespace))
                .then(|| Incoming::parse(&line));
            line.clear();
            too_long = false;
            if let Some(message) = message
                && !each(message)
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8], max: usize) -> Vec<String> {
        let mut seen = Vec::new();
        // A one-byte buffer: every line arrives split at every byte.
        let reader = io::BufReader::with_capacity(1, bytes);
        read_messages(reader, max, |message| {
            seen.push(match message {
                Incoming::Response { id, outcome } => format!("response {id} {outcome:?}"),
                Incoming::Request { id, method } => format!("request {id} {method}"),
                Incoming::Notification { method, .. } => format!("notification {method}"),
                Incoming::Garbage { what } => format!("garbage {what}"),
                Incoming::TooLong => "too long".into(),
            });
            true
        })
        .unwrap();
        seen
    }

    #[test]
    fn messages_of_every_kind_split_anywhere() {
        let bytes = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"a\":1}}\n\n\
            {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":-32601,\"message\":\"nope\"}}\r\n\
            {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n\
            {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\
            hello\n{\"id\":2}";
        assert_eq!(
            all(bytes, 1024),
            [
                "response 1 Ok(Object {\"a\": Number(1)})",
                "response \"x\" Err(RpcError { code: -32601, message: \"nope\", data: Null })",
                "request 7 ping",
                "notification notifications/message",
                "garbage not JSON: \"hello\"",
                "garbage an answer with neither result nor error",
            ]
        );
    }

    #[test]
    fn a_line_over_the_cap_is_said_once_and_skipped() {
        let mut bytes = vec![b'x'; 100];
        bytes.extend_from_slice(b"\n{\"id\":1,\"result\":null}\n");
        assert_eq!(all(&bytes, 50), ["too long", "response 1 Ok(Null)"]);
    }

    #[test]
    fn the_server_requests_get_correct_answers() {
        assert_eq!(
            answer(&json!(3), "ping"),
            json!({"jsonrpc":"2.0","id":3,"result":{}})
        );
        assert_eq!(
            answer(&json!("a"), "sampling/createMessage")["error"]["code"],
            -32601
        );
    }
}
