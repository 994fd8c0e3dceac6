//! Error kinds that decide the exit code, and the one function that picks it.
//!
//! Most errors are plain `anyhow` errors with context. A typed error exists only where something
//! branches on it: the exit code, and the `--json` error event (which wants status and code).
//! Text that came from a server passes through `scrub` before it can reach a terminal.

use std::fmt;
use std::io;
use std::sync::Mutex;

/// Exit codes; the table in `--help` and the README lists the same rows.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const API: u8 = 3;
    pub const NETWORK: u8 = 4;
    pub const STREAM: u8 = 5;
    pub const TOOL_ROUNDS: u8 = 6;
    pub const SCHEMA: u8 = 7;
    pub const MCP: u8 = 8;
    /// 128 + SIGINT.
    pub const INTERRUPTED: u8 = 130;
    /// 128 + SIGTERM.
    pub const TERMINATED: u8 = 143;
}

/// Bad flags, no prompt, unusable input or configuration: exit 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

/// The server said no: a non-2xx status or an error object in the stream: exit 3.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    /// The server's `Retry-After`, when it sent one.
    pub(crate) retry_after: Option<std::time::Duration>,
}

/// The network failed us: DNS, connect, TLS, reset, timeout: exit 4.
#[derive(Debug)]
pub(crate) struct NetworkError {
    pub(crate) message: String,
    /// A refused or reset connection may work a moment later; a timeout or TLS error will not.
    pub(crate) transient: bool,
}

impl NetworkError {
    pub(crate) fn new(message: String) -> Self {
        NetworkError {
            message,
            transient: false,
        }
    }

    pub(crate) fn transient(message: String) -> Self {
        NetworkError {
            message,
            transient: true,
        }
    }
}

/// The stream itself is unusable: truncated, not JSON, a line over the cap: exit 5.
#[derive(Debug)]
pub(crate) struct StreamError(pub String);

/// The tool loop hit `--max-tool-rounds` with the model still calling tools: exit 6.
#[derive(Debug)]
pub(crate) struct ToolRoundsError(pub String);

/// The answer does not match `--schema` (or is a refusal): exit 7.
#[derive(Debug)]
pub(crate) struct SchemaError(pub String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

/// An MCP server could not be started, initialized or listed: exit 8, before any request.
#[derive(Debug)]
pub(crate) struct McpError(pub String);

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for McpError {}

/// SIGINT or SIGTERM stopped the run: exit 130 or 143. Already reported by the sink.
#[derive(Debug)]
pub(crate) struct Interrupted(pub Signal);

/// A worker found its answer cancelled (the signal that did it decides the exit code).
#[derive(Debug)]
pub(crate) struct Cancelled;

/// A worker thread panicked: a bug, already reported on stderr by the panic hook.
#[derive(Debug)]
pub(crate) struct Panicked;

impl ApiError {
    /// Builds an API error from server-provided text, made safe for one terminal line.
    pub(crate) fn new(status: Option<u16>, code: Option<String>, message: &str) -> Self {
        ApiError {
            status,
            code: code.map(|c| scrub(&c)),
            message: scrub(message),
            retry_after: None,
        }
    }
}

impl ApiError {
    /// Recognises the error shapes OpenAI-compatible servers send, in a body or a chunk:
    /// `{"error":{"message","code","type"}}` (OpenAI, Azure, LiteLLM), `{"error":"text"}`
    /// (Ollama), `{"object":"error","message","code"}` (vLLM), `{"detail":...}` (FastAPI).
    pub(crate) fn from_body(body: &serde_json::Value, status: Option<u16>) -> Option<ApiError> {
        use serde_json::Value;
        fn code_of(v: &Value) -> Option<String> {
            let code = v
                .get("code")
                .filter(|c| !c.is_null())
                .or_else(|| v.get("type"));
            match code? {
                Value::String(s) if !s.is_empty() && s != "None" => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }
        fn message_of(v: &Value) -> Option<String> {
            match v.get("message").or_else(|| v.get("detail"))? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        }
        match body.get("error") {
            Some(Value::String(message)) => Some(ApiError::new(status, None, message)),
            Some(error @ Value::Object(_)) => {
                let message = message_of(error).unwrap_or_else(|| error.to_string());
                Some(ApiError::new(status, code_of(error), &message))
            }
            _ if body.get("object").and_then(Value::as_str) == Some("error") => {
                let message = message_of(body).unwrap_or_else(|| body.to_string());
                Some(ApiError::new(status, code_of(body), &message))
            }
            _ if body.get("detail").is_some() && body.get("choices").is_none() => {
                Some(ApiError::new(status, None, &message_of(body)?))
            }
            _ => None,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => {
                write!(f, "HTTP {status}")?;
                let reason = ureq::http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason());
                if let Some(reason) = reason {
                    write!(f, " {reason}")?;
                }
            }
            None => f.write_str("the server reported an error")?,
        }
        // LiteLLM and llama.cpp send the status again as the code ("429", 401): said once.
        let repeats_status = self
            .status
            .is_some_and(|status| self.code.as_deref() == Some(status.to_string().as_str()));
        if let Some(code) = self.code.as_ref().filter(|_| !repeats_status) {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for ToolRoundsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", self.0.name())
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
impl std::error::Error for ApiError {}
impl std::error::Error for NetworkError {}
impl std::error::Error for StreamError {}
impl std::error::Error for ToolRoundsError {}
impl std::error::Error for Interrupted {}
impl std::error::Error for Cancelled {}
impl std::error::Error for Panicked {}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internal error: a worker thread panicked")
    }
}

/// A signal that stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
    /// SIGTERM: `kill`, a supervisor, a CI job's cancel button.
    Terminate,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

impl Signal {
    /// 128 + the signal number, as shells report a process killed by it.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => exit::INTERRUPTED,
            Signal::Terminate => exit::TERMINATED,
        }
    }
}

