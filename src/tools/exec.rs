//! How gptstream runs a call for the user (`--tool-exec NAME=COMMAND`).
//!
//! A command is the user's own command line, run by `sh -c`; the model's output never becomes
//! part of it. The call's arguments go to the command's stdin, its stdout is the result. Output is
//! capped, and the command is killed at its timeout, so a runaway tool cannot hang the run or
//! flood the model's context; both are reported, never silent.
//!
//! The tool is everything in its process group, not just its `sh`: a pipeline, or a background
//! child that keeps the output pipe open after `sh` has exited, is still the tool running. So the
//! timeout runs until the output has ended, and until then the group stays listed for
//! [`kill_running_tools`]. One thread polls the pipes rather than blocking on them, so a killed
//! tool never leaves a reader stuck behind it. What left the group (`setsid`, a double fork) is
//! found and killed at the end of the run by [`crate::control::reaper`], on Linux.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

#[cfg(doc)]
use crate::control::children::kill_running_tools;
use crate::control::children::{kill_group, running, shell};
use crate::control::supervisor::Cancel;
use crate::event::{ToolCall, ToolOutcome};

/// One output's bytes: the first `cap` kept, all counted (the child is read to the end so that it
/// never blocks on a full pipe, and the result can say how much was cut).
#[derive(Debug, Default)]
struct Capped {
    kept: Vec<u8>,
    total: usize,
    cap: usize,
}

