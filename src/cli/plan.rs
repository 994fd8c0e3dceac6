//! The plan: the flags (what the user typed) resolved, once, into what the program will do.
//!
//! Everything that can be checked before a byte is sent is checked here: the key and its file,
//! the headers (their secrets registered once per process), the request template, the tools,
//! the conversation, the time limits and the trust roots. Nothing after this looks at a flag:
//! a single run and a chat are two drivers of the same [`Settings`] (see [`crate::run`] and
//! [`crate::session::chat`]).

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::cli::args::{Api, Args, ReasoningDisplay};
use crate::cli::config::Applied;
use crate::decode::dialect::Dialect;
use crate::emit::json::JsonSink;
use crate::emit::text::{TextOptions, TextSink};
use crate::error::{UsageError, register_secret};
use crate::event::Sink;
use crate::session::answer::Settings;
use crate::session::conversation::Conversation;
use crate::session::single::Save;
use crate::tools::toolbox::{self, Toolbox};
use crate::transport::http::{self, Transport};
use crate::transport::key::{self, ApiKey};
use crate::transport::request::{self, Request};
use crate::{emit, emit::redact, session::prompt, session::schema};

/// What to do.
pub(crate) enum Plan {
    /// `--completions SHELL`.
    Completions(clap_complete::Shell),
    /// `--man`.
    Man,
    /// `--profiles`: what the config file holds; `json`: as JSON lines.
    Profiles { config: Applied, json: bool },
    /// `--list-models`: `GET {base}/models` with the key, headers, retries and timeouts of a
    /// completion request (the template's URL is the models URL).
    ListModels { settings: Settings, json: bool },
    /// `--replay PATH`: decode a recorded body (and check it against `--schema`).
    Replay {
        path: PathBuf,
        schema: Option<Value>,
        choice: u64,
    },
    /// `--dry-run`: show the request (and the config file and profile used), send nothing.
    DryRun {
        request: Request,
        config: Option<String>,
    },
    /// One answer (with its tool loop) to one conversation.
    Run {
        settings: Settings,
        conversation: Conversation,
        save: Save,
        /// `--schema`: the answer is checked against it.
        schema: Option<Value>,
    },
    /// A conversation, one user message per line of stdin.
    Chat {
        settings: Settings,
        conversation: Conversation,
        save: Option<PathBuf>,
        /// The prompt from the arguments, sent as the first message.
        first: Option<String>,
        /// `--schema`: each answer is checked against it.
        schema: Option<Value>,
        /// `-a`: sent with the first message.
        attachments: Vec<Value>,
    },
}

/// Plain `gptstream` at a terminal, with nothing to send yet, is a chat.
pub(crate) fn is_chat(args: &Args) -> bool {
    args.chat
        || (args.prompt.is_empty()
            && args.replay.is_none()
            && !args.dry_run
            && args.completions.is_none()
            && !args.profiles
            && !args.list_models
            && !args.man
            && args.tool_results.is_empty()
            && !args.tools.iter().any(|path| path == Path::new("-"))
            && io::stdin().is_terminal()
            && io::stdout().is_terminal())
}

/// The text or JSON sink, writing to stdout and stderr.
pub(crate) fn sink(args: &Args, chat: bool) -> Box<dyn Sink + Send> {
    if args.json {
        return Box::new(JsonSink::new(emit::stdout()));
    }
    let options = TextOptions {
        show_reasoning: args.reasoning == ReasoningDisplay::Show,
        quiet: args.quiet,
        end_with_newline: chat || io::stdout().is_terminal(),
        dim: args.color.enabled(io::stderr().is_terminal()),
        choice: args.choice.map_or(0, u64::from),
        all_choices: args.choices > 1 && args.choice.is_none(),
        hold_until_answer: args.schema.is_some() && !args.tool_exec.is_empty(),
        clean_answer: io::stdout().is_terminal(),
    };
    let executed = args
        .tool_exec
        .iter()
        .filter_map(|spec| toolbox::parse_exec(spec).map(|(name, _)| name.to_owned()))
        .collect();
    Box::new(
        TextSink::new(emit::stdout(), io::LineWriter::new(io::stderr()), options)
            .with_executed_tools(executed),
    )
}

