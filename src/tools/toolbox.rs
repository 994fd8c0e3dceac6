//! The user's tools: what the model may call (`--tools`), and which of them gptstream runs for
//! the user (`--tool-exec NAME=COMMAND`, run by [`super::exec`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::control::supervisor::Cancel;
use crate::error::UsageError;
use crate::event::{ToolCall, ToolOutcome};
use crate::tools::mcp::{McpTool, Servers};

/// The tool definitions and executors from the flags.
#[derive(Debug, Default)]
pub(crate) struct Toolbox {
    /// The `tools` array for the request body.
    pub(crate) definitions: Vec<Value>,
    executors: Vec<(String, String)>,
    /// The MCP servers (`--mcp`) and their tools, which are among `definitions` too.
    mcp: Servers,
    pub(crate) max_output: usize,
    pub(crate) timeout: Option<Duration>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Turns one file's JSON into tool definitions: an OpenAI `tools` array, one tool object, a bare
/// function object (wrapped for the user), or `{"tools": [...]}`.
pub(crate) fn parse_definitions(json: &Value) -> Result<Vec<Value>, String> {
    let items: Vec<&Value> = match json {
        Value::Array(items) => items.iter().collect(),
        Value::Object(object) => match object.get("tools") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![json],
        },
        _ => return Err("expected a tools array, a tool object or a function object".into()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let tool = match (item.get("type"), item.get("function")) {
                (Some(_), Some(_)) => item.clone(),
                _ if item.get("name").is_some() => json!({"type": "function", "function": item}),
                _ => {
                    return Err(format!(
                        "tool {}: neither a tool object nor a function with a \"name\"",
                        i + 1
                    ));
                }
            };
            match tool["function"]["name"].as_str() {
                Some(name) if valid_name(name) => Ok(tool),
                Some(name) => Err(format!(
                    "tool {}: name {name:?} must be 1-64 of a-z, A-Z, 0-9, _ or -",
                    i + 1
                )),
                None => Err(format!("tool {}: missing function name", i + 1)),
            }
        })
        .collect()
}

impl Toolbox {
    /// Loads `--tools` files (`stdin` is the text of `-`, when that was allowed) and checks the
    /// `--tool-exec` names against them.
    pub(crate) fn load(
        paths: &[PathBuf],
        stdin: Option<&str>,
        exec: &[String],
    ) -> anyhow::Result<Toolbox> {
        let mut toolbox = Toolbox::default();
        for path in paths {
            let (name, text) = if path == Path::new("-") {
                ("stdin".to_owned(), stdin.unwrap_or_default().to_owned())
            } else {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --tools {}", path.display()))?;
                (path.display().to_string(), text)
            };
            let json: Value = serde_json::from_str(&text)
                .map_err(|err| UsageError(format!("--tools {name}: invalid JSON: {err}")))?;
            let definitions = parse_definitions(&json)
                .map_err(|why| UsageError(format!("--tools {name}: {why}")))?;
            toolbox.definitions.extend(definitions);
        }
        for spec in exec {
            let Some((name, command)) = parse_exec(spec) else {
                return Err(
                    UsageError(format!("bad --tool-exec {spec:?}: expected NAME=COMMAND")).into(),
                );
            };
            if !toolbox.names().any(|defined| defined == name) {
                return Err(UsageError(format!(
                    "--tool-exec {name}: no tool of that name in --tools"
                ))
                .into());
            }
            toolbox
                .executors
                .push((name.to_owned(), command.to_owned()));
        }
        Ok(toolbox)
    }

    /// Adds the tools of the MCP servers; a name that `--tools` defines too is exit 2.
    pub(crate) fn with_mcp(mut self, servers: Servers) -> Result<Toolbox, UsageError> {
        for tool in &servers.tools {
            if self.names().any(|defined| defined == tool.name) {
                return Err(UsageError(format!(
                    "MCP server {} and --tools both define a tool named {}",
                    crate::error::scrub(&tool.server),
                    crate::error::scrub(&tool.name)
                )));
            }
        }
        self.definitions
            .extend(servers.tools.iter().map(McpTool::definition));
        self.mcp = servers;
        Ok(self)
    }