/// Picks the exit code for an error by looking for a typed error anywhere in its chain.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return exit::USAGE;
        }
        if cause.is::<ApiError>() {
            return exit::API;
        }
        if cause.is::<NetworkError>() {
            return exit::NETWORK;
        }
        if cause.is::<StreamError>() {
            return exit::STREAM;
        }
        if cause.is::<ToolRoundsError>() {
            return exit::TOOL_ROUNDS;
        }
        if cause.is::<SchemaError>() {
            return exit::SCHEMA;
        }
        if cause.is::<McpError>() {
            return exit::MCP;
        }
        if let Some(Interrupted(signal)) = cause.downcast_ref() {
            return signal.exit_code();
        }
    }
    exit::OTHER
}

/// True when the error needs no line from `main`: the sink said it (`interrupted ...`), or the
/// panic hook did.
pub fn is_reported(err: &anyhow::Error) -> bool {
    err.is::<Interrupted>() || err.is::<Panicked>()
}

/// True when the error is only that our reader went away (`| head`): that is success.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Every secret of this run: the key, and the values of secret headers.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remembers a secret so that [`scrub`] can blank it out of anything a server echoes back.
pub(crate) fn register_secret(secret: &str) {
    // Very short values would blank out ordinary words; real keys are long.
    if secret.len() >= 8
        && let Ok(mut secrets) = SECRETS.lock()
    {
        secrets.push(secret.to_owned());
        // Longest first: a secret that begins with another is blanked whole, not its start.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Every secret registered so far, for writers that blank them ([`crate::emit::redact::Blanking`]).
pub(crate) fn secrets() -> Vec<String> {
    SECRETS.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Makes server text safe for one line of a terminal: the API key and secret headers become
/// `***`, control characters (ANSI escapes, newlines) become spaces, runs of white space fold, and
/// very long text is cut. Secrets go first, so a cut can never leave part of one behind.
pub(crate) fn scrub(text: &str) -> String {
    const MAX_CHARS: usize = 500;
    let mut text = std::borrow::Cow::Borrowed(text);
    if let Ok(secrets) = SECRETS.lock() {
        for secret in secrets.iter() {
            if text.contains(secret.as_str()) {
                text = std::borrow::Cow::Owned(text.replace(secret.as_str(), "***"));
            }
        }
    }
    let mut out = String::with_capacity(text.len().min(MAX_CHARS + 3));
    let mut last_space = true;
    for (count, ch) in text.chars().enumerate() {
        if count == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if ch.is_control() || ch.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(ch);
            last_space = false;
        }
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_typed_error_has_its_own_exit_code_even_under_context() {
        let cases: [(anyhow::Error, u8); 8] = [
            (anyhow::anyhow!("plain"), exit::OTHER),
            (UsageError("u".into()).into(), exit::USAGE),
            (
                ApiError::new(Some(429), None, "slow down").into(),
                exit::API,
            ),
            (NetworkError::new("n".into()).into(), exit::NETWORK),
            (StreamError("s".into()).into(), exit::STREAM),
            (ToolRoundsError("t".into()).into(), exit::TOOL_ROUNDS),
            (SchemaError("s".into()).into(), exit::SCHEMA),
            (McpError("m".into()).into(), exit::MCP),
        ];
        for (err, code) in cases {
            let wrapped = Err::<(), _>(err).context("outer").unwrap_err();
            assert_eq!(exit_code(&wrapped), code, "{wrapped:#}");
        }
    }

    #[test]
    fn broken_pipe_is_found_through_context() {
        let err = Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing stdout")
            .unwrap_err();
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn scrub_makes_one_safe_line() {
        assert_eq!(
            scrub("line one\n\tline\x1b[31m two  "),
            "line one line [31m two"
        );
        assert_eq!(scrub(&"x".repeat(600)).len(), 503);
    }

    #[test]
    fn scrub_blanks_a_secret_that_begins_with_another_whole() {
        // Registered shorter first; the process-wide list is shared, so the names are unique.
        register_secret("scrub-prefix-canary");
        register_secret("scrub-prefix-canary-and-more");
        assert_eq!(
            scrub("a scrub-prefix-canary-and-more b scrub-prefix-canary c"),
            "a *** b *** c"
        );
    }

    #[test]
    fn every_known_error_shape_is_recognised() {
        use serde_json::json;
        let cases = [
            (
                json!({"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}),
                "rate_limit_exceeded",
                "Rate limit",
            ),
            (
                json!({"error":{"message":"m","type":"invalid_request_error","code":null}}),
                "invalid_request_error",
                "m",
            ),
            (
                json!({"error":"model \"x\" not found"}),
                "",
                "model \"x\" not found",
            ),
            (
                json!({"object":"error","message":"too long","type":"BadRequestError","code":400}),
                "400",
                "too long",
            ),
            (
                json!({"error":{"message":"busy","type":"None","code":"429"}}),
                "429",
                "busy",
            ),
            (json!({"detail":"Not Found"}), "", "Not Found"),
        ];
        for (body, code, message) in cases {
            let err = ApiError::from_body(&body, Some(400)).expect("recognised");
            assert_eq!(err.code.unwrap_or_default(), code, "{body}");
            assert_eq!(err.message, message, "{body}");
        }
        assert!(ApiError::from_body(&json!({"choices":[]}), None).is_none());
        assert!(ApiError::from_body(&json!({"error":null,"choices":[]}), None).is_none());
    }

    #[test]
    fn every_registered_secret_is_blanked() {
        register_secret("sk-unit-secret-1");
        register_secret("header-secret-2");
        assert_eq!(
            scrub("bad sk-unit-secret-1 and header-secret-2"),
            "bad *** and ***"
        );
    }

    #[test]
    fn a_secret_across_the_length_cut_is_still_blanked() {
        register_secret("sk-straddles-the-cut");
        let text = format!("{}sk-straddles-the-cut", "x".repeat(490));
        let scrubbed = scrub(&text);
        assert!(!scrubbed.contains("sk-straddl"), "{scrubbed}");
        assert!(scrubbed.ends_with("x***"), "{scrubbed}");
    }

    #[test]
    fn api_error_renders_status_code_and_message() {
        let err = ApiError::new(Some(401), Some("invalid_api_key".into()), "Bad key");
        assert_eq!(
            err.to_string(),
            "HTTP 401 Unauthorized (invalid_api_key): Bad key"
        );
        let err = ApiError::new(Some(429), Some("429".into()), "slow down");
        assert_eq!(err.to_string(), "HTTP 429 Too Many Requests: slow down");
        let err = ApiError::new(None, Some("500".into()), "gone");
        assert_eq!(err.to_string(), "the server reported an error (500): gone");
        let err = ApiError::new(None, None, "overloaded");
        assert_eq!(err.to_string(), "the server reported an error: overloaded");
    }
}