impl Plan {
    /// Resolves the flags; `chat` is [`is_chat`]'s answer.
    pub(crate) fn resolve(args: &Args, config: Applied, chat: bool) -> anyhow::Result<Plan> {
        if let Some(shell) = args.completions {
            return Ok(Plan::Completions(shell));
        }
        if args.man {
            return Ok(Plan::Man);
        }
        if args.profiles {
            return Ok(Plan::Profiles {
                config,
                json: args.json,
            });
        }
        if args.list_models {
            let api_key = key::load_api_key(&config.key)?;
            let mut template = template(args, &[], api_key, true)?;
            template.url = request::models_url(&args.base_url);
            let settings = settings(args, &config, template, Toolbox::default(), false)?;
            return Ok(Plan::ListModels {
                settings,
                json: args.json,
            });
        }
        if let Some(path) = &args.replay {
            if !args.attach.is_empty() {
                return Err(
                    UsageError("-a cannot be used with --replay: nothing is sent".into()).into(),
                );
            }
            return Ok(Plan::Replay {
                path: path.clone(),
                schema: schema(args)?,
                choice: args.choice.map_or(0, u64::from),
            });
        }
        if chat {
            return resolve_chat(args, &config);
        }
        let api_key = key::load_api_key(&config.key)?;
        let tools_from_stdin = args.tools.iter().any(|path| path == Path::new("-"));
        let attach_from_stdin = args.attach.iter().any(|spec| spec == "-");
        if tools_from_stdin && attach_from_stdin {
            return Err(UsageError("--tools - and -a - cannot both read stdin".into()).into());
        }
        // `-a -` claims stdin's bytes, whatever they are; the prompt is then the arguments.
        let attach_stdin: Option<Box<dyn Read>> =
            (attach_from_stdin && !io::stdin().is_terminal()).then(|| Box::new(io::stdin()) as _);
        let stdin = if (args.no_stdin && !tools_from_stdin) || attach_from_stdin {
            None
        } else {
            prompt::read_stdin_if_piped()?
        };
        // `--tools -` claims stdin; the prompt must then come from the arguments.
        let (prompt_stdin, tools_stdin) = if tools_from_stdin {
            (None, stdin)
        } else {
            (stdin, None)
        };
        let attachments = attachments(args, attach_stdin)?;
        let toolbox = toolbox(args, tools_stdin.as_deref())?;
        let conversation = conversation(args, prompt_stdin, attachments)?;
        let template = template(args, &toolbox.definitions, api_key, !args.dry_run)?;
        if args.dry_run {
            let mut request = template;
            request.set_messages(&conversation.messages);
            return Ok(Plan::DryRun {
                request,
                config: config.describe(),
            });
        }
        if let Some(path) = &args.save {
            Conversation::check_save_path(path)?;
        }
        Ok(Plan::Run {
            settings: settings(args, &config, template, toolbox, false)?,
            conversation,
            save: Save {
                path: args.save.clone(),
                partial: args.save_partial,
            },
            schema: schema(args)?,
        })
    }
}

fn resolve_chat(args: &Args, config: &Applied) -> anyhow::Result<Plan> {
    if args.tools.iter().any(|path| path == Path::new("-")) {
        return Err(
            UsageError("--tools - cannot be used with --chat: stdin is the chat".into()).into(),
        );
    }
    if args.attach.iter().any(|spec| spec == "-") {
        return Err(UsageError("-a - cannot be used with --chat: stdin is the chat".into()).into());
    }
    let api_key = key::load_api_key(&config.key)?;
    let toolbox = toolbox(args, None)?;
    let mut conversation = match &args.messages {
        Some(path) => Conversation::load(path)?,
        None => Conversation::new(),
    };
    if let Some(system) = &args.system {
        conversation.set_system(system);
    }
    let template = template(args, &toolbox.definitions, api_key, true)?;
    if let Some(path) = &args.save {
        Conversation::check_save_path(path)?;
    }
    Ok(Plan::Chat {
        settings: settings(args, config, template, toolbox, true)?,
        conversation,
        save: args.save.clone(),
        first: Some(args.prompt.join(" ")).filter(|p| !p.trim().is_empty()),
        schema: schema(args)?,
        attachments: attachments(args, None)?,
    })
}

