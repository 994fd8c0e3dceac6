//! Issue #20, item 13: a tool's child that leaves the tool's process group (`setsid`, a double
//! fork) is killed and reaped when the tool's run ends, like the rest of the tool, and never
//! outlives gptstream. Linux only: gptstream tracks such children as their subreaper.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use crate::server::{self, DONE, Server, content, delta, finish, sse};
use crate::util::{Scratch, gptstream, timeless};

/// An escapee's stdio when it holds none of the tool's pipes.
const QUIET: &str = ">/dev/null 2>&1 </dev/null";

const WEATHER: &str = r#"{"name":"get_weather","parameters":{"type":"object"}}"#;

/// Two connections: a call to get_weather, then the final answer `Done.`.
fn call_then_done() -> Server {
    let call = delta(
        serde_json::json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}),
        None,
    );
    Server::start(vec![
        sse(&[call, finish("tool_calls"), DONE.to_owned()]),
        sse(&[content("Done."), finish("stop"), DONE.to_owned()]),
    ])
}

/// The processes a test's tool started: killed when the test ends, whatever it asserted, so
/// that a failing run (the old binary's) leaves no `sleep 300` behind.
struct Escapees(Vec<String>);

impl Drop for Escapees {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        for pid in &self.0 {
            if let Some(pid) = pid.parse().ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// Shell that starts `script` in a session of its own (with `sh -c`, its stdio as `redirect`
/// says), which then writes its pid into `file` and becomes a `sleep 300`.
fn escapee(script: &str, file: &str, redirect: &str) -> String {
    format!(
        "setsid sh -c '{script}; echo $$ > {file}.tmp; mv {file}.tmp {file}; exec sleep 300' \
         {redirect}"
    )
}

/// Shell that waits until `file` is written: the tool must not end before its escapee is
/// there to be missed.
fn wait_for(file: &str) -> String {
    format!("while [ ! -s {file} ]; do sleep 0.01; done")
}

/// The pids in `file` (written by the tool), each to be killed at the end of the test.
fn pids(file: &str, escapees: &mut Escapees) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("the tool wrote its escapee's pid");
    let pids: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    assert!(!pids.is_empty(), "no pid in {file}");
    escapees.0.extend(pids.iter().cloned());
    pids
}

/// Waits (at most 2 s) for process `pid` to be gone: killed, and reaped by gptstream.
fn assert_gone(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "the tool's escaped process {pid} outlived gptstream: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the tool `exec` in one loop and returns the render and the tool result the model got.
fn run_tool(scratch: &Scratch, exec: &str, tool_timeout: &str) -> (String, serde_json::Value) {
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_done();
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            &format!("get_weather={exec}"),
            "--tool-timeout",
            tool_timeout,
            "hi",
        ])
        .run();
    let _first = server.request();
    let result = server.request().json()["messages"][2]["content"].clone();
    (timeless(&out.render()), result)
}

const DONE_NORMALLY: &str = "status: 0\n--- stdout\nDone.\n--- stderr\n\
     gptstream: ran tool get_weather (call_1): exit 0, 3 bytes\n\
     finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n";

const TIMED_OUT: &str = "status: 0\n--- stdout\nDone.\n--- stderr\n\
     gptstream: ran tool get_weather (call_1): timed out, 3 bytes\n\
     finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n";

#[test]
fn harden13_a_setsid_child_of_a_tool_that_exited_is_killed_and_reaped() {
    let scratch = Scratch::new("harden13-exited");
    let file = scratch.path("escapee.pid");
    let mut escapees = Escapees(Vec::new());
    // The escapee holds none of the tool's pipes: the tool ends when its sh does, at once.
    let exec = format!(
        "{} & {}; echo hi",
        escapee("true", &file, QUIET),
        wait_for(&file)
    );
    let (render, result) = run_tool(&scratch, &exec, "30");
    let pids = pids(&file, &mut escapees);
    assert_eq!(render, DONE_NORMALLY);
    assert_eq!(result, "hi\n");
    for pid in &pids {
        assert_gone(pid);
    }
}

