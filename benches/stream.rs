//! The benchmark of issue #6: gptstream against `curl -sN` on the same local stream, interleaved
//! in one run, plus the decoder's throughput in isolation. Run it with `benches/run.sh`.
//!
//! Everything that needs a clock runs in this one process: the OpenAI-compatible server is a
//! thread here, so the instant it writes a delta and the instant a reader sees that delta on the
//! client's stdout are read from the same monotonic clock.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gptstream::decode::chunk::Interpreter;
use gptstream::decode::sse;
use gptstream::event::{Event, Sink};

/// How the server writes the body.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// One HTTP chunk (one `write`) per event, as api.openai.com sends.
    PerEvent,
    /// The same bytes in 64 KiB writes.
    Coalesced,
}

/// What the server sends for the next request.
#[derive(Clone)]
struct Script {
    events: Arc<Vec<Vec<u8>>>,
    framing: Framing,
    /// A pause before each content event (the latency scenario); the send instants are recorded.
    pace: Option<Duration>,
}

struct Server {
    port: u16,
    script: Arc<Mutex<Option<Script>>>,
    sent_at: Arc<Mutex<Vec<Instant>>>,
}

fn chunk_json(content: &str) -> String {
    let content = serde_json::to_string(content).expect("a string");
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{content}}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// `n` content events, the finish, usage and `[DONE]`; and the text they carry.
fn stream(n: usize, token: impl Fn(usize) -> String) -> (Vec<Vec<u8>>, String) {
    let mut events = Vec::with_capacity(n + 3);
    let mut text = String::new();
    for i in 0..n {
        let t = token(i);
        events.push(chunk_json(&t).into_bytes());
        text.push_str(&t);
    }
    events.push(b"data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_vec());
    events.push(format!("data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n", n + 5).into_bytes());
    events.push(b"data: [DONE]\n\n".to_vec());
    (events, text)
}

/// Token-like deltas: a word and a space, as models stream them.
fn word(i: usize) -> String {
    format!("tok{} ", i % 1000)
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        let script: Arc<Mutex<Option<Script>>> = Arc::default();
        let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (s, t) = (Arc::clone(&script), Arc::clone(&sent_at));
        thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let script = s.lock().expect("script").clone();
                if let Some(script) = script {
                    let _ = serve(connection, &script, &t);
                }
            }
        });
        Server {
            port,
            script,
            sent_at,
        }
    }

    fn set(&self, script: Script) {
        *self.script.lock().expect("script") = Some(script);
        self.sent_at.lock().expect("sent").clear();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn serve(stream: TcpStream, script: &Script, sent_at: &Mutex<Vec<Instant>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    match script.framing {
        Framing::PerEvent => {
            let mut frame = Vec::with_capacity(512);
            let content_events = script.events.len() - 3;
            for (i, event) in script.events.iter().enumerate() {
                if let Some(pace) = script.pace {
                    thread::sleep(pace);
                }
                frame.clear();
                frame.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
                frame.extend_from_slice(event);
                frame.extend_from_slice(b"\r\n");
                if script.pace.is_some() && i < content_events {
                    sent_at.lock().expect("sent").push(Instant::now());
                }
                out.write_all(&frame)?;
            }
        }
        Framing::Coalesced => {
            let all: Vec<u8> = script.events.concat();
            for piece in all.chunks(64 * 1024) {
                out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                out.write_all(piece)?;
                out.write_all(b"\r\n")?;
            }
        }
    }
    out.write_all(b"0\r\n\r\n")?;
    // Let the client close first, so it sees a clean end.
    let _ = out.read(&mut [0u8; 1]);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Client {
    Gptstream,
    Curl,
}

const REQUEST: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;

fn command(client: Client, gptstream: &str, url: &str) -> Command {
    match client {
        Client::Gptstream => {
            let mut c = Command::new(gptstream);
            c.env_clear()
                .env("OPENAI_BASE_URL", url)
                .args(["-q", "-m", "bench", "hi"]);
            c
        }
        Client::Curl => {
            let mut c = Command::new("curl");
            c.args([
                "-sN",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                REQUEST,
            ])
            .arg(format!("{url}/chat/completions"));
            c
        }
    }
}

/// One run: wall time, peak RSS (KiB, from /proc while it runs) and the stdout bytes.
struct Run {
    wall: Duration,
    peak_kib: u64,
    stdout: Vec<u8>,
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(command: Command, watch_memory: bool) -> Run {
    run_with(command, Stdio::null(), watch_memory)
}

fn run_with(mut command: Command, stdin: Stdio, watch_memory: bool) -> Run {
    let started = Instant::now();
    let mut child: Child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the client");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut peak = 0;
    if watch_memory {
        loop {
            if let Some(kib) = peak_kib(pid) {
                peak = peak.max(kib);
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            thread::sleep(Duration::from_micros(500));
        }
    }
    let status = child.wait().expect("wait");
    let wall = started.elapsed();
    assert!(status.success(), "{command:?} failed: {status}");
    Run {
        wall,
        peak_kib: peak,
        stdout: reader.join().expect("reader"),
    }
}

/// CPU time (user + system) of all the children this process has waited for, from /proc.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 16 and 17 of the whole line (cutime, cstime) are 13 and 14 after the name.
    let ticks: u64 =
        fields[13].parse::<u64>().unwrap_or(0) + fields[14].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

/// Checks the bytes: gptstream prints exactly the text; curl prints exactly the body.
fn verify(client: Client, stdout: &[u8], text: &str, events: &[Vec<u8>]) {
    match client {
        Client::Gptstream => assert!(
            stdout == text.as_bytes(),
            "gptstream printed the wrong text"
        ),
        Client::Curl => assert!(stdout == events.concat(), "curl printed the wrong body"),
    }
}

struct Row {
    scenario: String,
    metric: &'static str,
    ours: f64,
    curl: f64,
}

fn scenario_wall(
    server: &Server,
    bin: &str,
    name: &str,
    n: usize,
    framing: Framing,
    reps: usize,
    rows: &mut Vec<Row>,
) {
    let (events, text) = stream(n, word);
    let events = Arc::new(events);
    server.set(Script {
        events: Arc::clone(&events),
        framing,
        pace: None,
    });
    let mut walls = [Vec::new(), Vec::new()];
    let mut cpu = [Duration::ZERO; 2];
    let mut peak = [0u64; 2];
    for _ in 0..reps {
        for (k, client) in [Client::Gptstream, Client::Curl].into_iter().enumerate() {
            let before = children_cpu();
            // Peak memory for the long streams and the 1k one, to show it flat from 1k to 1M.
            let r = run(command(client, bin, &server.url()), n >= 1_000);
            cpu[k] += children_cpu() - before;
            verify(client, &r.stdout, &text, &events);
            walls[k].push(r.wall.as_secs_f64() * 1000.0);
            peak[k] = peak[k].max(r.peak_kib);
        }
    }
    let [ours, curl] = walls;
    rows.push(Row {
        scenario: name.into(),
        metric: "wall ms (median)",
        ours: median(ours),
        curl: median(curl),
    });
    if n >= 1_000 {
        let per_run = |d: Duration| d.as_secs_f64() * 1000.0 / reps as f64;
        rows.push(Row {
            scenario: name.into(),
            metric: "user+sys ms (mean)",
            ours: per_run(cpu[0]),
            curl: per_run(cpu[1]),
        });
        rows.push(Row {
            scenario: name.into(),
            metric: "peak RSS MiB",
            ours: peak[0] as f64 / 1024.0,
            curl: peak[1] as f64 / 1024.0,
        });
    }
}

/// Peak memory for a big prompt on stdin (`< file`): gptstream reads it and sends it as a JSON
/// request; curl sends the same request, already JSON, from a file (`--data-binary @file`, which
/// curl holds in memory whole). What gptstream costs beyond the prompt itself is the ratio.
fn scenario_big_prompt(server: &Server, bin: &str, mib: usize, rows: &mut Vec<Row>) {
    let (events, text) = stream(10, word);
    let events = Arc::new(events);
    server.set(Script {
        events: Arc::clone(&events),
        framing: Framing::PerEvent,
        pace: None,
    });
    let dir = std::env::temp_dir().join(format!("gptstream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    // Lines of text, so the JSON writer has newlines to escape, as with real material.
    let line = "the quick brown fox jumps over the lazy dog, again and again and again\n";
    let prompt = line.repeat(mib * 1024 * 1024 / line.len());
    let prompt_path = dir.join("prompt.txt");
    std::fs::write(&prompt_path, &prompt).expect("write the prompt");
    let request = serde_json::json!({
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    drop(prompt);
    let request_path = dir.join("request.json");
    std::fs::write(&request_path, request.to_string()).expect("write the request");
    drop(request);
    let mut peak = [0u64; 2];
    for _ in 0..2 {
        for (k, client) in [Client::Gptstream, Client::Curl].into_iter().enumerate() {
            let command = match client {
                // The prompt is stdin alone.
                Client::Gptstream => {
                    let mut c = Command::new(bin);
                    c.env_clear()
                        .env("OPENAI_BASE_URL", server.url())
                        .args(["-q", "-m", "bench"]);
                    c
                }
                Client::Curl => {
                    let mut c = Command::new("curl");
                    c.args(["-sN", "-X", "POST", "-H", "Content-Type: application/json"])
                        .arg("--data-binary")
                        .arg(format!("@{}", request_path.display()))
                        .arg(format!("{}/chat/completions", server.url()));
                    c
                }
            };
            let stdin = std::fs::File::open(&prompt_path).expect("open the prompt");
            let r = run_with(command, stdin.into(), true);
            verify(client, &r.stdout, &text, &events);
            peak[k] = peak[k].max(r.peak_kib);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows.push(Row {
        scenario: format!("{mib} MiB prompt on stdin"),
        metric: "peak RSS MiB",
        ours: peak[0] as f64 / 1024.0,
        curl: peak[1] as f64 / 1024.0,
    });
}

/// Reads `pipe`, noting when each `@i;` token first appears.
fn watch_tokens(mut pipe: impl Read, n: usize) -> Vec<Option<Instant>> {
    let mut seen = vec![None; n];
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut next = 0;
    loop {
        let got = match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return seen,
            Ok(got) => got,
        };
        let now = Instant::now();
        buffer.extend_from_slice(&chunk[..got]);
        // Tokens arrive in order: look for the next ones only.
        while next < n {
            let token = format!("@{next};");
            match find(&buffer, token.as_bytes()) {
                Some(at) => {
                    seen[next] = Some(now);
                    buffer.drain(..at + token.len());
                    next += 1;
                }
                None => break,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Added latency: per delta, the time from the server's write to its appearance on the client's
/// stdout, through a pipe or through a pty (util-linux `script`, for both clients alike).
fn scenario_latency(server: &Server, bin: &str, pty: bool, rows: &mut Vec<Row>) {
    const N: usize = 300;
    let (events, _) = stream(N, |i| format!("@{i};"));
    let events = Arc::new(events);
    let mut latencies = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (k, client) in [Client::Gptstream, Client::Curl].into_iter().enumerate() {
            server.set(Script {
                events: Arc::clone(&events),
                framing: Framing::PerEvent,
                pace: Some(Duration::from_millis(1)),
            });
            let inner = command(client, bin, &server.url());
            let mut command = if pty {
                let line = std::iter::once(inner.get_program())
                    .chain(inner.get_args())
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let envs: Vec<String> = inner
                    .get_envs()
                    .filter_map(|(k, v)| {
                        Some(format!(
                            "{}={}",
                            k.to_string_lossy(),
                            shell_quote(&v?.to_string_lossy())
                        ))
                    })
                    .collect();
                let mut c = Command::new("script");
                c.args([
                    "-q",
                    "-f",
                    "-e",
                    "-c",
                    &format!("env -i {} {line}", envs.join(" ")),
                    "/dev/null",
                ]);
                c
            } else {
                inner
            };
            let mut child = command
                .stdin(if pty { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            let _keep_stdin_open = child.stdin.take();
            let stdout = child.stdout.take().expect("stdout");
            let seen = watch_tokens(stdout, N);
            let _ = child.wait();
            let sent = server.sent_at.lock().expect("sent").clone();
            assert_eq!(sent.len(), N, "the server sent every delta");
            for (i, arrival) in seen.iter().enumerate() {
                let arrival =
                    arrival.unwrap_or_else(|| panic!("{client:?} never showed delta {i}"));
                latencies[k].push(arrival.duration_since(sent[i]).as_secs_f64() * 1000.0);
            }
        }
    }
    let via = if pty { "pty" } else { "pipe" };
    let [mut ours, mut curl] = latencies;
    for (metric, p) in [("latency ms p50", 0.5), ("latency ms p99", 0.99)] {
        rows.push(Row {
            scenario: format!("300 deltas 1 ms apart, via {via}"),
            metric,
            ours: percentile(&mut ours, p),
            curl: percentile(&mut curl, p),
        });
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct NullSink(usize);

impl Sink for NullSink {
    fn emit(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        if let Event::Content { delta, .. } = event {
            self.0 += delta.len();
        }
        Ok(())
    }
}

/// The SSE decoder and chunk interpreter on an in-memory body, in 64 KiB reads.
fn decoder_throughput() -> (f64, f64) {
    const N: usize = 50_000;
    let (events, text) = stream(N, word);
    let body = events.concat();
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let mut decoder = sse::Decoder::default();
        let mut interpreter = Interpreter::new(started);
        let mut sink = NullSink(0);
        for piece in body.chunks(64 * 1024) {
            let flow = decoder
                .feed(piece, |event| interpreter.on_sse(event, &mut sink))
                .expect("decodes");
            if flow == ControlFlow::Break(()) {
                break;
            }
        }
        interpreter.finish(&mut sink).expect("finishes");
        assert_eq!(sink.0, text.len(), "every byte of text came through");
        best = best.min(started.elapsed());
    }
    let secs = best.as_secs_f64();
    (body.len() as f64 / secs / 1e6, N as f64 / secs)
}

fn main() {
    let bin = std::env::var("GPTSTREAM_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gptstream").to_owned()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "build it first: cargo build --release ({bin})"
    );
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let server = Server::start();
    let mut rows = Vec::new();
    eprintln!("short answers...");
    scenario_wall(
        &server,
        &bin,
        "short answer (10 chunks)",
        10,
        Framing::PerEvent,
        if quick { 20 } else { 200 },
        &mut rows,
    );
    eprintln!("long streams...");
    let reps = if quick { 3 } else { 10 };
    scenario_wall(
        &server,
        &bin,
        "50,000 chunks, one per HTTP chunk",
        50_000,
        Framing::PerEvent,
        reps,
        &mut rows,
    );
    scenario_wall(
        &server,
        &bin,
        "50,000 chunks, coalesced",
        50_000,
        Framing::Coalesced,
        reps,
        &mut rows,
    );
    scenario_wall(
        &server,
        &bin,
        "1,000 chunks, coalesced",
        1_000,
        Framing::Coalesced,
        reps,
        &mut rows,
    );
    scenario_wall(
        &server,
        &bin,
        "1,000,000 chunks, coalesced",
        1_000_000,
        Framing::Coalesced,
        if quick { 1 } else { 3 },
        &mut rows,
    );
    eprintln!("a big prompt...");
    scenario_big_prompt(&server, &bin, 60, &mut rows);
    eprintln!("latency...");
    scenario_latency(&server, &bin, false, &mut rows);
    scenario_latency(&server, &bin, true, &mut rows);
    let (mb_s, chunks_s) = decoder_throughput();

    println!("| scenario | metric | gptstream | curl -sN | ratio or difference |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for row in &rows {
        let compare = if row.metric.starts_with("latency") {
            format!("{:+.3} ms", row.ours - row.curl)
        } else {
            format!("{:.2}x", row.ours / row.curl)
        };
        println!(
            "| {} | {} | {:.3} | {:.3} | {compare} |",
            row.scenario, row.metric, row.ours, row.curl
        );
    }
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!();
    println!(
        "decoder + interpreter, 50,000 chunks in memory: {mb_s:.0} MB/s, {chunks_s:.0} chunks/s"
    );
    println!(
        "release binary: {size} bytes ({:.2} MiB)",
        size as f64 / 1024.0 / 1024.0
    );
}
