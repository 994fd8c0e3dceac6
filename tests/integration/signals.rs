//! Ctrl-C and SIGTERM sent to a real child process in the middle of a stream: what arrived stays
//! on stdout, the summary says `interrupted`, the exit code says which signal, and a transcript
//! is saved half-done only when asked.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::server::{self, Server};
use crate::util::{Output, Scratch, drain, finish, gptstream, wait_for};

pub fn send(child: &Child, signal: &str) {
    send_to(child.id(), signal);
}

/// Sends `signal` (`INT`, `TERM`) to process `pid` with the `kill` command.
pub fn send_to(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Starts a stream that says `Hel` and stalls, waits for `Hel` on stdout, sends `signal`.
fn interrupt_after_hel(signal: &str, args: &[&str]) -> Output {
    let (_release, steps) = server::stalls_after("Hel");
    let server = Server::one(steps);
    let mut child = gptstream().server(&server).args(args).spawn();
    let stdout = drain(child.stdout.take().expect("stdout"));
    let so_far = wait_for(&stdout, "Hel");
    send(&child, signal);
    let mut out = finish(child);
    out.stdout = [so_far.into_bytes(), stdout.iter().flatten().collect()].concat();
    out
}

#[test]
fn ctrl_c_keeps_the_text_says_interrupted_and_exits_130() {
    let out = interrupt_after_hel("INT", &["hi"]);
    assert_eq!(
        out.render(),
        "status: 130\n--- stdout\nHel\n--- stderr\ninterrupted signal=SIGINT usage=none\n"
    );
}

#[test]
fn sigterm_in_json_mode_ends_with_an_interrupted_error_event() {
    let out = interrupt_after_hel("TERM", &["--json", "hi"]);
    assert_eq!(out.code, 143, "{}", out.render());
    let lines = out.json_lines();
    assert_eq!(
        lines.last().expect("a last line"),
        &serde_json::json!({"type":"error","message":"interrupted","status":null,"code":null,"signal":"SIGTERM"})
    );
    assert_eq!(lines[lines.len() - 2]["delta"], "Hel", "{}", out.render());
    assert_eq!(out.stderr, "");
}

#[test]
fn an_interrupted_answer_leaves_the_transcript_alone_unless_save_partial() {
    let scratch = Scratch::new("signal-save");
    let before = r#"[{"role":"user","content":"first"},{"role":"assistant","content":"one"}]"#;
    let chat = scratch.file("chat.json", before);
    let out = interrupt_after_hel("INT", &["--messages", &chat, "--save", &chat, "next"]);
    assert_eq!(out.code, 130, "{}", out.render());
    assert_eq!(std::fs::read_to_string(&chat).unwrap(), before);

    let out = interrupt_after_hel(
        "INT",
        &[
            "--messages",
            &chat,
            "--save",
            &chat,
            "--save-partial",
            "next",
        ],
    );
    assert_eq!(out.code, 130, "{}", out.render());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).unwrap();
    assert_eq!(
        saved,
        serde_json::json!([
            {"role":"user","content":"first"},
            {"role":"assistant","content":"one"},
            {"role":"user","content":"next"},
            {"role":"assistant","content":"Hel\n[answer incomplete: interrupted by SIGINT]"}
        ])
    );
}

#[test]
fn save_partial_also_keeps_an_answer_cut_by_a_network_error() {
    let scratch = Scratch::new("partial-error");
    let chat = scratch.path("chat.jsonl");
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        server::Step::Chunk(server::content("Hel").into_bytes()),
        server::Step::Close,
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--save", &chat, "--save-partial", "hi"])
        .run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.stdout(), "Hel");
    let saved = std::fs::read_to_string(&chat).unwrap();
    let lines: Vec<serde_json::Value> = saved
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{saved}");
    assert_eq!(lines[0], serde_json::json!({"role":"user","content":"hi"}));
    let answer = lines[1]["content"].as_str().unwrap();
    assert!(
        answer.starts_with("Hel\n[answer incomplete: ") && answer.ends_with(']'),
        "{answer}"
    );
}

