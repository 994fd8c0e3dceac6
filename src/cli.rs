//! The command line: every flag, its environment variable and its default, in one clap derive.
//!
//! Flags are spelled out with `long = "..."` so a grep for `--max-tokens` lands here. The help
//! text carries the examples and the exit-code table, because a user at a terminal reads `--help`
//! before the README.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The default server: OpenAI itself. Any OpenAI-compatible base URL works.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The default model, cheap and fast; override with `-m` or `GPTSTREAM_MODEL`.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

const AFTER_HELP: &str = "\
The prompt is the arguments joined by spaces. When stdin is not a terminal it is read too;
with both, the message is the arguments, a blank line, then stdin.

Examples:
  echo \"Explain SSE in one paragraph\" | gptstream
  gptstream -m gpt-4o-mini -s \"Answer tersely.\" \"What is a monad?\"
  git diff | gptstream \"Write a commit message for this diff\" > msg.txt
  gptstream --json \"hi\" | jq -j 'select(.type==\"content\") | .delta'
  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 gptstream -m llama3 \"hi\"
  gptstream --replay examples/hello.sse

Exit codes:
  0  success (also when stdout is closed early, as by `| head`)
  1  other error (a file that cannot be read, ...)
  2  usage or input error (bad flag, no prompt, invalid UTF-8 on stdin, missing API key)
  3  API error: a non-2xx HTTP status, or an error reported inside the stream
  4  network error or timeout (DNS, refused connection, TLS, connection reset)
  5  truncated or malformed stream (ended before [DONE] with a choice unfinished, bad JSON)";

#[derive(Debug, Parser)]
#[command(
    name = "gptstream",
    version,
    about = "Stream a chat completion from any OpenAI-compatible server into a pipe",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The prompt; joined with spaces. Read from stdin as well when stdin is not a terminal
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,

    /// Model name sent to the server
    #[arg(short = 'm', long = "model", env = "GPTSTREAM_MODEL", default_value = DEFAULT_MODEL)]
    pub model: String,

    /// System message placed before the prompt
    #[arg(short = 's', long = "system", value_name = "TEXT")]
    pub system: Option<String>,

    /// Upper bound on generated tokens (sent as max_tokens)
    #[arg(long = "max-tokens", value_name = "N")]
    pub max_tokens: Option<u32>,

    /// Sampling temperature
    #[arg(long = "temperature", value_name = "F")]
    pub temperature: Option<f64>,

    /// Base URL of the OpenAI-compatible API; /chat/completions is appended
    #[arg(long = "base-url", env = "OPENAI_BASE_URL", default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub base_url: String,

    /// Read the API key from this file instead of OPENAI_API_KEY
    #[arg(long = "api-key-file", value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// Extra request header, 'Name: value' (repeatable), e.g. for gateways or Azure's api-key
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,

    /// JSON object merged into the request body (response_format, seed, stop, ...)
    #[arg(long = "extra", value_name = "JSON")]
    pub extra: Option<String>,

    /// Do not ask for token usage (leaves out stream_options, for servers that reject it)
    #[arg(long = "no-usage")]
    pub no_usage: bool,

    /// Do not read stdin even when it is not a terminal
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,

    /// Print the request (body on stdout, method, URL and headers on stderr) and send nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Write every event as one JSON object per line on stdout
    #[arg(long = "json")]
    pub json: bool,

    /// Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere
    #[arg(long = "reasoning", value_enum, default_value_t = ReasoningDisplay::Show, value_name = "WHEN")]
    pub reasoning: ReasoningDisplay,

    /// No summary line on stderr (errors and warnings are still printed)
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// Decode a recorded SSE body from PATH ('-' for stdin) instead of sending a request
    #[arg(long = "replay", value_name = "PATH", conflicts_with = "dry_run")]
    pub replay: Option<PathBuf>,

    /// Seconds allowed to connect (TCP and TLS)
    #[arg(long = "connect-timeout", value_name = "SECS", default_value_t = 30.0)]
    pub connect_timeout: f64,

    /// Seconds allowed from sending the request to receiving the response headers
    #[arg(
        long = "first-byte-timeout",
        value_name = "SECS",
        default_value_t = 600.0
    )]
    pub first_byte_timeout: f64,

    /// Longest silence, in seconds, allowed between two reads of the stream
    #[arg(long = "idle-timeout", value_name = "SECS", default_value_t = 600.0)]
    pub idle_timeout: f64,

    /// Seconds allowed for the whole request, stream included (off by default)
    #[arg(long = "timeout", value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Print a completion script for SHELL and exit
    #[arg(long = "completions", value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReasoningDisplay {
    /// Reasoning to stderr
    Show,
    /// Reasoning dropped (still in --json)
    Hide,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn prompt_words_are_kept_in_order() {
        let args = Args::try_parse_from(["gptstream", "-m", "x", "write", "a", "haiku"]).unwrap();
        assert_eq!(args.prompt, ["write", "a", "haiku"]);
        assert_eq!(args.model, "x");
    }
}
