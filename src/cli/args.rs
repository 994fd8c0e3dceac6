//! The command line: every flag, its environment variable and its default, in one clap derive.
//!
//! Flags are spelled out with `long = "..."` so a grep for `--max-tokens` lands here. The help
//! text carries the examples and the exit-code table, because a user at a terminal reads `--help`
//! before the README.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::transport::request::DEFAULT_BASE_URL;

/// The default model, cheap and fast; override with `-m` or `GPTSTREAM_MODEL`.
pub(crate) const DEFAULT_MODEL: &str = "gpt-4o-mini";

pub(crate) const AFTER_HELP: &str = "\
The prompt is the arguments joined by spaces. When stdin is not a terminal it is read too;
with both, the message is the arguments, a blank line, then stdin.

Examples:
  echo \"Explain SSE in one paragraph\" | gptstream
  gptstream -m gpt-4o-mini -s \"Answer tersely.\" \"What is a monad?\"
  git diff | gptstream \"Write a commit message for this diff\" > msg.txt
  gptstream --json \"hi\" | jq -j 'select(.type==\"content\") | .delta'
  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 gptstream -m llama3 \"hi\"
  gptstream --api responses -m o3-pro --reasoning-effort high \"Prove it\"
  gptstream --replay examples/hello.sse
  gptstream --chat --save chat.json            # a conversation, Ctrl-D to leave
  gptstream -p local --list-models             # a profile of ~/.config/gptstream/config.toml
  gptstream --schema 'name, email' < signature.txt | jq -r .email
  gptstream -a screenshot.png \"What is on screen?\"
  gptstream --mcp 'npx -y @modelcontextprotocol/server-filesystem .' \"Which files are here?\"

