//! Connection reuse over TLS on 127.0.0.1 (issue #12): the time each follow-up request of a
//! session costs when the connection is kept alive, against the same server closing it after
//! every answer (`Connection: close`, which costs what every request cost before one agent
//! served a whole session: a new TCP connection and a new TLS handshake).
//!
//! A follow-up's cost is measured as (time of a chat of N+1 turns - time of a chat of 1 turn) / N,
//! so start-up and the first connection cancel out. Everything runs in this one process and one
//! run, interleaved; figures are medians. `GPTSTREAM_BEFORE_BIN` adds a row for an older build.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

const ANSWER: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

struct Server {
    port: u16,
    close: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Server {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(fixture("server.pem"))
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let close = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (c, n) = (Arc::clone(&close), Arc::clone(&connections));
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                let (config, close) = (Arc::clone(&config), c.load(Ordering::SeqCst));
                thread::spawn(move || {
                    let _ = tcp.set_nodelay(true);
                    let connection = rustls::ServerConnection::new(config).expect("tls");
                    let _ = serve(rustls::StreamOwned::new(connection, tcp), close);
                });
            }
        });
        Server {
            port,
            close,
            connections,
        }
    }
}

/// Answers every request on the connection with a one-delta stream, until the client closes
/// it, or after the first answer when `close`.
fn serve(mut tls: impl Read + Write, close: bool) -> std::io::Result<()> {
    loop {
        let mut reader = BufReader::new(&mut tls);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{connection}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{ANSWER}\r\n0\r\n\r\n",
            ANSWER.len()
        );
        tls.write_all(response.as_bytes())?;
        tls.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// One chat of `turns` lines over a pipe; its wall time.
fn chat(bin: &str, port: u16, turns: usize) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("OPENAI_BASE_URL", format!("https://127.0.0.1:{port}/v1"))
        .args([
            "--chat",
            "-q",
            "--cacert",
            &fixture("ca.pem"),
            "-m",
            "bench",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gptstream");
    let lines = "hi\n".repeat(turns);
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = thread::spawn(move || stdin.write_all(lines.as_bytes()));
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let status = child.wait().expect("wait");
    let _ = writer.join();
    let wall = started.elapsed();
    assert!(status.success(), "gptstream failed");
    assert_eq!(out, "ok\n".repeat(turns), "every turn answered");
    wall
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let bin = std::env::var("GPTSTREAM_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gptstream").to_owned()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "build it first: cargo build --release ({bin})"
    );
    let before = std::env::var("GPTSTREAM_BEFORE_BIN").ok();
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (reps, follow_ups) = if quick { (3, 10) } else { (15, 40) };
    let server = Server::start();
    // (label, binary, server closes after each answer)
    let mut cases = vec![
        ("this build, connection kept alive", bin.clone(), false),
        (
            "this build, server closes it (Connection: close)",
            bin.clone(),
            true,
        ),
    ];
    if let Some(before) = &before {
        cases.push((
            "GPTSTREAM_BEFORE_BIN, connection kept alive",
            before.clone(),
            false,
        ));
    }
    let mut per_follow_up: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut connections: Vec<usize> = vec![0; cases.len()];
    for _ in 0..reps {
        for (i, (_, bin, close)) in cases.iter().enumerate() {
            server.close.store(*close, Ordering::SeqCst);
            let one = chat(bin, server.port, 1);
            let opened = server.connections.load(Ordering::SeqCst);
            let many = chat(bin, server.port, follow_ups + 1);
            connections[i] = server.connections.load(Ordering::SeqCst) - opened;
            let cost = (many.as_secs_f64() - one.as_secs_f64()) / follow_ups as f64;
            per_follow_up[i].push(cost * 1000.0);
        }
    }
    let baseline = median(per_follow_up[1].clone());
    println!(
        "follow-up requests over TLS on 127.0.0.1 ({follow_ups} follow-ups, median of {reps} runs)"
    );
    println!();
    println!(
        "| client | connections for {} requests | ms per follow-up | vs. a new connection each |",
        follow_ups + 1
    );
    println!("| --- | ---: | ---: | ---: |");
    for (i, (label, _, _)) in cases.iter().enumerate() {
        let ms = median(per_follow_up[i].clone());
        println!(
            "| {label} | {} | {ms:.3} | {:.2}x |",
            connections[i],
            ms / baseline
        );
    }
}
