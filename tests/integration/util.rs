//! Running the real binary as a user would: a clean environment, stdin written from a thread,
//! and status, stdout and stderr rendered together so a failing test shows all three.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::server::PATIENCE;

/// Runs `shell_command` (`sh -c`) on a real pseudo-terminal (util-linux `script`), stdout and
/// stderr both the terminal, in a clean environment (`PATH`, `TERM=xterm`); what the terminal
/// was sent comes back as `stdout`.
pub fn on_terminal(shell_command: &str) -> std::process::Output {
    Command::new("script")
        .args(["-q", "-f", "-e", "-c", shell_command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run util-linux script (bsdutils)")
}

pub struct Gptstream {
    command: Command,
    stdin: Option<Vec<u8>>,
}

/// The binary under test: this build's, or the one `GPTSTREAM_TEST_BIN` names (to run new
/// tests against an older build and watch them fail).
pub fn binary() -> String {
    std::env::var("GPTSTREAM_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gptstream").to_owned())
}

/// A `gptstream` command with an empty environment (no key, no proxy, no base URL leaks in).
pub fn gptstream() -> Gptstream {
    let mut command = Command::new(binary());
    command.env_clear();
    Gptstream {
        command,
        stdin: None,
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Status, stdout and stderr as one string, for comparing in one assertion. Timings in the
    /// summary line read `*` (see [`timeless`]).
    pub fn render(&self) -> String {
        format!(
            "status: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            timeless(&self.stderr)
        )
    }

    /// The stdout lines parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
            .collect()
    }
}

/// Replaces the values of the summary's timing fields (`ttft_ms=12.3` ...) with `*`, so a test
/// can compare the rest of stderr exactly. `tokens_per_second` is left out: whether it is there
/// depends on how many reads the stream took, which a test of something else does not fix
/// (`compat5_...` pins it).
pub fn timeless(stderr: &str) -> String {
    let fields = ["ttft_ms=", "duration_ms="];
    let lines: Vec<String> = stderr
        .split('\n')
        .map(|line| {
            line.split(' ')
                .filter(|word| !word.starts_with("tokens_per_second="))
                .map(|word| match fields.iter().find(|f| word.starts_with(*f)) {
                    Some(field) => format!("{field}*"),
                    None => word.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.join("\n")
}

impl Gptstream {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn arg(self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.args([arg])
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &str) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Points the binary at a test server.
    pub fn server(self, server: &crate::server::Server) -> Self {
        self.env("OPENAI_BASE_URL", &server.base_url())
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn spawn(mut self) -> Child {
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("spawn gptstream");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().unwrap();
            // A thread, so a child that does not read stdin cannot deadlock the test.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        child
    }

    pub fn run(self) -> Output {
        let child = self.spawn();
        finish(child)
    }
}

/// Waits for a child (at most [`PATIENCE`], then kills it and fails) and collects its output.
pub fn finish(child: Child) -> Output {
    finish_measuring(child).0
}

/// The child's peak resident memory so far, in KiB (`VmHWM`), while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Like [`finish`], also returning the highest peak RSS (KiB) seen while the child ran.
pub fn finish_measuring(mut child: Child) -> (Output, u64) {
    let pid = child.id();
    let mut peak = 0;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gptstream did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(1));
    };
    let collect = |rx: Option<Receiver<Vec<u8>>>| -> Vec<u8> {
        rx.map(|rx| rx.iter().flatten().collect())
            .unwrap_or_default()
    };
    let output = Output {
        code: status.code().unwrap_or(-1),
        stdout: collect(stdout),
        stderr: String::from_utf8_lossy(&collect(stderr)).into_owned(),
    };
    (output, peak)
}

/// Reads a pipe on a thread and sends each read's bytes as they come, so a test can watch
/// output appear while the child is still running.
pub fn drain(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Collects bytes from `rx` until they are exactly `expected`; fails if more, other, or nothing
/// arrives in time.
pub fn expect_output(rx: &Receiver<Vec<u8>>, expected: &[u8]) {
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => got.extend(bytes),
            Err(_) => break,
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "stdout so far"
    );
}

/// Collects bytes from `rx` until they contain `needle`; fails if it does not arrive in time.
pub fn wait_for(rx: &Receiver<Vec<u8>>, needle: &str) -> String {
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => got.extend(bytes),
            Err(_) => panic!(
                "{needle:?} never arrived; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A scratch directory for one test, removed when dropped.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("gptstream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