Exit codes:
  0  success (also when stdout is closed early, as by `| head`)
  1  other error (a file that cannot be read, ...)
  2  usage or input error (bad flag, no prompt, invalid UTF-8 on stdin, missing API key)
  3  API error: a non-2xx HTTP status, or an error reported inside the stream
  4  network error or timeout (DNS, refused connection, TLS, connection reset)
  5  truncated or malformed stream (ended before [DONE] with a choice unfinished, bad JSON)
  6  the model was still calling tools after --max-tool-rounds rounds
  7  the answer does not match --schema (not JSON, a mismatch, or a refusal)
  8  an --mcp server could not be started or reached, or did not initialize within --mcp-timeout
  130, 143  interrupted by Ctrl-C (SIGINT) or SIGTERM; the text so far stays on stdout";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gptstream",
    version,
    about = "Stream a chat completion from any OpenAI-compatible server into a pipe",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The prompt; joined with spaces. Read from stdin as well when stdin is not a terminal
    #[arg(value_name = "PROMPT")]
    pub(crate) prompt: Vec<String>,

    /// Model name sent to the server
    #[arg(short = 'm', long = "model", env = "GPTSTREAM_MODEL", hide_env_values = true, default_value = DEFAULT_MODEL)]
    pub(crate) model: String,

    /// System message placed before the prompt
    #[arg(short = 's', long = "system", value_name = "TEXT")]
    pub(crate) system: Option<String>,

    /// Upper bound on generated tokens (sent as max_tokens)
    #[arg(long = "max-tokens", value_name = "N")]
    pub(crate) max_tokens: Option<u32>,

    /// Sampling temperature
    #[arg(long = "temperature", value_name = "F")]
    pub(crate) temperature: Option<f64>,

    /// Which API to speak: chat (POST {base}/chat/completions) or responses (POST
    /// {base}/responses, OpenAI's newer API, needed by models such as o3-pro)
    #[arg(long = "api", value_enum, env = "GPTSTREAM_API", hide_env_values = true, default_value_t = Api::Chat, value_name = "API")]
    pub(crate) api: Api,

    /// Reasoning effort for reasoning models (e.g. minimal, low, medium, high); with --api
    /// responses, reasoning summaries are asked for too
    #[arg(long = "reasoning-effort", value_name = "LEVEL")]
    pub(crate) reasoning_effort: Option<String>,

    /// Base URL of the OpenAI-compatible API; /chat/completions (or /responses) is appended
    // The value is hidden from --help: a base URL can carry credentials (user:pass@host).
    #[arg(long = "base-url", env = "OPENAI_BASE_URL", hide_env_values = true, default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub(crate) base_url: String,

    /// Read the API key from this file instead of OPENAI_API_KEY
    #[arg(long = "api-key-file", value_name = "PATH")]
    pub(crate) api_key_file: Option<PathBuf>,

    /// Use --api-key-file even when other users can read it
    #[arg(long = "insecure-key-file", requires = "api_key_file")]
    pub(crate) insecure_key_file: bool,

    /// Extra request header, 'Name: value' (repeatable), e.g. for gateways or Azure's api-key
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub(crate) headers: Vec<String>,

    /// JSON object merged into the request body (response_format, seed, stop, ...)
    #[arg(long = "extra", value_name = "JSON")]
    pub(crate) extra: Option<String>,

    /// Attach a file (image, PDF or text, by its contents), an image URL, or stdin ('-') to the
    /// prompt (repeatable)
    #[arg(short = 'a', long = "attach", value_name = "PATH|URL|-")]
    pub(crate) attach: Vec<String>,

    /// The JSON Schema the answer must match: a file, inline JSON, or fields such as
    /// 'name, age int, tags [str], bio: a description'; a mismatch is exit 7
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub(crate) schema: Option<String>,

    /// The schema's name, as the server is told it
    #[arg(
        long = "schema-name",
        value_name = "NAME",
        default_value = "answer",
        requires = "schema"
    )]
    pub(crate) schema_name: String,

    /// Ask for the whole answer at once (stream: false), for servers whose streaming is broken
    #[arg(long = "no-stream")]
    pub(crate) no_stream: bool,

    /// Ask for N answers (choices); text mode prints them one after another, each after a header on stderr
    #[arg(short = 'n', long = "choices", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub(crate) choices: u32,

    /// In text mode, print only choice K (0-based) of -n N, as it streams
    #[arg(long = "choice", value_name = "K")]
    pub(crate) choice: Option<u32>,

    /// Show the request URL and headers, the response status and headers on stderr (secrets as ***)
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,

    /// Do not ask for token usage (leaves out stream_options, for servers that reject it)
    #[arg(long = "no-usage", overrides_with = "usage")]
    pub(crate) no_usage: bool,

    /// Ask for token usage even when the config file says no_usage (the default)
    #[arg(long = "usage", overrides_with = "no_usage")]
    pub(crate) usage: bool,

    /// Do not read stdin even when it is not a terminal
    #[arg(long = "no-stdin")]
    pub(crate) no_stdin: bool,

    /// Print the request (body on stdout, method, URL and headers on stderr) and send nothing
    #[arg(long = "dry-run")]
    pub(crate) dry_run: bool,

    /// Chat: read one message per line (a `you>` prompt on a terminal), keep the history; the
    /// default with no prompt when stdin and stdout are terminals
    #[arg(long = "chat", conflicts_with_all = ["replay", "dry_run", "tool_results"])]
    pub(crate) chat: bool,

    /// Write every event as one JSON object per line on stdout
    #[arg(long = "json")]
    pub(crate) json: bool,

    /// Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere
    #[arg(long = "reasoning", value_enum, default_value_t = ReasoningDisplay::Show, value_name = "WHEN")]
    pub(crate) reasoning: ReasoningDisplay,

    /// When to use colour (dimmed reasoning and summary on stderr): auto is on a terminal unless
    /// NO_COLOR is set
    #[arg(long = "color", value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    pub(crate) color: Color,

    /// No summary line on stderr (errors and warnings are still printed)
    #[arg(short = 'q', long = "quiet")]
    pub(crate) quiet: bool,

    /// Decode a recorded SSE body from PATH ('-' for stdin) instead of sending a request
    #[arg(long = "replay", value_name = "PATH", conflicts_with = "dry_run")]
    pub(crate) replay: Option<PathBuf>,

    /// Write each response body to PATH as received (de-chunked, decompressed, secrets as ***), as
    /// it arrives, for --replay or a bug report; a tool loop's or chat's last request wins
    #[arg(long = "record", value_name = "PATH", conflicts_with_all = ["replay", "dry_run"])]
    pub(crate) record: Option<PathBuf>,

    /// Load a conversation (a JSON array of messages, or JSON Lines); the prompt, if any, is appended
    #[arg(long = "messages", value_name = "PATH")]
    pub(crate) messages: Option<PathBuf>,

    /// Save the whole conversation, answer included, after a successful run (atomically)
    #[arg(long = "save", value_name = "PATH")]
    pub(crate) save: Option<PathBuf>,

    /// With --save: also save after a failed or interrupted answer, with the text that arrived
    #[arg(long = "save-partial", requires = "save")]
    pub(crate) save_partial: bool,

    /// Tool definitions: an OpenAI tools array, one tool, or a bare function object (repeatable)
    #[arg(long = "tools", value_name = "PATH")]
    pub(crate) tools: Vec<PathBuf>,

    /// Which tool the model may call: auto, none, required, or a tool's name
    #[arg(long = "tool-choice", value_name = "CHOICE")]
    pub(crate) tool_choice: Option<String>,

    /// Ask for at most one tool call per turn (parallel_tool_calls: false)
    #[arg(long = "no-parallel-tool-calls")]
    pub(crate) no_parallel_tool_calls: bool,

    /// Run COMMAND (with sh -c) when the model calls NAME: arguments JSON on its stdin, its stdout
    /// back to the model, then the answer continues (repeatable)
    #[arg(long = "tool-exec", value_name = "NAME=COMMAND")]
    pub(crate) tool_exec: Vec<String>,

    /// Most rounds of running tools and asking again before giving up (exit 6)
    #[arg(long = "max-tool-rounds", value_name = "N", default_value_t = 5)]
    pub(crate) max_tool_rounds: u32,

    /// Bytes of a tool's output sent back to the model; the rest is cut, and that is said
    #[arg(
        long = "max-tool-output",
        value_name = "BYTES",
        default_value_t = 65536
    )]
    pub(crate) max_tool_output: usize,

    /// Seconds a --tool-exec command (or an MCP tool call) may run before it is stopped
    #[arg(long = "tool-timeout", value_name = "SECS", default_value_t = 120.0)]
    pub(crate) tool_timeout: f64,

    /// Bring the tools of an MCP server: started with sh -c COMMAND and spoken to over stdio, or
    /// at an http(s):// URL over Streamable HTTP; NAME defaults to the server's own name
    /// (repeatable)
    #[arg(long = "mcp", value_name = "[NAME=]COMMAND|URL")]
    pub(crate) mcp: Vec<String>,

    /// Seconds an MCP server has to start, initialize and list its tools (else exit 8)
    #[arg(long = "mcp-timeout", value_name = "SECS", default_value_t = 30.0)]
    pub(crate) mcp_timeout: f64,

    /// List the tools offered (NAME, SERVER, DESCRIPTION, tab-separated; with --json one object
    /// per line) and exit, asking the model nothing
    #[arg(long = "list-tools", conflicts_with_all = ["chat", "replay", "dry_run", "list_models", "profiles"])]
    pub(crate) list_tools: bool,

    /// Answer a tool call from --messages: ID=TEXT, or ID=@FILE to read the result from a file
    /// (repeatable)
    #[arg(
        long = "tool-result",
        value_name = "ID=TEXT|@FILE",
        requires = "messages"
    )]
    pub(crate) tool_results: Vec<String>,

    /// Retries after a refused or reset connection, 408, 409, 429 or 5xx, before any output
    /// (exponential backoff with jitter, honouring Retry-After); 0 turns them off
    #[arg(long = "retries", value_name = "N", default_value_t = 2)]
    pub(crate) retries: u32,

    /// Proxy for the request (http://, socks5://...); overrides HTTPS_PROXY, HTTP_PROXY, ALL_PROXY;
    /// '' connects directly
    #[arg(long = "proxy", value_name = "URL")]
    pub(crate) proxy: Option<String>,

    /// Trust the CA certificates in this PEM file instead of the built-in roots (a TLS-intercepting proxy's CA)
    #[arg(
        long = "cacert",
        value_name = "PATH",
        env = "SSL_CERT_FILE",
        hide_env_values = true
    )]
    pub(crate) cacert: Option<PathBuf>,

    /// Seconds allowed to connect (TCP and TLS)
    #[arg(long = "connect-timeout", value_name = "SECS", default_value_t = 30.0)]
    pub(crate) connect_timeout: f64,

    /// Seconds allowed from sending the request to receiving the response headers
    #[arg(
        long = "first-byte-timeout",
        value_name = "SECS",
        default_value_t = 600.0
    )]
    pub(crate) first_byte_timeout: f64,

    /// Longest silence, in seconds, allowed between two reads of the stream
    #[arg(long = "idle-timeout", value_name = "SECS", default_value_t = 600.0)]
    pub(crate) idle_timeout: f64,

    /// Seconds allowed for the whole request, stream included (off by default)
    #[arg(long = "timeout", value_name = "SECS")]
    pub(crate) timeout: Option<f64>,

    /// Use the settings of profile NAME from the config file (see --profiles)
    #[arg(
        short = 'p',
        long = "profile",
        env = "GPTSTREAM_PROFILE",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub(crate) profile: Option<String>,

    /// List the config file's profiles (name, base URL, model, API) and exit
    #[arg(long = "profiles", conflicts_with_all = ["chat", "replay", "dry_run", "list_models"])]
    pub(crate) profiles: bool,

    /// List the server's models (GET {base}/models), one id per line, and exit
    #[arg(long = "list-models", conflicts_with_all = ["chat", "replay", "dry_run"])]
    pub(crate) list_models: bool,

    /// Print a completion script for SHELL and exit
    // Not `exclusive`: clap counts values from the environment (SSL_CERT_FILE, OPENAI_BASE_URL)
    // as arguments given, and refused the flag wherever one was set.
    #[arg(long = "completions", value_name = "SHELL")]
    pub(crate) completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit
    #[arg(long = "man", conflicts_with = "completions")]
    pub(crate) man: bool,

    /// Where each flag's value came from: the command line, its variable, or its default.
    #[arg(skip)]
    pub(crate) origins: Origins,
}

