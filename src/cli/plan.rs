//! The plan: the flags (what the user typed) resolved, once, into what the program will do.
//!
//! Everything that can be checked before a byte is sent is checked here: the key and its file,
//! the headers (their secrets registered once per process), the request template, the tools,
//! the conversation, the time limits and the trust roots. Nothing after this looks at a flag:
//! a single run and a chat are two drivers of the same [`Settings`] (see [`crate::session::single`]
//! and [`crate::session::chat`]).

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::cli::args::{Args, MAX_SECONDS, ReasoningDisplay, valid_seconds};
use crate::cli::config::Applied;
use crate::cli::template::{schema, template};
use crate::emit::json::JsonSink;
use crate::emit::text::{TextOptions, TextSink};
use crate::error::UsageError;
use crate::event::Sink;
use crate::session::answer::Settings;
use crate::session::conversation::Conversation;
use crate::session::single::Save;
use crate::tools::mcp;
use crate::tools::toolbox::{self, Toolbox};
use crate::transport::http::{self, Transport};
use crate::transport::key::{self, KeySource};
use crate::transport::request::{self, Request};
use crate::{emit, session::prompt};

/// What to do.
pub(crate) enum Plan {
    /// `--completions SHELL`.
    Completions(clap_complete::Shell),
    /// `--man`.
    Man,
    /// `--profiles`: what the config file holds; `json`: as JSON lines.
    Profiles { config: Applied, json: bool },
    /// `--list-tools`: the tools offered, and where each comes from.
    ListTools { toolbox: Toolbox, json: bool },
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
        /// The MCP servers whose tools are in the request, one line each, secrets as `***`.
        mcp: Vec<String>,
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
            && !args.list_tools
            && !args.man
            && args.tool_results.is_empty()
            && !args.tools.iter().any(|path| path == Path::new("-"))
            && io::stdin().is_terminal()
            && io::stdout().is_terminal())
}

/// The text or JSON sink, writing to stdout and stderr.
/// `executed`: the tools gptstream runs, whose calls are not printed on stdout.
pub(crate) fn sink(args: &Args, chat: bool, executed: Vec<String>) -> Box<dyn Sink + Send> {
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
        hold_until_answer: args.schema.is_some() && !executed.is_empty(),
        clean_answer: io::stdout().is_terminal(),
    };
    Box::new(
        TextSink::new(emit::stdout(), io::LineWriter::new(io::stderr()), options)
            .with_executed_tools(executed),
    )
}

/// Whether gptstream may run tools itself: a tool loop, whose text before the last answer is
/// not the answer.
fn runs_tools(args: &Args, config: &Applied) -> bool {
    !args.tool_exec.is_empty() || !args.mcp.is_empty() || !config.mcp_enabled.is_empty()
}

/// The `--tool-exec` names.
pub(crate) fn exec_names(args: &Args) -> Vec<String> {
    args.tool_exec
        .iter()
        .filter_map(|spec| toolbox::parse_exec(spec).map(|(name, _)| name.to_owned()))
        .collect()
}