impl Capped {
    fn new(cap: usize) -> Capped {
        Capped {
            cap,
            ..Capped::default()
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// What a command left: its output, and how it ended.
struct Ran {
    stdout: Capped,
    stderr: Capped,
    /// `None` when gptstream killed it.
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
}

pub(super) fn run_command(
    command: &str,
    call: &ToolCall,
    max_output: usize,
    timeout: Option<Duration>,
    cancel: &Cancel,
) -> anyhow::Result<ToolOutcome> {
    let child = crate::control::reaper::spawn(
        shell(command)
            .env("GPTSTREAM_TOOL_NAME", &call.name)
            .env("GPTSTREAM_TOOL_CALL_ID", &call.id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .with_context(|| format!("cannot start --tool-exec {}={command}", call.name))?;
    let id = child.id();
    let deadline = timeout.map(|t| Instant::now() + t);
    let ran = supervise(
        child,
        call.arguments.as_bytes(),
        max_output,
        deadline,
        cancel,
    );
    // sh has been reaped, however the watch ended; what the tool left outside its group (a
    // `setsid` child, a daemon) is killed now, so that nothing it started outlives its run.
    crate::control::reaper::disown(id);
    crate::control::reaper::sweep();
    let ran = ran.with_context(|| format!("cannot run --tool-exec {}={command}", call.name))?;
    let (kept, output_bytes) = (ran.stdout.kept, ran.stdout.total);
    let truncated = output_bytes > kept.len();
    let exit_code = ran.status.and_then(|s| s.code());
    let mut content = String::from_utf8_lossy(&kept).into_owned();
    if truncated {
        content.push_str(&super::truncation_note(output_bytes, kept.len()));
    }
    if exit_code != Some(0) {
        let why = match (ran.timed_out, timeout, exit_code) {
            (true, Some(t), _) => format!("timed out after {}s and was killed", t.as_secs_f64()),
            (_, _, Some(code)) => format!("exited with status {code}"),
            _ => "was killed by a signal".to_owned(),
        };
        content = format!(
            "error: the tool {why}\n{content}{}",
            String::from_utf8_lossy(&ran.stderr.kept)
        );
    }
    Ok(ToolOutcome {
        content,
        exit_code,
        output_bytes,
        truncated,
        timed_out: ran.timed_out,
        server: None,
        is_error: None,
    })
}

/// How long one wait for the pipes may last, so that the loop also notices, this often, that
/// `kill_running_tools` has stopped the tool.
#[cfg(unix)]
const SLICE: Duration = Duration::from_millis(50);

/// How often to look for sh's exit once its output has ended: it closes its pipes a moment before
/// it can be reaped.
#[cfg(unix)]
const EXIT_POLL: Duration = Duration::from_millis(2);

/// Why the watch over a tool ended.
#[cfg(unix)]
enum Ended {
    /// Its output ended and sh exited (and was reaped).
    Exited(std::process::ExitStatus),
    TimedOut,
    /// `kill_running_tools` killed it.
    Cancelled,
}

/// Feeds the arguments, reads both outputs to their end and reaps sh, all before the deadline,
/// which therefore also covers a pipeline or a background child that keeps the output open after
/// sh has exited. One thread, polling: nothing is left blocked on a pipe when the tool is killed.
#[cfg(unix)]
fn supervise(
    mut child: std::process::Child,
    input: &[u8],
    max_output: usize,
    deadline: Option<Instant>,
    cancel: &Cancel,
) -> anyhow::Result<Ran> {
    let id = child.id();
    {
        // Listed and checked under one lock: a stop sets `cancel` before it takes the lock to
        // kill the listed tools, so either it finds this one listed or this one finds it set.
        let mut running = running();
        running.push(id);
        if cancel.is_cancelled() {
            running.retain(|&listed| listed != id);
            kill_group(id);
        }
    }
    let mut pipes = Pipes::new(&mut child, input, max_output);
    let ended = pipes
        .nonblocking()
        .and_then(|()| watch(&mut child, &mut pipes, id, deadline));
    let ended = match ended {
        Ok(Ended::Exited(status)) => {
            return Ok(Ran {
                stdout: pipes.stdout_bytes,
                stderr: pipes.stderr_bytes,
                status: Some(status),
                timed_out: false,
            });
        }
        Ok(ended) => ended,
        Err(err) => {
            stop(&mut child, id);
            return Err(err).context("cannot watch the tool's pipes");
        }
    };
    stop(&mut child, id);
    // What the tool wrote before it was killed, as far as the pipes hold it: a child that escaped
    // the group may keep them open, so never wait for their end here.
    pipes.read_what_is_there();
    Ok(Ran {
        stdout: pipes.stdout_bytes,
        stderr: pipes.stderr_bytes,
        status: None,
        timed_out: matches!(ended, Ended::TimedOut),
    })
}

/// Pumps the pipes until both outputs have ended and sh has exited, the deadline has passed, or
/// the tool has been killed by `kill_running_tools`.
#[cfg(unix)]
fn watch(
    child: &mut std::process::Child,
    pipes: &mut Pipes,
    id: u32,
    deadline: Option<Instant>,
) -> std::io::Result<Ended> {
    loop {
        {
            let mut running = running();
            if !running.contains(&id) {
                return Ok(Ended::Cancelled);
            }
            // Reaped under the lock, and unlisted with it, so no kill can aim at a reaped id.
            if !pipes.output_open()
                && let Some(status) = child.try_wait()?
            {
                running.retain(|&listed| listed != id);
                return Ok(Ended::Exited(status));
            }
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(Ended::TimedOut);
        }
        let slice = if pipes.output_open() {
            SLICE
        } else {
            EXIT_POLL
        };
        pipes.pump(left.map_or(slice, |left| left.min(slice)))?;
    }
}

/// Kills the tool's group unless `kill_running_tools` already has, unlists it, then reaps sh, in
/// that order (see RUNNING).
#[cfg(unix)]
fn stop(child: &mut std::process::Child, id: u32) {
    {
        let mut running = running();
        if running.contains(&id) {
            kill_group(id);
            running.retain(|&listed| listed != id);
        }
    }
    // In case sh has left its group; sh is not reaped yet, so its pid is still its own.
    let _ = child.kill();
    let _ = child.wait();
}

/// The parent's ends of a tool's pipes, while they are open, and what came out of them.
#[cfg(unix)]
struct Pipes<'a> {
    stdin: Option<std::process::ChildStdin>,
    /// The arguments not yet written.
    input: &'a [u8],
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    stdout_bytes: Capped,
    stderr_bytes: Capped,
    buffer: Vec<u8>,
}

#[cfg(unix)]
impl<'a> Pipes<'a> {
    fn new(child: &mut std::process::Child, input: &'a [u8], max_output: usize) -> Pipes<'a> {
        let mut pipes = Pipes {
            stdin: child.stdin.take(),
            input,
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            stdout_bytes: Capped::new(max_output),
            stderr_bytes: Capped::new(4096),
            // A pipe's whole default capacity on Linux, so one read usually empties it.
            buffer: vec![0; 64 * 1024],
        };
        if input.is_empty() {
            pipes.stdin = None;
        }
        pipes
    }

    /// Our ends only: the child's ends stay blocking, as programs expect.
    fn nonblocking(&self) -> std::io::Result<()> {
        use rustix::io::ioctl_fionbio;
        if let Some(pipe) = &self.stdin {
            ioctl_fionbio(pipe, true)?;
        }
        if let Some(pipe) = &self.stdout {
            ioctl_fionbio(pipe, true)?;
        }
        if let Some(pipe) = &self.stderr {
            ioctl_fionbio(pipe, true)?;
        }
        Ok(())
    }

    fn output_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Waits at most `wait` for a pipe to be ready, then moves what it can: some of the arguments
    /// into stdin, and what stdout and stderr hold.
    fn pump(&mut self, wait: Duration) -> std::io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec::try_from(wait).map_err(std::io::Error::other)?;
        let (feed, out, err) = {
            let mut fds = Vec::with_capacity(3);
            if let Some(pipe) = &self.stdin {
                fds.push(PollFd::new(pipe, PollFlags::OUT));
            }
            if let Some(pipe) = &self.stdout {
                fds.push(PollFd::new(pipe, PollFlags::IN));
            }
            if let Some(pipe) = &self.stderr {
                fds.push(PollFd::new(pipe, PollFlags::IN));
            }
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) => {}
                // A signal for the signal thread landed on this one: just look again.
                Err(rustix::io::Errno::INTR) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
            // Any event (ready, hung up, error) means the next read or write will not block.
            // Taken in the order pushed; `&&` skips the pipes that were not.
            let mut ready = fds.iter().map(|fd| !fd.revents().is_empty());
            (
                self.stdin.is_some() && ready.next() == Some(true),
                self.stdout.is_some() && ready.next() == Some(true),
                self.stderr.is_some() && ready.next() == Some(true),
            )
        };
        if feed {
            self.feed();
        }
        if out {
            read_once(&mut self.stdout, &mut self.stdout_bytes, &mut self.buffer);
        }
        if err {
            read_once(&mut self.stderr, &mut self.stderr_bytes, &mut self.buffer);
        }
        Ok(())
    }

    /// Writes as much of the arguments as the pipe takes now; closes stdin once they are all in,
    /// which is how the tool knows they are complete.
    fn feed(&mut self) {
        use std::io::{ErrorKind, Write};
        let Some(pipe) = &mut self.stdin else {
            return;
        };
        match pipe.write(self.input) {
            Ok(n) => self.input = &self.input[n..],
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // A tool that does not read its stdin is fine: it closed it, so stop writing.
            Err(_) => self.input = &[],
        }
        if self.input.is_empty() {
            self.stdin = None;
        }
    }

    /// Reads what the outputs hold now, without waiting for more (a bounded number of reads: a
    /// child outside the group may still be writing).
    fn read_what_is_there(&mut self) {
        for _ in 0..16 {
            read_once(&mut self.stdout, &mut self.stdout_bytes, &mut self.buffer);
            read_once(&mut self.stderr, &mut self.stderr_bytes, &mut self.buffer);
        }
    }
}

/// One read from a non-blocking pipe, closed at its end or on an error. One only: a tool that
/// writes without a pause must not keep the loop from its clock.
#[cfg(unix)]
fn read_once(pipe: &mut Option<impl std::io::Read>, into: &mut Capped, buffer: &mut [u8]) {
    use std::io::ErrorKind;
    let Some(reader) = pipe else {
        return;
    };
    match reader.read(buffer) {
        Ok(0) => *pipe = None,
        Ok(n) => into.push(&buffer[..n]),
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
        Err(_) => *pipe = None,
    }
}

/// Elsewhere: a thread per pipe, and the deadline covers only the command's own exit (the
/// process-group handling above is Unix-only).
#[cfg(not(unix))]
fn supervise(
    mut child: std::process::Child,
    input: &[u8],
    max_output: usize,
    deadline: Option<Instant>,
    _cancel: &Cancel,
) -> anyhow::Result<Ran> {
    use std::io::{Read, Write};
    use std::thread;

    fn read_capped(mut pipe: impl Read, cap: usize) -> Capped {
        let mut capped = Capped::new(cap);
        let mut buffer = [0u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => return capped,
                Ok(n) => capped.push(&buffer[..n]),
            }
        }
    }

    let arguments = input.to_vec();
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
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        thread::sleep(Duration::from_millis(2));
    };
    let _ = feeder.join();
    let join = |handle: Option<thread::JoinHandle<Capped>>, cap: usize| {
        handle
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| Capped::new(cap))
    };
    Ok(Ran {
        stdout: join(stdout, max_output),
        stderr: join(stderr, 4096),
        status,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall::new("call_1", name, arguments)
    }

    /// One `--tool-exec` command with its limits, run as the toolbox runs it.
    struct Job {
        command: String,
        max_output: usize,
        timeout: Option<Duration>,
    }

    impl Job {
        fn run(&self, call: &ToolCall, cancel: &Cancel) -> anyhow::Result<ToolOutcome> {
            run_command(&self.command, call, self.max_output, self.timeout, cancel)
        }
    }

    fn toolbox(command: &str, max_output: usize) -> Job {
        Job {
            command: command.into(),
            max_output,
            timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Timeouts and kills of the whole process group, with what sh can start: pipelines and
    /// background children.
    #[cfg(unix)]
    mod process_group {
        use super::*;
        use std::sync::mpsc;
        use std::thread;

        /// Runs `toolbox` on one call on a thread of its own, and fails the test if the call has
        /// not returned within 20 s: a tool that hangs the run must fail the suite, not hang it.
        fn run_guarded(toolbox: Job, arguments: &str) -> ToolOutcome {
            run_guarded_with(toolbox, arguments, Cancel::default())
        }

        fn run_guarded_with(toolbox: Job, arguments: &str, cancel: Cancel) -> ToolOutcome {
            let (done, outcome) = mpsc::channel();
            let call = call("t", arguments);
            thread::spawn(move || {
                let _ = done.send(
                    toolbox
                        .run(&call, &cancel)
                        .map_err(|err| format!("{err:#}")),
                );
            });
            outcome
                .recv_timeout(Duration::from_secs(20))
                .expect("the tool run did not return within 20 s")
                .expect("the tool ran")
        }

        fn timing_out(command: &str) -> Job {
            let mut toolbox = toolbox(command, 1000);
            toolbox.timeout = Some(Duration::from_secs(1));
            toolbox
        }

        /// A file name of this test's own in the temporary directory, removed when dropped.
        struct Scratch(PathBuf);

        impl Scratch {
            fn new(name: &str) -> Scratch {
                let path = std::env::temp_dir()
                    .join(format!("gptstream-toolbox-{name}-{}", std::process::id()));
                let _ = std::fs::remove_file(&path);
                Scratch(path)
            }

            /// The pid the tool wrote to the file.
            fn pid(&self) -> i32 {
                let text = std::fs::read_to_string(&self.0).expect("the tool wrote its pid");
                text.trim().parse().expect("a pid")
            }
        }

        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }

        /// Waits (at most 20 s) until process `pid` is gone or a zombie: SIGKILL lands when the
        /// kernel next schedules the process, which on a loaded machine can take a moment.
        fn assert_dies(pid: i32) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let state =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if state.is_empty() || state.contains(") Z ") {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "process {pid} still runs: {state}"
                );
                thread::sleep(Duration::from_millis(5));
            }
        }

        #[test]
        fn defect7_a_background_child_holding_the_output_open_is_timed_out() {
            // sh exits at once; the sleep it left behind still holds the stdout pipe.
            let outcome = run_guarded(timing_out("(sleep 300 &); echo hi"), "{}");
            assert!(outcome.timed_out, "{outcome:?}");
            assert_eq!(outcome.exit_code, None);
            assert_eq!(
                outcome.content,
                "error: the tool timed out after 1s and was killed\nhi\n"
            );
            assert_eq!(outcome.output_bytes, 3);
        }

        #[test]
        fn a_pipeline_is_timed_out_as_a_whole() {
            let outcome = run_guarded(timing_out("echo hi; sleep 300 | cat"), "{}");
            assert!(outcome.timed_out, "{outcome:?}");
            assert_eq!(
                outcome.content,
                "error: the tool timed out after 1s and was killed\nhi\n"
            );
        }

        #[test]
        fn defect7_the_timeout_kills_the_background_child_too() {
            let pid = Scratch::new("background-pid");
            let command = format!("(sleep 300 & echo $! > {}); echo hi", pid.0.display());
            let outcome = run_guarded(timing_out(&command), "{}");
            assert!(outcome.timed_out, "{outcome:?}");
            assert_dies(pid.pid());
        }

        #[test]
        fn a_tool_stopped_by_kill_running_tools_returns_with_what_it_wrote() {
            let pid = Scratch::new("stopped-pid");
            let file = pid.0.display();
            // No timeout: only the stop can end it, as Ctrl-C does in a chat.
            let mut endless = toolbox(
                &format!("(sleep 300 &); echo hi; echo $$ > {file}.tmp; mv {file}.tmp {file}"),
                1000,
            );
            endless.timeout = None;
            let (done, outcome) = mpsc::channel();
            thread::spawn(move || {
                let _ = done.send(
                    endless
                        .run(&call("t", "{}"), &Cancel::default())
                        .map_err(|e| format!("{e:#}")),
                );
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while !pid.0.exists() {
                assert!(Instant::now() < deadline, "the tool never started");
                thread::sleep(Duration::from_millis(5));
            }
            let id = u32::try_from(pid.pid()).expect("a pid");
            {
                // What kill_running_tools does, for this test's tool only: the other tests' tools
                // run in this process too.
                let mut running = running();
                assert!(running.contains(&id), "the tool was unlisted while it ran");
                running.retain(|&listed| listed != id);
                kill_group(id);
            }
            let outcome = outcome
                .recv_timeout(Duration::from_secs(20))
                .expect("the stopped tool's run did not return within 20 s")
                .expect("the tool ran");
            assert_eq!(
                (
                    outcome.content.as_str(),
                    outcome.exit_code,
                    outcome.timed_out
                ),
                ("error: the tool was killed by a signal\nhi\n", None, false)
            );
        }

        /// The review of issue #12 found a stop that landed while a tool was being started
        /// missed it: the tool was not listed yet, so nothing killed it.
        #[test]
        fn a_tool_started_after_a_stop_is_killed_at_once() {
            let cancel = Cancel::default();
            cancel.cancel();
            let mut slow = toolbox("echo started; exec sleep 300", 1000);
            slow.timeout = None;
            let outcome = run_guarded_with(slow, "{}", cancel);
            assert_eq!(outcome.exit_code, None, "{}", outcome.content);
            assert!(!outcome.timed_out);
        }

        #[test]
        fn a_tool_that_never_reads_large_arguments_still_finishes() {
            // More than a pipe holds (64 KiB on Linux), so writing them all would block.
            let arguments = format!("{{\"x\":\"{}\"}}", "a".repeat(200_000));
            let outcome = run_guarded(toolbox("sleep 0.1; echo done", 1000), &arguments);
            assert_eq!(outcome.content, "done\n");
            assert!(outcome.succeeded());

            // Here a child left behind holds stdin open, unread, after sh and the output are done.
            let pid = Scratch::new("stdin-holder-pid");
            let command = format!(
                "exec 3<&0; (sleep 300 <&3 >/dev/null 2>&1 & echo $! > {}); echo done",
                pid.0.display()
            );
            let outcome = run_guarded(toolbox(&command, 1000), &arguments);
            let holder = pid.pid();
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(holder).expect("a pid"),
                rustix::process::Signal::KILL,
            );
            assert_eq!(outcome.content, "done\n");
            assert!(outcome.succeeded());
        }
    }
}