impl Args {
    /// Parses the command line, noting where each value came from (a profile beats a variable
    /// but not a flag).
    pub fn parse_from_env() -> Result<Args, clap::Error> {
        Self::parse_with_origins(std::env::args_os())
    }

    pub(crate) fn parse_with_origins<I, T>(arguments: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let arguments: Vec<T> = arguments.into_iter().collect();
        let command = Args::command()
            .color(clap_color(&arguments))
            // A variable set to nothing is not set: `GPTSTREAM_PROFILE=` is no profile, and
            // `GPTSTREAM_MODEL=` the default model, not an empty one.
            .mut_args(|arg| match arg.get_env() {
                Some(var) if std::env::var_os(var).is_some_and(|value| value.is_empty()) => {
                    arg.env(None)
                }
                _ => arg,
            });
        let matches = command.try_get_matches_from(arguments)?;
        let mut args = Args::from_arg_matches(&matches)?;
        args.origins = Origins(
            matches
                .ids()
                .filter_map(|id| Some((id.as_str().to_owned(), matches.value_source(id.as_str())?)))
                .collect(),
        );
        Ok(args)
    }
}

/// What `--color` asks of clap's own output (help, usage errors), read before clap parses;
/// `auto` leaves it to clap, which honours NO_COLOR and the terminal.
fn clap_color<T: Into<std::ffi::OsString> + Clone>(arguments: &[T]) -> clap::ColorChoice {
    let words: Vec<std::ffi::OsString> = arguments.iter().cloned().map(Into::into).collect();
    let mut choice = clap::ColorChoice::Auto;
    for (i, word) in words.iter().enumerate() {
        let value = match word.to_str() {
            Some("--") => break,
            Some("--color") => words.get(i + 1).and_then(|v| v.to_str()),
            Some(word) => word.strip_prefix("--color="),
            None => None,
        };
        choice = match value {
            Some("never") => clap::ColorChoice::Never,
            Some("always") => clap::ColorChoice::Always,
            Some("auto") => clap::ColorChoice::Auto,
            _ => continue,
        };
    }
    choice
}