fn settings(
    args: &Args,
    config: &Applied,
    template: Request,
    toolbox: Toolbox,
    chat: bool,
) -> anyhow::Result<Settings> {
    Ok(Settings {
        transport: transport(args, config)?,
        template,
        keep_text: chat
            || args.save.is_some()
            || !args.tool_exec.is_empty()
            || args.schema.is_some(),
        toolbox,
        max_tool_rounds: args.max_tool_rounds,
        retries: args.retries,
        choice: args.choice.map_or(0, u64::from),
        record: args.record.clone(),
    })
}

/// The tools from `--tools` (`-` being `tools_stdin`) and `--tool-exec`, with their limits.
fn toolbox(args: &Args, tools_stdin: Option<&str>) -> anyhow::Result<Toolbox> {
    let mut toolbox = Toolbox::load(&args.tools, tools_stdin, &args.tool_exec)?;
    toolbox.max_output = args.max_tool_output;
    toolbox.timeout = Some(seconds("--tool-timeout", args.tool_timeout)?);
    Ok(toolbox)
}

/// The `-a` attachments as content parts, in order (`-` being `stdin`'s bytes).
fn attachments(args: &Args, mut stdin: Option<Box<dyn Read>>) -> anyhow::Result<Vec<Value>> {
    Ok(args
        .attach
        .iter()
        .map(|spec| crate::session::attach::load(spec, &mut stdin))
        .collect::<Result<_, _>>()?)
}

/// The messages to send: `--messages`, then `-s`, then `--tool-result`s, then the prompt (with
/// its attachments).
fn conversation(
    args: &Args,
    stdin: Option<String>,
    attachments: Vec<Value>,
) -> anyhow::Result<Conversation> {
    let mut conversation = match &args.messages {
        Some(path) => Conversation::load(path)?,
        None => Conversation::new(),
    };
    let continuing = !conversation.messages.is_empty();
    if let Some(system) = &args.system {
        conversation.set_system(system);
    }
    for spec in &args.tool_results {
        let (id, text) = tool_result(spec)?;
        if !conversation.pending_tool_call_ids().contains(&id) {
            return Err(UsageError(format!(
                "--tool-result {id}: the last assistant message in --messages has no tool call with that id"
            ))
            .into());
        }
        conversation.push_tool_result(id, &text);
    }
    match prompt::user_message(&args.prompt, stdin) {
        Ok(text) => conversation.push_user_with(text, attachments),
        // Continuing a conversation needs no new prompt (e.g. after tool results).
        // Attachments with no words still make a user message of their own.
        Err(_) if continuing && !attachments.is_empty() => {
            conversation.push_user_with(String::new(), attachments);
        }
        Err(_) if continuing => {}
        Err(err) => return Err(err.into()),
    }
    Ok(conversation)
}

/// Parses `--tool-result ID=TEXT` or `ID=@FILE`.
fn tool_result(spec: &str) -> anyhow::Result<(&str, String)> {
    let Some((id, value)) = spec.split_once('=').filter(|(id, _)| !id.is_empty()) else {
        return Err(UsageError(format!(
            "bad --tool-result {spec:?}: expected ID=TEXT or ID=@FILE"
        ))
        .into());
    };
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --tool-result file {path}"))?,
        None => value.to_owned(),
    };
    Ok((id, text))
}

/// The request for these flags and tools, without the conversation. `require_key`: refuse to
/// send to OpenAI itself without a key (not for `--dry-run`, which sends nothing).
fn template(
    args: &Args,
    tools: &[Value],
    api_key: Option<ApiKey>,
    require_key: bool,
) -> anyhow::Result<Request> {
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
        .any(|(name, _)| request::is_secret_header(name));
    if api_key.is_none() && !overrides_auth && require_key && request::is_openai(&url) {
        return Err(UsageError(
            "OPENAI_API_KEY is not set: export OPENAI_API_KEY=sk-... (or pass --api-key-file PATH, \
             or --base-url for a local server that needs no key)"
                .into(),
        )
        .into());
    }
    let body = match dialect {
        Dialect::Chat => body(args, tools)?,
        Dialect::Responses => responses_body(args, tools)?,
    };
    Ok(Request {
        dialect,
        url,
        headers,
        api_key,
        body,
        messages: Vec::new(),
    })
}

