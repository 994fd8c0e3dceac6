//! What `--mcp` costs at start (issue #22): the time from starting gptstream to the first byte
//! of the model's answer on its stdout, without MCP and with one MCP server, the servers being a
//! 2025-11-25 one (which answers the era probe with an error, then is initialized) and a
//! 2026-07-28 one (discover only), both the Python fake of the tests over stdio. With
//! `GPTSTREAM_BENCH_MCP_COMMAND` (a command) and `GPTSTREAM_BENCH_MCP_URL` (a Streamable HTTP
//! URL), real servers get a row each too (`scripts/interop/run` builds some: the SDK's).
//!
//! The model is a thread here, answering every request at once over plain HTTP on 127.0.0.1.
//! Runs are interleaved, figures are medians, and each is given as a ratio to the run without
//! MCP measured in the same loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ANSWER: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

/// A model that answers every request with [`ANSWER`]; its port.
fn model() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_ascii_lowercase();
                    if let Some(value) = line.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
            });
        }
    });
    port
}

/// Seconds from the spawn to the first byte on stdout.
fn first_byte(bin: &str, port: u16, mcp: Option<&str>) -> f64 {
    let mut command = Command::new(bin);
    command
        .env("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("OPENAI_API_KEY", "sk-bench")
        .env_remove("GPTSTREAM_CONFIG")
        .args(["-q", "--no-stdin"]);
    if let Some(mcp) = mcp {
        command.args(["--mcp", mcp]);
    }
    command
        .arg("hi")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = command.spawn().expect("gptstream starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    let got = stdout.read(&mut byte).unwrap_or(0);
    let elapsed = start.elapsed().as_secs_f64();
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let status = child.wait().expect("gptstream ends");
    assert!(got == 1 && status.success(), "{mcp:?}: {status}");
    elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let bin = std::env::var("GPTSTREAM_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gptstream").to_owned()
    });
    let runs: usize = if std::env::var_os("BENCH_QUICK").is_some() {
        5
    } else {
        21
    };
    let fake = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp/fake_server.py"
    );
    let mut cases: Vec<(String, Option<String>)> = vec![
        ("no --mcp".into(), None),
        (
            "fake 2025-11-25 server, stdio".into(),
            Some(format!("python3 {fake} ok")),
        ),
        (
            "fake 2026-07-28 server, stdio".into(),
            Some(format!("python3 {fake} modern")),
        ),
        ("python3 -c pass (the interpreter alone)".into(), None),
    ];
    if let Ok(command) = std::env::var("GPTSTREAM_BENCH_MCP_COMMAND") {
        cases.push((format!("real server, stdio: {command}"), Some(command)));
    }
    if let Ok(url) = std::env::var("GPTSTREAM_BENCH_MCP_URL") {
        cases.push((format!("real server, HTTP: {url}"), Some(url)));
    }
    let port = model();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..runs {
        for (i, (name, mcp)) in cases.iter().enumerate() {
            let seconds = if name.starts_with("python3 -c") {
                // What a Python server costs before it speaks: the floor under the fake's rows.
                let start = Instant::now();
                let status = Command::new("python3").args(["-c", "pass"]).status();
                assert!(status.is_ok_and(|s| s.success()));
                start.elapsed().as_secs_f64()
            } else {
                first_byte(&bin, port, mcp.as_deref())
            };
            times[i].push(seconds);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let baseline = median(times[0].clone());
    println!("time to the first byte of the answer, median of {runs} interleaved runs");
    for ((name, _), samples) in cases.iter().zip(times) {
        let m = median(samples);
        println!(
            "  {name:<60} {:>8.1} ms  {:>5.2}x no --mcp",
            m * 1000.0,
            m / baseline
        );
    }
}