impl Plan {
    /// The MCP servers' tools in this plan, which gptstream runs.
    pub(crate) fn mcp_tool_names(&self) -> Vec<String> {
        match self {
            Plan::Run { settings, .. } | Plan::Chat { settings, .. } => {
                settings.toolbox.mcp_tool_names()
            }
            _ => Vec::new(),
        }
    }

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
        if args.list_tools {
            let stdin = if args.tools.iter().any(|path| path == Path::new("-")) {
                prompt::read_stdin_if_piped()?
            } else {
                None
            };
            return Ok(Plan::ListTools {
                toolbox: toolbox(args, &config, stdin.as_deref())?,
                json: args.json,
            });
        }
        if args.list_models {
            let api_key = key::load_api_key(&config.key)?;
            let (mut template, _) = template(args, &[], api_key, true)?;
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
        let toolbox = toolbox(args, &config, tools_stdin.as_deref())?;
        let conversation = conversation(args, prompt_stdin, attachments)?;
        let (template, schema) = template(args, &toolbox.definitions, api_key, !args.dry_run)?;
        if args.dry_run {
            let mut request = template;
            request.set_messages(&conversation.messages);
            return Ok(Plan::DryRun {
                request,
                config: config.describe(),
                mcp: toolbox.describe_mcp(),
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
            schema,
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
    let toolbox = toolbox(args, config, None)?;
    let mut conversation = match &args.messages {
        Some(path) => Conversation::load(path)?,
        None => Conversation::new(),
    };
    if let Some(system) = &args.system {
        conversation.set_system(system);
    }
    let (template, schema) = template(args, &toolbox.definitions, api_key, true)?;
    if let Some(path) = &args.save {
        Conversation::check_save_path(path)?;
    }
    Ok(Plan::Chat {
        settings: settings(args, config, template, toolbox, true)?,
        conversation,
        save: args.save.clone(),
        first: Some(args.prompt.join(" ")).filter(|p| !p.trim().is_empty()),
        schema,
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
        keep_text: chat || args.save.is_some() || runs_tools(args, config) || args.schema.is_some(),
        toolbox,
        max_tool_rounds: args.max_tool_rounds,
        retries: args.retries,
        choice: args.choice.map_or(0, u64::from),
        record: args.record.clone(),
    })
}

/// The tools from `--tools` (`-` being `tools_stdin`) and `--tool-exec`, with their limits.
/// The MCP servers (`--mcp`) are started here, before any request: one that cannot be is exit 8.
fn toolbox(args: &Args, config: &Applied, tools_stdin: Option<&str>) -> anyhow::Result<Toolbox> {
    let mut toolbox = Toolbox::load(&args.tools, tools_stdin, &args.tool_exec)?;
    toolbox.max_output = args.max_tool_output;
    toolbox.timeout = Some(seconds("--tool-timeout", args.tool_timeout)?);
    let specs = mcp_specs(args, config)?;
    if specs.is_empty() {
        return Ok(toolbox);
    }
    let timeout = seconds("--mcp-timeout", args.mcp_timeout)?;
    // A server is someone else's program: it gets none of the API key's variables.
    let mut hidden = vec!["OPENAI_API_KEY".to_owned()];
    if let KeySource::Env { var, .. } = &config.key {
        hidden.push(var.clone());
    }
    let transport = specs
        .iter()
        .any(|spec| matches!(spec.endpoint, mcp::Endpoint::Url { .. }))
        .then(|| transport(args, config))
        .transpose()?;
    let servers = mcp::Servers::start(&mcp::Start {
        specs: &specs,
        timeout,
        hidden,
        transport,
        verbose: args.verbose,
    })?;
    Ok(toolbox.with_mcp(servers)?)
}

/// The MCP servers of the run: the profile's (`mcp = [...]`), then each `--mcp`, which is a
/// `[mcp.NAME]` table when it is the name of one, else a command or a URL. A server named
/// twice is started once.
fn mcp_specs(args: &Args, config: &Applied) -> Result<Vec<mcp::Spec>, UsageError> {
    let table = |name: &str| {
        config
            .mcp_servers
            .iter()
            .find(|(server, _)| server == name)
            .map(|(server, endpoint)| mcp::Spec {
                name: Some(server.clone()),
                endpoint: endpoint.clone(),
            })
    };
    let mut specs: Vec<mcp::Spec> = config
        .mcp_enabled
        .iter()
        .filter_map(|name| table(name))
        .collect();
    for flag in &args.mcp {
        let spec = match table(flag) {
            Some(spec) => spec,
            None => mcp::Spec::parse(flag)?,
        };
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    Ok(specs)
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

fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    valid_seconds(secs).ok_or_else(|| {
        UsageError(format!(
            "{flag} must be a positive number of seconds, at most {MAX_SECONDS:e}, got {secs}"
        ))
        .into()
    })
}

/// Whether the connection will need TLS: an https:// server, or a proxy reached over https.
/// Without it, `--cacert`/`SSL_CERT_FILE` is not read: a system-wide bundle costs ~400 KiB of
/// memory to parse, half of everything gptstream allocates for a plain http:// server.
fn uses_tls(args: &Args, config: &Applied) -> bool {
    let https = |url: &str| {
        url.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    https(&args.base_url)
        || args
            .mcp
            .iter()
            .any(|spec| spec.to_ascii_lowercase().contains("https://"))
        || config
            .mcp_servers
            .iter()
            .any(|(_, endpoint)| matches!(endpoint, mcp::Endpoint::Url { url, .. } if https(url)))
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
            .filter(|_| uses_tls(args, config))
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