/// The request body for these flags and tools; `messages` is filled in per request.
fn body(args: &Args, tools: &[Value]) -> anyhow::Result<Value> {
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
    if let Some(schema) = schema(args)? {
        let (field, value) = schema::request_field(&schema, &args.schema_name, false);
        body[field] = value;
    }
    merge_extra(args, &mut body)?;
    Ok(body)
}

/// The Responses API's body for these flags and tools; `input` is filled in per request.
/// `store: false`, because several servers refuse stored responses and each request carries the
/// whole conversation anyway; usage always comes in the last event, so no `stream_options`.
fn responses_body(args: &Args, tools: &[Value]) -> anyhow::Result<Value> {
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
    if let Some(schema) = schema(args)? {
        let (field, value) = schema::request_field(&schema, &args.schema_name, true);
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
fn schema(args: &Args) -> anyhow::Result<Option<Value>> {
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

fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    valid_seconds(secs).ok_or_else(|| {
        UsageError(format!(
            "{flag} must be a positive number of seconds, at most {MAX_SECONDS:e}, got {secs}"
        ))
        .into()
    })
}

/// The longest time limit: about 31 years, far from where a deadline would overflow.
pub(crate) const MAX_SECONDS: f64 = 1e9;

/// A time limit in seconds as a duration, if it is one: positive, finite and not absurd.
pub(crate) fn valid_seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero() && secs <= MAX_SECONDS)
}

/// Whether the connection will need TLS: an https:// server, or a proxy reached over https.
/// Without it, `--cacert`/`SSL_CERT_FILE` is not read: a system-wide bundle costs ~400 KiB of
/// memory to parse, half of everything gptstream allocates for a plain http:// server.
fn uses_tls(args: &Args) -> bool {
    let https = |url: &str| {
        url.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    https(&args.base_url)
        || crate::transport::proxy::setting(args.proxy.as_deref())
            .is_some_and(|proxy| https(&proxy))
}

fn transport(args: &Args, config: &Applied) -> anyhow::Result<Transport> {
    Ok(Transport {
        connect: seconds("--connect-timeout", args.connect_timeout)?,
        first_byte: seconds("--first-byte-timeout", args.first_byte_timeout)?,
        idle: seconds("--idle-timeout", args.idle_timeout)?,
        total: args.timeout.map(|t| seconds("--timeout", t)).transpose()?,
        proxy: crate::transport::proxy::resolve(args.proxy.as_deref(), config.proxy_origin)?,
        roots: args
            .cacert
            .as_deref()
            .filter(|_| uses_tls(args))
            .map(http::load_roots)
            .transpose()?,
        verbose: args.verbose,
    })
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
        let b = body(&a, std::slice::from_ref(&tool)).unwrap();
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
        let b = body(&a, &[]).unwrap();
        assert_eq!(
            b,
            json!({"model":"gpt-4o-mini","messages":[],"stream":true,
                   "stream_options":{"include_usage":true},"max_tokens":5,"temperature":0,"seed":1})
        );
        let b = body(&args(&["--no-usage", "hi"]), &[]).unwrap();
        assert!(b.get("stream_options").is_none());
    }

    #[test]
    fn extra_must_be_an_object() {
        let err = body(&args(&["--extra", "[1]", "hi"]), &[]).unwrap_err();
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
        let request = template(&a, &[], None, false).unwrap();
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
        let request = template(&args(&["--base-url", base, "hi"]), &[], None, true).unwrap();
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

    #[test]
    fn time_limits_must_be_positive() {
        for bad in ["0", "-1", "NaN", "inf"] {
            let a = args(&[&format!("--connect-timeout={bad}"), "hi"]);
            assert!(
                transport(&a, &Applied::default())
                    .unwrap_err()
                    .is::<UsageError>(),
                "{bad}"
            );
        }
    }
}