/// Waits for the tool to write `path` (atomically, by `mv`) and returns what it wrote.
fn read_when_written(path: &str) -> String {
    let deadline = Instant::now() + server::PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the tool never wrote {path}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The state letter of process `pid` in `/proc/PID/stat` (`R`, `S`, `Z`...), `None` once it
/// is gone.
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the state follows the last `)`.
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits until process `pid` is gone or a zombie. SIGKILL takes effect when the kernel next
/// schedules the process, which on a loaded machine can be after gptstream has exited.
fn wait_until_dead(pid: &str, what: &str) {
    let deadline = Instant::now() + server::PATIENCE;
    loop {
        match process_state(pid) {
            None | Some('Z') => return,
            Some(state) => assert!(Instant::now() < deadline, "{what} still runs: {state}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server whose answer is one call to the tool `wait`, and the `--tools` file defining it.
fn calls_wait(scratch: &Scratch) -> (Server, String) {
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"wait","parameters":{"type":"object"}}"#,
    );
    let call = server::delta(
        serde_json::json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"wait","arguments":"{}"}}]}),
        None,
    );
    (
        Server::one(server::sse(&[call, server::finish("tool_calls")])),
        tools,
    )
}

#[test]
fn ctrl_c_during_a_tool_run_stops_the_tool_too() {
    let scratch = Scratch::new("signal-tool");
    let pid_file = scratch.path("tool.pid");
    let (server, tools) = calls_wait(&scratch);
    let exec =
        format!("wait=echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 60");
    let child = gptstream()
        .server(&server)
        .args(["--tools", &tools, "--tool-exec", &exec, "hi"])
        .spawn();
    let tool_pid = read_when_written(&pid_file);
    send(&child, "INT");
    let out = finish(child);
    assert_eq!(out.code, 130, "{}", out.render());
    // Killed and reaped by init, or at least a zombie.
    wait_until_dead(&tool_pid, "the tool");
}

#[test]
fn defect7_ctrl_c_stops_a_tool_whose_shell_exited_but_whose_child_holds_the_output() {
    let scratch = Scratch::new("signal-tool-background");
    let (shell_file, child_file) = (scratch.path("sh.pid"), scratch.path("child.pid"));
    let (server, tools) = calls_wait(&scratch);
    let exec = format!(
        "wait=echo $$ > {shell_file}; \
         (sleep 300 & echo $! > {child_file}.tmp && mv {child_file}.tmp {child_file}); echo hi"
    );
    let child = gptstream()
        .server(&server)
        .args(["--tools", &tools, "--tool-exec", &exec, "hi"])
        .spawn();
    let background = read_when_written(&child_file);
    let shell = read_when_written(&shell_file);
    // Interrupt only once sh has exited, when nothing but the output pipe keeps the tool running.
    wait_until_dead(&shell, "the tool's sh");
    send(&child, "INT");
    let out = finish(child);
    assert_eq!(out.code, 130, "{}", out.render());
    wait_until_dead(&background, "the tool's background child");
}

#[test]
fn defect3_save_partial_with_ctrl_c_mid_stream_saves_once_with_the_text_exactly_once() {
    let scratch = Scratch::new("signal-busy");
    let chat = scratch.path("chat.json");
    // A server that keeps talking: a delta every few milliseconds for far longer than the test.
    let mut steps = vec![server::chunked_head(200, "text/event-stream")];
    for i in 0..2000 {
        steps.push(server::Step::Chunk(
            server::content(&format!("w{i} ")).into_bytes(),
        ));
        steps.push(server::Step::Sleep(std::time::Duration::from_millis(2)));
    }
    let server = Server::one(steps);
    let mut child = gptstream()
        .server(&server)
        .args(["--save", &chat, "--save-partial", "go"])
        .spawn();
    let stdout = drain(child.stdout.take().expect("stdout"));
    let so_far = wait_for(&stdout, "w20 ");
    send(&child, "INT");
    let out = finish(child);
    let printed = so_far + &String::from_utf8(stdout.iter().flatten().collect()).unwrap();
    assert_eq!(out.code, 130, "{}", out.render());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).expect("valid JSON");
    assert_eq!(
        saved,
        serde_json::json!([
            {"role":"user","content":"go"},
            {"role":"assistant","content":format!("{printed}\n[answer incomplete: interrupted by SIGINT]")}
        ])
    );
    let names: Vec<String> = std::fs::read_dir(scratch.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["chat.json"], "no temporary file is left");
}

/// A tool definition for the tool-loop tests below.
fn wait_tool(scratch: &Scratch) -> String {
    scratch.file(
        "tools.json",
        r#"{"name":"look","parameters":{"type":"object"}}"#,
    )
}

fn look_call(text: &str) -> Vec<String> {
    vec![
        server::content(text),
        server::delta(
            serde_json::json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"look","arguments":"{}"}}]}),
            None,
        ),
        server::finish("tool_calls"),
        server::DONE.to_owned(),
    ]
}

