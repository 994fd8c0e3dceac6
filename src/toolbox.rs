//! The user's tools: what the model may call (`--tools`), and how gptstream runs a call for the
//! user (`--tool-exec NAME=COMMAND`).
//!
//! A command is the user's own command line, run by `sh -c`; the model's output never becomes
//! part of it. The call's arguments go to the command's stdin, its stdout is the result. Output is
//! capped, and the command is killed at its timeout, so a runaway tool cannot hang the run or
//! flood the model's context; both are reported, never silent.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::error::UsageError;
use crate::tool_calls::ToolCall;

/// The tool definitions and executors from the flags.
#[derive(Debug, Default)]
pub struct Toolbox {
    /// The `tools` array for the request body.
    pub definitions: Vec<Value>,
    executors: Vec<(String, String)>,
    pub max_output: usize,
    pub timeout: Option<Duration>,
}

/// What running one call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// What goes back to the model as the `tool` message.
    pub content: String,
    /// The command's exit code; `None` when it did not run or was killed.
    pub exit_code: Option<i32>,
    /// Bytes the command wrote to stdout, whether kept or not.
    pub output_bytes: usize,
    pub truncated: bool,
    pub timed_out: bool,
}

impl ToolOutcome {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
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
pub fn parse_definitions(json: &Value) -> Result<Vec<Value>, String> {
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
    pub fn load(
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

    fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .filter_map(|d| d["function"]["name"].as_str())
    }

    /// The command that runs tool `name`, if the user gave one.
    pub fn executor(&self, name: &str) -> Option<&str> {
        self.executors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }

    /// Runs one call and reports what happened; only failing to start the shell is an error.
    pub fn run(&self, call: &ToolCall) -> anyhow::Result<ToolOutcome> {
        let Some(command) = self.executor(&call.name) else {
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
            });
        }
        run_command(command, call, self.max_output, self.timeout)
    }
}

/// Splits a `--tool-exec NAME=COMMAND`; `None` unless both parts are there.
pub fn parse_exec(spec: &str) -> Option<(&str, &str)> {
    spec.split_once('=')
        .filter(|(name, command)| !name.is_empty() && !command.is_empty())
}

/// Parses `--tool-choice`: auto, none, required, or the name of one function.
pub fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "none" | "required" => Value::from(choice),
        name => json!({"type": "function", "function": {"name": name}}),
    }
}

#[cfg(unix)]
fn shell(command: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut shell = Command::new("sh");
    // Its own process group, so a timeout can kill the tool's children too.
    shell.arg("-c").arg(command).process_group(0);
    shell
}

#[cfg(not(unix))]
fn shell(command: &str) -> Command {
    let mut shell = Command::new("cmd");
    shell.arg("/C").arg(command);
    shell
}

/// The process groups of the tools running now, so that an interruption can stop them too: they
/// run in groups of their own, out of reach of the terminal's Ctrl-C.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every tool still running (on Ctrl-C or SIGTERM).
pub fn kill_running_tools() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(PoisonError::into_inner));
    for id in running {
        kill_group(id);
    }
}

fn kill_group(id: u32) {
    if cfg!(unix) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{id}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills the tool and, on Unix, every process in its group (a `sh -c` pipeline's children would
/// otherwise keep the output pipe open).
fn kill_tree(child: &mut std::process::Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads all of `pipe`, keeping at most `cap` bytes, so the child never blocks on a full pipe.
fn read_capped(mut pipe: impl Read, cap: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) | Err(_) => return (kept, total),
            Ok(n) => {
                total += n;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

fn run_command(
    command: &str,
    call: &ToolCall,
    max_output: usize,
    timeout: Option<Duration>,
) -> anyhow::Result<ToolOutcome> {
    let mut child = shell(command)
        .env("GPTSTREAM_TOOL_NAME", &call.name)
        .env("GPTSTREAM_TOOL_CALL_ID", &call.id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start --tool-exec {}={command}", call.name))?;
    let id = child.id();
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id);
    let arguments = call.arguments.clone().into_bytes();
    let stdin = child.stdin.take();
    let feeder = thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A tool that does not read its stdin is fine: ignore the broken pipe.
            let _ = stdin.write_all(&arguments);
        }
    });
    let stdout = child
        .stdout
        .take()
        .map(|pipe| thread::spawn(move || read_capped(pipe, max_output)));
    let stderr = child
        .stderr
        .take()
        .map(|pipe| thread::spawn(move || read_capped(pipe, 4096)));

    let deadline = timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            kill_tree(&mut child);
            timed_out = true;
            break None;
        }
        thread::sleep(Duration::from_millis(2));
    };
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|&running| running != id);
    let _ = feeder.join();
    let join = |handle: Option<thread::JoinHandle<(Vec<u8>, usize)>>| {
        handle.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (kept, output_bytes) = join(stdout);
    let (errors, _) = join(stderr);
    let truncated = output_bytes > kept.len();
    let exit_code = status.and_then(|s| s.code());
    let mut content = String::from_utf8_lossy(&kept).into_owned();
    if truncated {
        content.push_str(&format!(
            "\n[output truncated by gptstream: {output_bytes} bytes, first {} kept]",
            kept.len()
        ));
    }
    if exit_code != Some(0) {
        let why = match (timed_out, timeout, exit_code) {
            (true, Some(t), _) => format!("timed out after {}s and was killed", t.as_secs_f64()),
            (_, _, Some(code)) => format!("exited with status {code}"),
            _ => "was killed by a signal".to_owned(),
        };
        content = format!(
            "error: the tool {why}\n{content}{}",
            String::from_utf8_lossy(&errors)
        );
    }
    Ok(ToolOutcome {
        content,
        exit_code,
        output_bytes,
        truncated,
        timed_out,
    })
}

impl ToolOutcome {
    /// For the `--json` stream and the stderr note.
    pub fn describe(&self) -> String {
        match (self.exit_code, self.timed_out) {
            (_, true) => "timed out".into(),
            (Some(code), _) => format!("exit {code}"),
            (None, _) => "not run".into(),
        }
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
        .run(&call("t", r#"{"x":1}"#))
        .unwrap();
        assert_eq!(outcome.content, r#"t|call_1|{"x":1}"#);
        assert!(outcome.succeeded());
    }

    #[test]
    fn output_over_the_cap_is_cut_and_reported() {
        let outcome = toolbox("head -c 100000 /dev/zero | tr '\\0' x", 10)
            .run(&call("t", "{}"))
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
            .run(&call("t", "{}"))
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
        let outcome = slow.run(&call("t", "{}")).unwrap();
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
            .run(&call("t", "{bad"))
            .unwrap();
        assert_eq!(outcome.exit_code, None);
        assert_eq!(
            outcome.content,
            "error: the arguments are not valid JSON: {bad"
        );
    }
}
