//! The request: URL, headers and JSON body, built from the flags, and the API key that goes
//! with them.
//!
//! The key is read here, from `OPENAI_API_KEY` or `--api-key-file`, and not through clap, so it
//! never shows in `--help` or in a parse error. It lives in [`ApiKey`], whose `Debug` is
//! redacted, and `--dry-run` shows it as `Bearer ***`.

use std::fmt;
use std::fs;
use std::io::Write;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::cli::{Args, DEFAULT_BASE_URL};
use crate::error::{UsageError, register_secret};
use crate::redact::{redact_url, url_secrets};

/// An API key. Printing it by accident prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Everything needed to send one chat completion request.
#[derive(Debug)]
pub struct Request {
    pub url: String,
    /// Extra headers from `-H`, in the order given.
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer ...` unless a `-H Authorization` overrides it.
    pub api_key: Option<ApiKey>,
    pub body: Value,
}

/// `{base}/chat/completions`, keeping a query string (Azure's `?api-version=`) at the end and
/// accepting a base that already names the endpoint.
pub fn chat_completions_url(base: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let path = path.trim_end_matches('/');
    let mut url = if path.ends_with("/chat/completions") {
        path.to_owned()
    } else {
        format!("{path}/chat/completions")
    };
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The host part of a URL, for messages and for recognising OpenAI itself.
pub fn host_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn is_openai(url: &str) -> bool {
    let host = host_of(url);
    host.split(':').next() == host_of(DEFAULT_BASE_URL).split(':').next()
}

/// Reads the key from `--api-key-file` or `OPENAI_API_KEY`; `None` when neither is set.
pub fn load_api_key(args: &Args) -> anyhow::Result<Option<ApiKey>> {
    let key = match &args.api_key_file {
        Some(path) => {
            if !args.insecure_key_file {
                refuse_shared_key_file(path)?;
            }
            fs::read_to_string(path)
                .with_context(|| format!("cannot read --api-key-file {}", path.display()))?
                .trim()
                .to_owned()
        }
        None => std::env::var("OPENAI_API_KEY")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    if key.is_empty() {
        return Ok(None);
    }
    register_secret(&key);
    Ok(Some(ApiKey(key)))
}

/// Refuses a key file that other users can read or write, as ssh does with private keys.
#[cfg(unix)]
fn refuse_shared_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .with_context(|| format!("cannot read --api-key-file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(UsageError(format!(
            "--api-key-file {} is accessible by other users (mode {:o}); run chmod 600 on it, or pass --insecure-key-file",
            path.display(),
            mode & 0o777
        ))
        .into());
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_shared_key_file(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

fn parse_header(raw: &str) -> Result<(String, String), UsageError> {
    match raw.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() && !name.trim().contains(' ') => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(UsageError(format!(
            "bad --header {raw:?}: expected 'Name: value'"
        ))),
    }
}

pub fn is_secret_header(name: &str) -> bool {
    [
        "authorization",
        "api-key",
        "x-api-key",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ]
    .iter()
    .any(|secret| name.eq_ignore_ascii_case(secret))
}

/// The request body for these flags, this conversation and these tools.
pub fn body(args: &Args, messages: &[Value], tools: &[Value]) -> anyhow::Result<Value> {
    let mut body = json!({
        "model": args.model,
        "messages": messages,
        "stream": !args.no_stream,
    });
    if args.choices > 1 {
        body["n"] = json!(args.choices);
    }
    if !tools.is_empty() {
        body["tools"] = Value::from(tools.to_vec());
    }
    if let Some(choice) = &args.tool_choice {
        body["tool_choice"] = crate::toolbox::tool_choice(choice);
    }
    if args.no_parallel_tool_calls {
        body["parallel_tool_calls"] = Value::Bool(false);
    }
    if !args.no_usage && !args.no_stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(max_tokens) = args.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if let Some(temperature) = args.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(extra) = &args.extra {
        let extra: Map<String, Value> = serde_json::from_str(extra)
            .map_err(|err| UsageError(format!("--extra must be a JSON object: {err}")))?;
        if let Value::Object(fields) = &mut body {
            fields.extend(extra);
        }
    }
    Ok(body)
}

/// Builds the request, checking what can be checked before anything is sent.
pub fn build(
    args: &Args,
    messages: &[Value],
    tools: &[Value],
    api_key: Option<ApiKey>,
) -> anyhow::Result<Request> {
    if let Some(choice) = args.choice.filter(|&k| k >= args.choices) {
        return Err(UsageError(format!(
            "--choice {choice} needs -n {} or more (choices count from 0)",
            choice + 1
        ))
        .into());
    }
    let url = chat_completions_url(&args.base_url);
    // Before anything can fail, so that an error a server echoes is scrubbed too.
    for secret in url_secrets(&url) {
        register_secret(&secret);
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(UsageError(format!(
            "--base-url must start with http:// or https://, got {:?}",
            redact_url(&args.base_url)
        ))
        .into());
    }
    let headers = args
        .headers
        .iter()
        .map(|raw| parse_header(raw))
        .collect::<Result<Vec<_>, _>>()?;
    for (name, value) in &headers {
        if is_secret_header(name) {
            register_secret(value);
            if let Some(token) = value.strip_prefix("Bearer ") {
                register_secret(token);
            }
        }
    }
    let overrides_auth = headers.iter().any(|(name, _)| is_secret_header(name));
    if api_key.is_none() && !overrides_auth && !args.dry_run && is_openai(&url) {
        return Err(UsageError(
            "OPENAI_API_KEY is not set: export OPENAI_API_KEY=sk-... (or pass --api-key-file PATH, \
             or --base-url for a local server that needs no key)"
                .into(),
        )
        .into());
    }
    Ok(Request {
        url,
        headers,
        api_key,
        body: body(args, messages, tools)?,
    })
}

impl Request {
    /// The headers as sent, in order: Authorization from the key (unless overridden), then `-H`.
    pub fn header_lines(&self) -> Vec<(&str, String)> {
        let overridden = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        let mut lines = Vec::new();
        if let (Some(key), false) = (&self.api_key, overridden) {
            lines.push(("Authorization", format!("Bearer {}", key.expose())));
        }
        lines.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.clone())));
        lines
    }

    /// Replaces the conversation sent, keeping every other field (and a `stream_options` the
    /// server made us drop out).
    pub fn set_messages(&mut self, messages: &[Value]) {
        self.body["messages"] = Value::from(messages.to_vec());
    }

    /// The request line and headers as `--verbose` shows them: secrets (in the URL too) as
    /// `***`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("POST {}", redact_url(&self.url)),
            "Content-Type: application/json".to_owned(),
        ];
        for (name, value) in self.header_lines() {
            lines.push(format!("{name}: {}", shown_header_value(name, &value)));
        }
        lines
    }

    /// `--dry-run`: the body as pretty JSON on stdout (so it pipes into jq), the method, URL and
    /// headers on stderr, with secrets shown as `***`.
    pub fn print_dry_run(&self, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
        for line in self.describe() {
            writeln!(err, "{line}")?;
        }
        serde_json::to_writer_pretty(&mut *out, &self.body)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
}

/// A header's value as it may be shown: secret ones as `***` (keeping a `Bearer ` prefix), the
/// rest with any registered secret blanked.
pub fn shown_header_value(name: &str, value: &str) -> String {
    if !is_secret_header(name) {
        crate::error::scrub(value)
    } else if value.starts_with("Bearer ") {
        "Bearer ***".to_owned()
    } else {
        "***".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    #[test]
    fn tools_choice_and_parallel_flags_reach_the_body() {
        let a = args(&[
            "--tool-choice",
            "get_weather",
            "--no-parallel-tool-calls",
            "hi",
        ]);
        let tool = json!({"type":"function","function":{"name":"get_weather"}});
        let b = body(&a, &user("hi"), std::slice::from_ref(&tool)).unwrap();
        assert_eq!(b["tools"], json!([tool]));
        assert_eq!(
            b["tool_choice"],
            json!({"type":"function","function":{"name":"get_weather"}})
        );
        assert_eq!(b["parallel_tool_calls"], false);
    }

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("gptstream").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn url_joins_base_and_keeps_queries() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:11434/v1/",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
            (
                "http://h/v1/chat/completions",
                "http://h/v1/chat/completions",
            ),
            (
                "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
                "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
            ),
        ];
        for (base, url) in cases {
            assert_eq!(chat_completions_url(base), url);
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host_of("http://u:p@127.0.0.1:8080/v1?x"), "127.0.0.1:8080");
        assert!(is_openai("https://api.openai.com:443/v1/chat/completions"));
        assert!(!is_openai("http://localhost:11434/v1/chat/completions"));
    }

    #[test]
    fn body_has_stream_usage_options_and_extra_wins() {
        let a = args(&[
            "--max-tokens",
            "5",
            "--temperature",
            "0.5",
            "--extra",
            r#"{"seed":1,"temperature":0}"#,
            "hi",
        ]);
        let b = body(&a, &user("hi"), &[]).unwrap();
        assert_eq!(
            b,
            json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,
                   "stream_options":{"include_usage":true},"max_tokens":5,"temperature":0,"seed":1})
        );
        let b = body(&args(&["--no-usage", "hi"]), &user("hi"), &[]).unwrap();
        assert!(b.get("stream_options").is_none());
    }

    #[test]
    fn extra_must_be_an_object() {
        let err = body(&args(&["--extra", "[1]", "hi"]), &user("hi"), &[]).unwrap_err();
        assert!(err.is::<UsageError>());
    }

    #[test]
    fn headers_must_have_a_name_and_colon() {
        assert_eq!(
            parse_header("X-Org: acme").unwrap(),
            ("X-Org".into(), "acme".into())
        );
        assert_eq!(
            parse_header("X-Empty:").unwrap(),
            ("X-Empty".into(), "".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header(": v").is_err());
    }

    #[test]
    fn a_missing_key_is_an_error_only_for_openai() {
        let err = build(
            &args(&["--base-url", "https://api.openai.com/v1", "hi"]),
            &user("hi"),
            &[],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY"));
        assert!(
            build(
                &args(&["--base-url", "http://127.0.0.1:1/v1", "hi"]),
                &user("hi"),
                &[],
                None
            )
            .is_ok()
        );
    }

    /// Issue #12, defect 9: the URL's password and secret query values were shown verbatim.
    #[test]
    fn dry_run_and_the_scheme_error_hide_the_secrets_in_the_url() {
        let base = "http://me:url-password-1@h/v1?api-version=1&key=url-query-key-1";
        let request = build(&args(&["--base-url", base, "hi"]), &user("hi"), &[], None).unwrap();
        assert_eq!(
            request.describe()[0],
            "POST http://me:***@h/v1/chat/completions?api-version=1&key=***"
        );
        assert_eq!(
            crate::error::scrub("echo url-password-1 url-query-key-1"),
            "echo *** ***"
        );
        let ftp = base.replace("http:", "ftp:");
        let err = build(&args(&["--base-url", &ftp, "hi"]), &user("hi"), &[], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--base-url must start with http:// or https://, got \
             \"ftp://me:***@h/v1?api-version=1&key=***\""
        );
    }

    #[test]
    fn dry_run_hides_secrets() {
        let a = args(&[
            "--base-url",
            "http://h/v1",
            "-H",
            "api-key: sekrit",
            "-H",
            "X-Org: acme",
            "hi",
        ]);
        let request = build(&a, &user("hi"), &[], Some(ApiKey("sk-canary".into()))).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        request.print_dry_run(&mut out, &mut err).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err,
            "POST http://h/v1/chat/completions\nContent-Type: application/json\n\
             Authorization: Bearer ***\napi-key: ***\nX-Org: acme\n"
        );
        assert!(!String::from_utf8(out).unwrap().contains("sk-canary"));
        assert_eq!(format!("{:?}", request.api_key), "Some(ApiKey(***))");
    }
}
