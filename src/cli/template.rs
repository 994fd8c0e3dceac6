//! The request template: the URL, headers, key and body that these flags make, in the shape of
//! the dialect they chose, before any conversation is in it.

use serde_json::{Map, Value, json};

use crate::cli::args::{Api, Args};
use crate::decode::dialect::Dialect;
use crate::emit::redact;
use crate::error::{UsageError, register_secret};
use crate::session::schema;
use crate::tools::toolbox;
use crate::transport::key::ApiKey;
use crate::transport::request::{self, Request};

/// The request for these flags and tools, without the conversation, and `--schema` (read and
/// checked after everything else here, as the body needs it). `require_key`: refuse to
/// send to OpenAI itself without a key (not for `--dry-run`, which sends nothing).
pub(super) fn template(
    args: &Args,
    tools: &[Value],
    api_key: Option<ApiKey>,
    require_key: bool,
) -> anyhow::Result<(Request, Option<Value>)> {
    if let Some(choice) = args.choice.filter(|&k| k >= args.choices) {
        return Err(UsageError(format!(
            "--choice {choice} needs -n {} or more (choices count from 0)",
            choice + 1
        ))
        .into());
    }
    let dialect = match args.api {
        Api::Chat => Dialect::Chat,
        Api::Responses => Dialect::Responses,
    };
    if dialect == Dialect::Responses && args.choices > 1 {
        return Err(UsageError(format!(
            "-n {} needs --api chat: the Responses API has no choices",
            args.choices
        ))
        .into());
    }
    let url = match dialect {
        Dialect::Chat => request::chat_completions_url(&args.base_url),
        Dialect::Responses => request::responses_url(&args.base_url),
    };
    // Before anything can fail, so that an error a server echoes is scrubbed too.
    for secret in redact::url_secrets(&url) {
        register_secret(&secret);
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(UsageError(format!(
            "--base-url must start with http:// or https://, got {:?}",
            redact::redact_url(&args.base_url)
        ))
        .into());
    }
    let headers = args
        .headers
        .iter()
        .map(|raw| request::parse_header(raw))
        .collect::<Result<Vec<_>, _>>()?;
    request::register_header_secrets(&headers);
    let overrides_auth = headers
        .iter()
        .any(|(name, _)| request::is_auth_header(name));
    if api_key.is_none() && !overrides_auth && require_key && request::is_openai(&url) {
        return Err(UsageError(
            "OPENAI_API_KEY is not set: export OPENAI_API_KEY=sk-... (or pass --api-key-file PATH, \
             or --base-url for a local server that needs no key)"
                .into(),
        )
        .into());
    }
    let schema = schema(args)?;
    let body = match dialect {
        Dialect::Chat => body(args, tools, schema.as_ref())?,
        Dialect::Responses => responses_body(args, tools, schema.as_ref())?,
    };
    let request = Request {
        dialect,
        url,
        headers,
        api_key,
        body,
        messages: Vec::new(),
    };
    Ok((request, schema))
}