#[test]
fn harden13_a_setsid_child_holding_the_output_is_killed_at_the_tool_timeout() {
    let scratch = Scratch::new("harden13-holder");
    let file = scratch.path("escapee.pid");
    let mut escapees = Escapees(Vec::new());
    // Its stdout and stderr are the tool's: until they end, the tool is running (as with a
    // background child in the group), so the run ends at --tool-timeout, with what was written.
    let exec = format!(
        "{} & {}; echo hi",
        escapee("true", &file, ""),
        wait_for(&file)
    );
    // 3 s: time enough for the escapee to write its pid on a loaded 2-core machine.
    let (render, result) = run_tool(&scratch, &exec, "3");
    let pids = pids(&file, &mut escapees);
    assert_eq!(render, TIMED_OUT);
    assert_eq!(
        result,
        "error: the tool timed out after 3s and was killed\nhi\n"
    );
    for pid in &pids {
        assert_gone(pid);
    }
}

#[test]
fn harden13_a_setsid_child_of_a_tool_that_runs_into_the_timeout_is_killed() {
    let scratch = Scratch::new("harden13-timeout");
    let file = scratch.path("escapee.pid");
    let mut escapees = Escapees(Vec::new());
    let exec = format!(
        "{} & {}; echo hi; exec sleep 300",
        escapee("true", &file, QUIET),
        wait_for(&file)
    );
    // 3 s: time enough for the escapee to write its pid on a loaded 2-core machine.
    let (render, result) = run_tool(&scratch, &exec, "3");
    let pids = pids(&file, &mut escapees);
    assert_eq!(render, TIMED_OUT);
    assert_eq!(
        result,
        "error: the tool timed out after 3s and was killed\nhi\n"
    );
    for pid in &pids {
        assert_gone(pid);
    }
}

#[test]
fn harden13_what_an_escaped_child_starts_is_killed_too_double_fork_included() {
    let scratch = Scratch::new("harden13-tree");
    let (file, grandchild) = (scratch.path("escapee.pid"), scratch.path("grandchild.pid"));
    let mut escapees = Escapees(Vec::new());
    // The escapee starts a child that escapes again, and the whole thing is double-forked:
    // each is re-parented to gptstream only once its parent has been killed.
    let inner = format!(
        "setsid sleep 300 </dev/null & echo $! > {grandchild}.tmp; mv {grandchild}.tmp {grandchild}"
    );
    let exec = format!(
        "({} &); {}; echo hi",
        escapee(&inner, &file, QUIET),
        wait_for(&file)
    );
    let (render, result) = run_tool(&scratch, &exec, "30");
    let mut pids = pids(&file, &mut escapees);
    pids.extend(self::pids(&grandchild, &mut escapees));
    assert_eq!(render, DONE_NORMALLY);
    assert_eq!(result, "hi\n");
    for pid in &pids {
        assert_gone(pid);
    }
}

#[test]
fn harden13_ctrl_c_during_a_tool_run_kills_its_setsid_child_too() {
    let scratch = Scratch::new("harden13-signal");
    let file = scratch.path("escapee.pid");
    let tools = scratch.file("tools.json", WEATHER);
    let mut escapees = Escapees(Vec::new());
    let server = call_then_done();
    let exec = format!(
        "get_weather={} & {}; exec sleep 300",
        escapee("true", &file, QUIET),
        wait_for(&file)
    );
    let child = gptstream()
        .server(&server)
        .args(["--tools", &tools, "--tool-exec", &exec, "hi"])
        .spawn();
    let deadline = Instant::now() + server::PATIENCE;
    while !std::path::Path::new(&file).exists() {
        assert!(Instant::now() < deadline, "the tool never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = pids(&file, &mut escapees);
    crate::signals::send(&child, "INT");
    let out = crate::util::finish(child);
    assert_eq!(out.code, 130, "{}", out.render());
    for pid in &pids {
        assert_gone(pid);
    }
}