/// The source of each flag that has a value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins(Vec<(String, ValueSource)>);

impl Origins {
    pub(crate) fn of(&self, id: &str) -> Option<ValueSource> {
        self.0
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, source)| *source)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Api {
    /// Chat Completions: /chat/completions
    Chat,
    /// The Responses API: /responses
    Responses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Color {
    /// On a terminal, unless NO_COLOR is set to anything but an empty string (no-color.org)
    Auto,
    /// Always, even into a pipe or with NO_COLOR
    Always,
    /// Never: no escape sequence at all
    Never,
}

impl Color {
    /// Whether escape sequences go to a stream that `is_terminal` or not.
    pub(crate) fn enabled(self, is_terminal: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReasoningDisplay {
    /// Reasoning to stderr
    Show,
    /// Reasoning dropped (still in --json)
    Hide,
}

/// The longest time limit: about 31 years, far from where a deadline would overflow.
pub(crate) const MAX_SECONDS: f64 = 1e9;

/// A time limit in seconds as a duration, if it is one: positive, finite and not absurd.
pub(crate) fn valid_seconds(secs: f64) -> Option<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero() && secs <= MAX_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    /// `--help` and `--man` name a variable, never show its value: it may be a secret or a
    /// private path.
    #[test]
    fn no_flag_shows_its_variable_s_value() {
        let command = Args::command();
        let shown: Vec<_> = command
            .get_arguments()
            .filter(|arg| arg.get_env().is_some() && !arg.is_hide_env_values_set())
            .map(|arg| arg.get_id().to_string())
            .collect();
        assert!(shown.is_empty(), "{shown:?}");
    }

    #[test]
    fn prompt_words_are_kept_in_order() {
        let args = Args::try_parse_from(["gptstream", "-m", "x", "write", "a", "haiku"]).unwrap();
        assert_eq!(args.prompt, ["write", "a", "haiku"]);
        assert_eq!(args.model, "x");
    }
}