/// The request body for these flags and tools; `messages` is filled in per request.
fn body(args: &Args, tools: &[Value], schema: Option<&Value>) -> anyhow::Result<Value> {
    let mut body = json!({
        "model": args.model,
        "messages": [],
        "stream": !args.no_stream,
    });
    if args.choices > 1 {
        body["n"] = json!(args.choices);
    }
    if !tools.is_empty() {
        body["tools"] = Value::from(tools.to_vec());
    }
    if let Some(choice) = &args.tool_choice {
        body["tool_choice"] = toolbox::tool_choice(choice);
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
    if let Some(effort) = &args.reasoning_effort {
        body["reasoning_effort"] = json!(effort);
    }
    if let Some(schema) = schema {
        let (field, value) = schema::request_field(schema, &args.schema_name, false);
        body[field] = value;
    }
    merge_extra(args, &mut body)?;
    Ok(body)
}

/// The Responses API's body for these flags and tools; `input` is filled in per request.
/// `store: false`, because several servers refuse stored responses and each request carries the
/// whole conversation anyway; usage always comes in the last event, so no `stream_options`.
fn responses_body(args: &Args, tools: &[Value], schema: Option<&Value>) -> anyhow::Result<Value> {
    let mut body = json!({
        "model": args.model,
        "input": [],
        "stream": !args.no_stream,
        "store": false,
    });
    if !tools.is_empty() {
        body["tools"] = tools.iter().map(flat_tool).collect();
    }
    if let Some(choice) = &args.tool_choice {
        body["tool_choice"] = match toolbox::tool_choice(choice) {
            Value::Object(named) => json!({"type": "function", "name": named["function"]["name"]}),
            mode => mode,
        };
    }
    if args.no_parallel_tool_calls {
        body["parallel_tool_calls"] = Value::Bool(false);
    }
    if let Some(max_tokens) = args.max_tokens {
        body["max_output_tokens"] = json!(max_tokens);
    }
    if let Some(temperature) = args.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(effort) = &args.reasoning_effort {
        // A summary of the reasoning, so that something streams while the model thinks; and
        // the reasoning itself, encrypted, so a tool loop can send it back without `store`.
        body["reasoning"] = json!({"effort": effort, "summary": "auto"});
        body["include"] = json!(["reasoning.encrypted_content"]);
    }
    if let Some(schema) = schema {
        let (field, value) = schema::request_field(schema, &args.schema_name, true);
        body[field] = value;
    }
    merge_extra(args, &mut body)?;
    Ok(body)
}

/// A chat `tools` entry (`{"type":"function","function":{...}}`) in the Responses API's flat
/// shape (`{"type":"function","name":...,"parameters":...}`).
fn flat_tool(tool: &Value) -> Value {
    match tool.get("function") {
        Some(Value::Object(function)) => {
            let mut flat = function.clone();
            flat.insert("type".into(), "function".into());
            Value::Object(flat)
        }
        _ => tool.clone(),
    }
}

/// `--schema`, read and checked.
pub(super) fn schema(args: &Args) -> anyhow::Result<Option<Value>> {
    if args.schema.is_some() && args.choices > 1 && args.choice.is_none() {
        // Which of the answers would be checked? Say which one with --choice.
        return Err(UsageError(format!(
            "--schema with -n {} needs --choice K: one answer is checked",
            args.choices
        ))
        .into());
    }
    Ok(args.schema.as_deref().map(schema::parse).transpose()?)
}

/// `--extra`, merged last, over anything the flags set.
fn merge_extra(args: &Args, body: &mut Value) -> anyhow::Result<()> {
    if let Some(extra) = &args.extra {
        let extra: Map<String, Value> = serde_json::from_str(extra)
            .map_err(|err| UsageError(format!("--extra must be a JSON object: {err}")))?;
        if let Value::Object(fields) = body {
            fields.extend(extra);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("gptstream").chain(argv.iter().copied())).unwrap()
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
        let b = body(&a, std::slice::from_ref(&tool), None).unwrap();
        assert_eq!(b["tools"], json!([tool]));
        assert_eq!(
            b["tool_choice"],
            json!({"type":"function","function":{"name":"get_weather"}})
        );
        assert_eq!(b["parallel_tool_calls"], false);
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
        let b = body(&a, &[], None).unwrap();
        assert_eq!(
            b,
            json!({"model":"gpt-4o-mini","messages":[],"stream":true,
                   "stream_options":{"include_usage":true},"max_tokens":5,"temperature":0,"seed":1})
        );
        let b = body(&args(&["--no-usage", "hi"]), &[], None).unwrap();
        assert!(b.get("stream_options").is_none());
    }

    #[test]
    fn extra_must_be_an_object() {
        let err = body(&args(&["--extra", "[1]", "hi"]), &[], None).unwrap_err();
        assert!(err.is::<UsageError>());
    }

    #[test]
    fn a_missing_key_is_an_error_only_for_openai() {
        let openai = args(&["--base-url", "https://api.openai.com/v1", "hi"]);
        let err = template(&openai, &[], None, true).unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY"));
        assert!(template(&openai, &[], None, false).is_ok(), "a dry run");
        let local = args(&["--base-url", "http://127.0.0.1:1/v1", "hi"]);
        assert!(template(&local, &[], None, true).is_ok());
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
        let (request, _) = template(&a, &[], None, false).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        request.print_dry_run(&mut out, &mut err).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err,
            "POST http://h/v1/chat/completions\nContent-Type: application/json\n\
             api-key: ***\nX-Org: acme\n"
        );
        assert!(!String::from_utf8(out).unwrap().contains("sekrit"));
    }

    /// Issue #12, defect 9: the URL's password and secret query values were shown verbatim.
    #[test]
    fn defect9_dry_run_and_the_scheme_error_hide_the_secrets_in_the_url() {
        let base = "http://me:url-password-1@h/v1?api-version=1&key=url-query-key-1";
        let (request, _) = template(&args(&["--base-url", base, "hi"]), &[], None, true).unwrap();
        assert_eq!(
            request.describe()[0],
            "POST http://me:***@h/v1/chat/completions?api-version=1&key=***"
        );
        assert_eq!(
            crate::error::scrub("echo url-password-1 url-query-key-1"),
            "echo *** ***"
        );
        let ftp = base.replace("http:", "ftp:");
        let err = template(&args(&["--base-url", &ftp, "hi"]), &[], None, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--base-url must start with http:// or https://, got \
             \"ftp://me:***@h/v1?api-version=1&key=***\""
        );
    }
}