    /// Whether gptstream runs tool `name` (with `--tool-exec` or on an MCP server).
    pub(crate) fn runs(&self, name: &str) -> bool {
        self.executor(name).is_some() || self.mcp.server_of(name).is_some()
    }

    /// The names of the MCP servers' tools.
    /// `--dry-run`: each MCP server, as [`Servers::describe`] shows it.
    pub(crate) fn describe_mcp(&self) -> Vec<String> {
        self.mcp.describe()
    }

    pub(crate) fn mcp_tool_names(&self) -> Vec<String> {
        self.mcp
            .tools
            .iter()
            .map(|tool| tool.name.clone())
            .collect()
    }

    /// `--list-tools`: `NAME<TAB>SERVER<TAB>DESCRIPTION` per tool (no server for `--tools`),
    /// or with `json` one object per line with the parameters too.
    pub(crate) fn print_listing(&self, json: bool) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (name, server, description, parameters) in self.listing() {
            if json {
                let line = json!({"name": name, "server": server, "description": description,
                                  "parameters": parameters});
                writeln!(out, "{line}")?;
            } else {
                // One line per tool, whatever the server wrote: no tab, newline or escape.
                let cell = |text: &str| {
                    crate::emit::terminal::visible(&crate::error::scrub(text))
                        .replace(['\t', '\n', '\r'], " ")
                };
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    cell(name),
                    cell(server.unwrap_or("")),
                    cell(description.trim())
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Every tool offered, for `--list-tools`: name, the MCP server (none for `--tools`),
    /// description and parameters.
    pub(crate) fn listing(&self) -> Vec<(&str, Option<&str>, &str, &Value)> {
        static NONE: Value = Value::Null;
        self.definitions
            .iter()
            .map(|d| {
                let function = &d["function"];
                let name = function["name"].as_str().unwrap_or("");
                (
                    name,
                    self.mcp.server_of(name),
                    function["description"].as_str().unwrap_or(""),
                    function.get("parameters").unwrap_or(&NONE),
                )
            })
            .collect()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .filter_map(|d| d["function"]["name"].as_str())
    }

    /// The command that runs tool `name`, if the user gave one.
    pub(crate) fn executor(&self, name: &str) -> Option<&str> {
        self.executors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }

    /// Runs one call and reports what happened; only failing to start the shell (or, on Unix, to
    /// poll its pipes) is an error.
    /// A tool that starts after `cancel` was set is killed as soon as it is listed (see
    /// [`crate::control::children::kill_running_tools`]), so a stop can never miss a tool that was being started.
    pub(crate) fn run(&self, call: &ToolCall, cancel: &Cancel) -> anyhow::Result<ToolOutcome> {
        let Some(command) = self.executor(&call.name) else {
            if self.mcp.server_of(&call.name).is_some() {
                return self.mcp.call(call, self.max_output, self.timeout, cancel);
            }
            anyhow::bail!("no --tool-exec for {}", call.name);
        };
        if call.parsed_arguments().is_none() {
            // The model can correct itself if told; running the tool on garbage helps no one.
            return Ok(ToolOutcome {
                content: format!(
                    "error: the arguments are not valid JSON: {}",
                    call.arguments
                ),
                exit_code: None,
                output_bytes: 0,
                truncated: false,
                timed_out: false,
                server: None,
                is_error: None,
            });
        }
        super::exec::run_command(command, call, self.max_output, self.timeout, cancel)
    }
}

/// Splits a `--tool-exec NAME=COMMAND`; `None` unless both parts are there.
pub(crate) fn parse_exec(spec: &str) -> Option<(&str, &str)> {
    spec.split_once('=')
        .filter(|(name, command)| !name.is_empty() && !command.is_empty())
}

/// Parses `--tool-choice`: auto, none, required, or the name of one function.
pub(crate) fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "none" | "required" => Value::from(choice),
        name => json!({"type": "function", "function": {"name": name}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall::new("call_1", name, arguments)
    }

    fn toolbox(command: &str, max_output: usize) -> Toolbox {
        Toolbox {
            definitions: vec![json!({"type":"function","function":{"name":"t"}})],
            executors: vec![("t".into(), command.into())],
            mcp: Servers::default(),
            max_output,
            timeout: Some(Duration::from_secs(10)),
        }
    }

    #[test]
    fn every_accepted_file_shape() {
        let function = json!({"name":"get_weather","parameters":{"type":"object"}});
        let tool = json!({"type":"function","function":function});
        for shape in [
            json!([tool]),
            tool.clone(),
            function.clone(),
            json!({"tools":[tool]}),
        ] {
            assert_eq!(
                parse_definitions(&shape).unwrap(),
                vec![tool.clone()],
                "{shape}"
            );
        }
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        assert!(
            parse_definitions(&json!([{"description":"x"}]))
                .unwrap_err()
                .contains("tool 1")
        );
        assert!(
            parse_definitions(&json!({"name":"has space"}))
                .unwrap_err()
                .contains("must be 1-64")
        );
        assert!(parse_definitions(&json!(3)).is_err());
    }

    #[test]
    fn tool_choice_values() {
        assert_eq!(tool_choice("required"), json!("required"));
        assert_eq!(
            tool_choice("f"),
            json!({"type":"function","function":{"name":"f"}})
        );
    }

    #[test]
    fn the_command_gets_arguments_on_stdin_and_names_in_env() {
        let outcome = toolbox(
            "printf '%s|%s|' \"$GPTSTREAM_TOOL_NAME\" \"$GPTSTREAM_TOOL_CALL_ID\"; cat",
            1000,
        )
        .run(&call("t", r#"{"x":1}"#), &Cancel::default())
        .unwrap();
        assert_eq!(outcome.content, r#"t|call_1|{"x":1}"#);
        assert!(outcome.succeeded());
    }

    #[test]
    fn output_over_the_cap_is_cut_and_reported() {
        let outcome = toolbox("head -c 100000 /dev/zero | tr '\\0' x", 10)
            .run(&call("t", "{}"), &Cancel::default())
            .unwrap();
        assert!(outcome.truncated);
        assert_eq!(outcome.output_bytes, 100000);
        assert_eq!(
            outcome.content,
            "xxxxxxxxxx\n[output truncated by gptstream: 100000 bytes, first 10 kept]"
        );
    }

    #[test]
    fn a_failing_command_is_an_error_result_for_the_model() {
        let outcome = toolbox("echo partial; echo oops >&2; exit 3", 1000)
            .run(&call("t", "{}"), &Cancel::default())
            .unwrap();
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(
            outcome.content,
            "error: the tool exited with status 3\npartial\noops\n"
        );
    }

    #[test]
    fn a_hung_command_is_killed_at_the_timeout() {
        let mut slow = toolbox("sleep 30", 1000);
        slow.timeout = Some(Duration::from_millis(100));
        let outcome = slow.run(&call("t", "{}"), &Cancel::default()).unwrap();
        assert!(outcome.timed_out);
        assert!(
            outcome
                .content
                .starts_with("error: the tool timed out after 0.1s"),
            "{}",
            outcome.content
        );
    }

    #[test]
    fn invalid_arguments_are_not_run() {
        let outcome = toolbox("touch /should-not-exist", 1000)
            .run(&call("t", "{bad"), &Cancel::default())
            .unwrap();
        assert_eq!(outcome.exit_code, None);
        assert_eq!(
            outcome.content,
            "error: the arguments are not valid JSON: {bad"
        );
    }
}
