//! An MCP server over stdio: `sh -c COMMAND` in a process group of its own. Three threads, each
//! the one owner of a pipe: a writer (its stdin: what we send is queued, so a server that stops
//! reading cannot block a timeout or a stop), a reader of its stdout that hands each message over
//! a bounded channel (a server that floods us waits, as its pipe fills, rather than growing our
//! memory), and a reader of its stderr (kept as the last line, for errors; shown with `-v`).
//! At the end its stdin is closed, then its group is sent SIGTERM and, after a grace, SIGKILL;
//! it is reaped, what it left outside its group (a `setsid` child) is swept once all the servers
//! are stopped, and the threads are joined.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::rpc::{self, FromServer, MAX_MESSAGE, QUEUE};

/// How long a server has to leave once its stdin is closed, and again after SIGTERM.
const GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Process {
    child: Child,
    /// To the writer thread; dropped to close the server's stdin.
    stdin: Option<Sender<Vec<u8>>>,
    /// Set by the writer when a write failed: the server closed its stdin, or died.
    broken: Arc<AtomicBool>,
    /// From the stdout thread; dropped before that thread is joined, so that it cannot stay
    /// blocked on a full queue.
    messages: Option<Receiver<FromServer>>,
    writer: Option<JoinHandle<()>>,
    /// [`Process::stop`] has run.
    stopped: bool,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<()>>,
    last_stderr: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `command`; its environment lacks `hidden` (the API key's variables) and has
    /// `env` (a config table's) added.
    pub(crate) fn start(
        name: &str,
        command: &str,
        env: &[(String, String)],
        hidden: &[String],
        verbose: bool,
    ) -> anyhow::Result<Process> {
        let mut shell = crate::control::children::shell(command);
        for var in hidden {
            shell.env_remove(var);
        }
        shell.envs(env.iter().map(|(name, value)| (name, value)));
        shell
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // What the server starts outside its group is ours to sweep at the end.
        crate::control::reaper::adopt();
        let mut child = crate::control::reaper::spawn_kept(&mut shell)
            .with_context(|| format!("cannot start MCP server {name}"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            anyhow::bail!("cannot start MCP server {name}: no pipes");
        };
        let (to_stdin, lines) = channel();
        let broken = Arc::new(AtomicBool::new(false));
        let writer = {
            let broken = Arc::clone(&broken);
            std::thread::Builder::new()
                .name(format!("mcp-{name}-stdin"))
                .spawn(move || write_stdin(stdin, &lines, &broken))
                .context("cannot start a thread")?
        };
        let (sender, messages) = sync_channel(QUEUE);
        let stdout = std::thread::Builder::new()
            .name(format!("mcp-{name}-stdout"))
            .spawn(move || read_stdout(stdout, &sender))
            .context("cannot start a thread")?;
        let last_stderr = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&last_stderr);
        let shown_name = crate::error::scrub(name);
        let stderr = std::thread::Builder::new()
            .name(format!("mcp-{name}-stderr"))
            .spawn(move || read_stderr(stderr, &kept, verbose.then_some(shown_name)))
            .context("cannot start a thread")?;
        Ok(Process {
            child,
            stdin: Some(to_stdin),
            broken,
            messages: Some(messages),
            writer: Some(writer),
            stopped: false,
            stdout: Some(stdout),
            stderr: Some(stderr),
            last_stderr,
        })
    }

    /// Queues one message and its newline for the writer; an error once the server's stdin is
    /// gone.
    pub(crate) fn send(&mut self, message: &Value) -> std::io::Result<()> {
        let (Some(stdin), false) = (&self.stdin, self.broken.load(Ordering::SeqCst)) else {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        };
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        stdin
            .send(line)
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }

    /// The next message, waiting at most `wait`.
    pub(crate) fn receive(&self, wait: Duration) -> Result<FromServer, RecvTimeoutError> {
        match &self.messages {
            Some(messages) => messages.recv_timeout(wait),
            None => Err(RecvTimeoutError::Disconnected),
        }
    }

    /// Why the server is gone, as well as can be said: its exit status (once it has one) and
    /// the last line it wrote on stderr.
    pub(crate) fn gone(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_millis(200);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => break None,
            }
        };
        let mut why = match status.and_then(|s| s.code()) {
            Some(code) => format!("exited with status {code}"),
            None if status.is_some() => "was killed by a signal".to_owned(),
            None => "closed its stdout".to_owned(),
        };
        // The stderr thread may still be reading the last line: it ends with the server's
        // stderr (unless something the server left holds it open).
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.stderr.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let last = self
            .last_stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !last.is_empty() {
            why.push_str(": ");
            why.push_str(&crate::error::scrub(&last));
        }
        why
    }
}

impl Process {
    /// Tells the server to leave (its stdin closed), then makes it (SIGTERM, SIGKILL to its
    /// group) and reaps it; hands back its threads, to be joined once what it left outside its
    /// group (which may hold its pipes) is swept. Once: then nothing is left.
    pub(crate) fn stop(&mut self) -> Vec<JoinHandle<()>> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        // Closing stdin is how a stdio server is told to leave.
        drop(self.stdin.take());
        let id = self.child.id();
        let exited = |child: &mut Child, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                match child.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(None) => return false,
                    _ => return true,
                }
            }
        };
        if !exited(&mut self.child, GRACE) {
            crate::control::children::signal_group(id, false);
            if !exited(&mut self.child, GRACE) {
                crate::control::children::signal_group(id, true);
                let _ = self.child.wait();
            }
        }
        // What is left of its group (a child of its own holding the pipes) goes too.
        crate::control::children::signal_group(id, true);
        crate::control::reaper::release(id);
        // A reader blocked on a full queue wakes to find nobody listening.
        drop(self.messages.take());
        [self.writer.take(), self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let threads = self.stop();
        if !threads.is_empty() {
            // What it started outside its group came to us when its parent died.
            crate::control::reaper::sweep_all();
        }
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Writes each queued line to the server's stdin, until the queue is closed (then stdin is
/// closed, which tells a stdio server to leave) or a write fails.
fn write_stdin(mut stdin: ChildStdin, lines: &Receiver<Vec<u8>>, broken: &AtomicBool) {
    for line in lines {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            broken.store(true, Ordering::SeqCst);
            return;
        }
    }
}

fn read_stdout(stdout: impl std::io::Read, sender: &SyncSender<FromServer>) {
    let reader = BufReader::with_capacity(64 * 1024, stdout);
    let _ = rpc::read_messages(reader, MAX_MESSAGE, |message| {
        sender.send(FromServer::Message(message)).is_ok()
    });
    let _ = sender.send(FromServer::Closed);
}

/// Keeps the last line (at most 300 bytes of it); with `verbose`, shows each line as it comes.
fn read_stderr(stderr: impl std::io::Read, last: &Mutex<String>, verbose: Option<String>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a line is read in pieces of the buffer's size at most.
        match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        if let Some(name) = &verbose {
            eprintln!(
                "* mcp {name}: {}",
                crate::emit::terminal::visible(&crate::error::scrub(text))
            );
        }
        let mut kept = last.lock().unwrap_or_else(PoisonError::into_inner);
        kept.clear();
        let mut end = text.len().min(300);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        kept.push_str(&text[..end]);
    }
}
