//! HTTPS on 127.0.0.1 with a certificate from a private CA (`tests/fixtures/tls`): refused by
//! default with a hint, trusted through `--cacert` or `SSL_CERT_FILE`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::{Server, hello_chunks, sse};
use crate::util::{Scratch, gptstream};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Serves one HTTPS connection on 127.0.0.1 with the hello stream; returns its base URL.
fn https_server() -> String {
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/v1",
        listener.local_addr().unwrap().port()
    );
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let connection = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        // A failed handshake (the client does not trust us) ends here.
        let mut reader = BufReader::new(&mut tls);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{}",
            hello_chunks().concat()
        );
        let _ = tls.write_all(answer.as_bytes());
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    url
}

#[test]
fn an_unknown_ca_is_a_tls_error_that_says_how_to_fix_it() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", &https_server())
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    assert_eq!(out.stdout(), "");
    assert!(
        out.stderr
            .starts_with("gptstream: TLS error talking to 127.0.0.1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--cacert PATH or SSL_CERT_FILE"),
        "{}",
        out.stderr
    );
}

#[test]
fn cacert_and_ssl_cert_file_trust_a_private_ca() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", &https_server())
        .args(["--cacert", &fixture("ca.pem"), "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "Hello, world!");

    let out = gptstream()
        .env("OPENAI_BASE_URL", &https_server())
        .env("SSL_CERT_FILE", &fixture("ca.pem"))
        .args(["hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "Hello, world!");
}

#[test]
fn a_cacert_file_without_certificates_is_a_usage_error() {
    let scratch = Scratch::new("cacert");
    let empty = scratch.file("empty.pem", "not a certificate\n");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "https://127.0.0.1:9/v1")
        .args(["--cacert", &empty, "hi"])
        .run();
    assert_eq!(
        out.render(),
        format!(
            "status: 2\n--- stdout\n\n--- stderr\ngptstream: --cacert {empty} holds no PEM certificate\n"
        )
    );
}

#[test]
fn cacert_is_not_read_for_a_plain_http_server() {
    // A system-wide SSL_CERT_FILE costs memory to parse; an http:// server does not need it.
    let server = Server::one(sse(&hello_chunks()));
    let scratch = Scratch::new("cacert-http");
    let empty = scratch.file("empty.pem", "not a certificate\n");
    let out = gptstream()
        .server(&server)
        .env("SSL_CERT_FILE", &empty)
        .args(["-q", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world!\n--- stderr\n"
    );
}