#[test]
fn defect4_an_interruption_while_waiting_for_round_two_does_not_repeat_round_one() {
    let scratch = Scratch::new("signal-round-two");
    let chat = scratch.path("chat.json");
    let tools = wait_tool(&scratch);
    let (_release, hold) = std::sync::mpsc::channel::<()>();
    let server = Server::start(vec![
        server::sse(&look_call("Checking.")),
        vec![server::Step::WaitFor(hold)],
    ]);
    let mut child = gptstream()
        .server(&server)
        .args(["--tools", &tools, "--tool-exec", "look=echo seen"])
        .args(["--save", &chat, "--save-partial", "-q", "go"])
        .spawn();
    server.request();
    server.request(); // round two was sent; its answer never comes
    let stdout = drain(child.stdout.take().expect("stdout"));
    send(&child, "INT");
    let out = finish(child);
    assert_eq!(out.code, 130, "{}", out.render());
    let printed = String::from_utf8(stdout.iter().flatten().collect()).unwrap();
    assert_eq!(printed, "Checking.");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).unwrap();
    assert_eq!(
        saved,
        serde_json::json!([
            {"role":"user","content":"go"},
            {"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"seen\n"},
            {"role":"assistant","content":"[answer incomplete: interrupted by SIGINT]"}
        ])
    );
}

#[test]
fn defect4_exit_6_saves_a_transcript_whose_tool_calls_all_have_results() {
    let scratch = Scratch::new("rounds-save");
    let chat = scratch.path("chat.json");
    let tools = wait_tool(&scratch);
    let server = Server::start(vec![
        server::sse(&look_call("One.")),
        server::sse(&look_call("Two.")),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--tools", &tools, "--tool-exec", "look=echo seen"])
        .args(["--max-tool-rounds", "1", "--save", &chat, "--save-partial"])
        .args(["-q", "go"])
        .run();
    assert_eq!(out.code, 6, "{}", out.render());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).unwrap();
    // The API would accept it: every call answered, round two's text recorded once.
    assert_eq!(
        server::rejects_unanswered_tool_calls(&serde_json::json!({"messages": saved})),
        Ok(())
    );
    let texts: Vec<&str> = saved
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(texts, ["One.", "Two."], "{saved}");
    let last = saved.as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "tool");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .starts_with("error: this tool call was not run: the model still calls tools"),
        "{last}"
    );
}

#[test]
fn defect11_a_failed_save_on_the_signal_path_keeps_exit_130_and_says_both() {
    let scratch = Scratch::new("signal-bad-save");
    let chat = scratch.path("missing-dir/chat.json");
    let out = interrupt_after_hel("INT", &["--save", &chat, "--save-partial", "hi"]);
    assert_eq!(out.code, 130, "{}", out.render());
    assert!(
        out.stderr.starts_with("interrupted signal=SIGINT"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("gptstream: cannot save the conversation to "),
        "{}",
        out.stderr
    );
}

#[test]
fn defect11_a_failed_save_on_the_error_path_keeps_the_error_s_exit_code() {
    let scratch = Scratch::new("error-bad-save");
    let chat = scratch.path("missing-dir/chat.json");
    let server = Server::one(server::full(
        500,
        "application/json",
        r#"{"error":{"message":"boom"}}"#,
    ));
    let out = gptstream()
        .server(&server)
        .args(["--retries", "0", "--save", &chat, "--save-partial", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with("gptstream: cannot save the conversation to "),
        "{}",
        out.stderr
    );
    assert_eq!(lines[1], "gptstream: HTTP 500 Internal Server Error: boom");
}

#[test]
fn a_panicking_worker_is_one_error_line_and_exit_1_not_a_hang() {
    // The debug build's test hook panics in the worker before it sends anything.
    let base = format!("http://127.0.0.1:{}/v1", server::unused_port());
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .env("GPTSTREAM_DEBUG_PANIC", "1")
        .arg("hi")
        .run();
    assert_eq!(out.code, 1, "{}", out.render());
    assert_eq!(out.stdout(), "");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "gptstream: internal error: GPTSTREAM_DEBUG_PANIC is set at src/control/supervisor.rs:"
        ),
        "{}",
        out.stderr
    );
}

/// Waits until a connection to `port` on 127.0.0.1 is being attempted (SYN sent, unanswered).
fn wait_until_connecting(port: u16) {
    let needle = format!(":{port:04X} ");
    let deadline = std::time::Instant::now() + server::PATIENCE;
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        // Columns: sl, local, remote, state; SYN_SENT is state 02.
        let connecting = table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && format!("{} ", fields[2]).ends_with(&needle) && fields[3] == "02"
        });
        if connecting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw the connect"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn ctrl_c_while_connecting_stops_at_once_with_the_usual_report() {
    let Some((listener, _queued)) = crate::reliability::stalled_listener() else {
        panic!("could not fill the accept queue on 127.0.0.1 to make a connect stall");
    };
    let port = listener.local_addr().unwrap().port();
    let child = gptstream()
        .env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{port}/v1"))
        .args(["--connect-timeout", "60", "--retries", "0", "hi"])
        .spawn();
    wait_until_connecting(port);
    send(&child, "INT");
    let out = finish(child);
    assert_eq!(
        out.render(),
        "status: 130\n--- stdout\n\n--- stderr\ninterrupted signal=SIGINT usage=none\n"
    );
}

#[test]
fn defect11_a_failed_save_when_a_piped_chat_is_interrupted_keeps_exit_130() {
    let scratch = Scratch::new("chat-bad-save");
    let chat = scratch.path("missing-dir/chat.json");
    let (_release, steps) = server::stalls_after("Hel");
    let server = Server::one(steps);
    let mut child = std::process::Command::new(crate::util::binary())
        .env_clear()
        .env("OPENAI_BASE_URL", server.base_url())
        .args(["--chat", "--json", "--save", &chat])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut keys, b"hello\n").unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    wait_for(&stdout, "Hel");
    send(&child, "INT");
    let out = finish(child);
    drop(keys);
    assert_eq!(out.code, 130, "{}", out.render());
    assert!(
        out.stderr
            .starts_with("gptstream: cannot save the conversation to "),
        "{}",
        out.stderr
    );
    let rest = String::from_utf8(stdout.iter().flatten().collect()).unwrap();
    assert_eq!(
        rest.lines()
            .filter(|line| line.contains("\"type\":\"error\""))
            .count(),
        1,
        "one error event, the interruption: {rest}"
    );
}

/// The threads of `pid` and what each waits in, from /proc.
fn waiting_in(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("wchan")).ok())
        .collect()
}

/// A run blocked writing `chunk`'s text to a pipe nobody reads: `stdout` or `stderr` (reasoning
/// goes there). Returns the child once a thread of it waits in `pipe_write`, the unread pipe
/// (dropped only after the child is gone), and the server (which then holds the stream open).
fn blocked_writing(
    chunk: String,
    pipe: &str,
) -> (Child, Box<dyn Send>, Server, std::sync::mpsc::Sender<()>) {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let mut steps = vec![server::chunked_head(200, "text/event-stream")];
    for _ in 0..100 {
        steps.push(server::Step::Chunk(chunk.clone().into_bytes()));
    }
    steps.push(server::Step::WaitFor(hold));
    let server = Server::one(steps);
    let mut child = gptstream().server(&server).arg("hi").spawn();
    let unread: Box<dyn Send> = match pipe {
        "stdout" => Box::new(child.stdout.take().expect("stdout")),
        _ => Box::new(child.stderr.take().expect("stderr")),
    };
    let deadline = std::time::Instant::now() + server::PATIENCE;
    while !waiting_in(child.id())
        .iter()
        .any(|w| w.contains("pipe_write"))
    {
        assert!(std::time::Instant::now() < deadline, "{pipe} never blocked");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (child, unread, server, release)
}

#[test]
fn a_signal_is_not_swallowed_when_stderr_is_blocked() {
    let reasoning = server::delta(
        serde_json::json!({"reasoning_content": "thinking ".repeat(500)}),
        None,
    );
    let (child, stderr, _server, _release) = blocked_writing(reasoning, "stderr");
    send(&child, "INT");
    // The watchdog ends the process although its stderr stays blocked (its last word cannot get
    // into the full pipe either: it is written from a thread of its own, given a moment).
    let out = finish(child);
    drop(stderr);
    assert_eq!(out.code, 130);
}

#[test]
fn a_second_signal_leaves_at_once_with_its_own_code() {
    let text = server::content(&"words ".repeat(500));
    let (child, stdout, _server, _release) = blocked_writing(text, "stdout");
    send(&child, "INT");
    // The watchdog alone would end it with 130 after a while; a second signal ends it now,
    // with that signal's code.
    send(&child, "TERM");
    let out = finish(child);
    drop(stdout);
    assert_eq!(out.code, 143, "{}", out.render());
    assert!(
        out.stderr
            .ends_with("gptstream: interrupted by SIGTERM; a second signal\n"),
        "{}",
        out.stderr
    );
}
