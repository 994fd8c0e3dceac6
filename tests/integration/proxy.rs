//! Proxies: SOCKS4, SOCKS4a, SOCKS5 and SOCKS5h by `--proxy` and by the environment, NO_PROXY,
//! and a proxy that is set but unusable, which must be an error and never a direct connection.

use std::io;
use std::net::TcpListener;

use crate::server::{Server, hello_chunks, sse, unused_port};
use crate::socks::{Connect, SocksProxy, Target};
use crate::util::gptstream;

const HELLO: &str = "status: 0\n--- stdout\nHello, world!\n--- stderr\n";

fn port_of(server: &Server) -> u16 {
    let url = server.base_url();
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/v1");
    port.parse().unwrap()
}

fn ipv4(version: u8, port: u16) -> Connect {
    Connect {
        version,
        target: Target::Ip(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), port)),
    }
}

fn domain(version: u8, host: &str, port: u16) -> Connect {
    Connect {
        version,
        target: Target::Domain(host.to_owned(), port),
    }
}

/// A server address that must not be contacted: a listener that never accepts, checked after
/// the run for a queued connection.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Untouched {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        Untouched(listener)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port())
    }

    /// Called once the child has exited: a connection it made would be waiting in the backlog.
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("the server was contacted directly: {other:?}"),
        }
    }
}

#[test]
fn defect1_socks5_by_flag_carries_the_stream() {
    let server = Server::one(sse(&hello_chunks()));
    let proxy = SocksProxy::start();
    let out = gptstream()
        .server(&server)
        .args(["--proxy", &proxy.url("socks5"), "-q", "hi"])
        .run();
    assert_eq!(out.render(), HELLO);
    assert_eq!(proxy.connects(), [ipv4(5, port_of(&server))]);
}

/// Each proxy variable, each SOCKS version; `socks4a://` and `socks5h://` send the host name for
/// the proxy to resolve, `socks4://` and `socks5://` an address resolved here.
#[test]
fn defect1_socks_proxies_from_the_environment_carry_the_stream() {
    let cases = [
        ("ALL_PROXY", "socks5", "127.0.0.1"),
        ("all_proxy", "socks5", "127.0.0.1"),
        ("ALL_PROXY", "socks5h", "localhost"),
        ("HTTPS_PROXY", "socks4", "127.0.0.1"),
        ("https_proxy", "socks", "127.0.0.1"),
        ("HTTP_PROXY", "socks4a", "localhost"),
        ("http_proxy", "socks5h", "127.0.0.1"),
    ];
    for (variable, scheme, host) in cases {
        let server = Server::one(sse(&hello_chunks()));
        let port = port_of(&server);
        let proxy = SocksProxy::start();
        let out = gptstream()
            .env("OPENAI_BASE_URL", &format!("http://{host}:{port}/v1"))
            .env(variable, &proxy.url(scheme))
            .args(["-q", "hi"])
            .run();
        let case = format!("{variable}={scheme}:// to {host}");
        assert_eq!(out.render(), HELLO, "{case}");
        let version = if scheme.starts_with("socks4") { 4 } else { 5 };
        let expected = if host == "localhost" {
            domain(version, host, port)
        } else {
            ipv4(version, port)
        };
        assert_eq!(proxy.connects(), [expected], "{case}");
    }
}

/// The first proxy variable that is set and not empty decides; one that does not parse is an
/// error naming it (credentials blanked), not a reason to try the next one or to go direct.
#[test]
fn defect1_an_unparsable_proxy_variable_is_a_usage_error_and_nothing_is_contacted() {
    let proxy = SocksProxy::start();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("ALL_PROXY", "socks9://user:hunter2@127.0.0.1:1")],
            "bad ALL_PROXY socks9://***@127.0.0.1:1",
        ),
        (
            &[
                ("ALL_PROXY", ""),
                ("HTTPS_PROXY", "socks5://[oops"),
                ("HTTP_PROXY", &proxy.url("socks5")),
            ],
            "bad HTTPS_PROXY socks5://[oops",
        ),
        (
            &[("http_proxy", "socks5h://:hunter2@127.0.0.1:1080/ x")],
            "bad http_proxy socks5h://***@127.0.0.1:1080/ x",
        ),
    ];
    for (variables, message) in cases {
        let server = Untouched::new();
        let mut command = gptstream().env("OPENAI_BASE_URL", &server.base_url());
        for (name, value) in variables {
            command = command.env(name, value);
        }
        // If the proxy were skipped, a direct request would wait for an answer: not for long.
        let out = command
            .args(["--retries", "0", "--first-byte-timeout", "1", "hi"])
            .run();
        assert_eq!(
            out.render(),
            format!(
                "status: 2\n--- stdout\n\n--- stderr\ngptstream: {message}: invalid proxy url \
                 (expected SCHEME://HOST[:PORT], the scheme one of http, https, socks4, socks4a, \
                 socks5, socks5h)\n"
            ),
            "{variables:?}"
        );
        server.assert_untouched();
    }
    assert_eq!(proxy.connects(), []);
}

#[test]
fn defect1_an_unparsable_proxy_flag_does_not_show_its_password() {
    let out = gptstream()
        .args(["--proxy", "socks9://user:hunter2@127.0.0.1:1", "hi"])
        .env("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: bad --proxy socks9://***@127.0.0.1:1: \
         invalid proxy url (expected SCHEME://HOST[:PORT], the scheme one of http, https, socks4, \
         socks4a, socks5, socks5h)\n"
    );
}

/// A proxy that is down is a network error that names it, its password blanked, and the
/// server is not tried directly instead.
#[test]
fn defect1_a_proxy_that_refuses_connections_is_a_network_error_naming_it() {
    let dead = unused_port();
    let cases = [
        (
            "ALL_PROXY",
            format!("socks5h://127.0.0.1:{dead}"),
            format!("socks5h://127.0.0.1:{dead} (set by ALL_PROXY)"),
        ),
        (
            "--proxy",
            format!("socks5://user:hunter2@127.0.0.1:{dead}"),
            format!("socks5://***@127.0.0.1:{dead} (set by --proxy)"),
        ),
        (
            "HTTP_PROXY",
            format!("socks4://127.0.0.1:{dead}"),
            format!("socks4://127.0.0.1:{dead} (set by HTTP_PROXY)"),
        ),
    ];
    for (origin, url, shown) in cases {
        let server = Untouched::new();
        let command = gptstream().env("OPENAI_BASE_URL", &server.base_url());
        let command = if origin == "--proxy" {
            command.args(["--proxy", &url])
        } else {
            command.env(origin, &url)
        };
        let out = command
            .args(["--retries", "0", "--first-byte-timeout", "1", "hi"])
            .run();
        assert_eq!(
            out.render(),
            format!(
                "status: 4\n--- stdout\n\n--- stderr\ngptstream: cannot connect to 127.0.0.1:{} \
                 through the proxy {shown}: the proxy refused the connection (is it running?)\n",
                server.port()
            ),
        );
        server.assert_untouched();
    }
}

/// The proxy is up but cannot reach the server: its refusal is reported as the proxy's.
#[test]
fn defect1_a_proxy_that_cannot_reach_the_server_says_so() {
    let proxy = SocksProxy::start();
    let dead = unused_port();
    for scheme in ["socks5h", "socks4a"] {
        let out = gptstream()
            .env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{dead}/v1"))
            .env("ALL_PROXY", &proxy.url(scheme))
            .args(["--retries", "0", "--first-byte-timeout", "1", "hi"])
            .run();
        let reason = if scheme == "socks5h" {
            "connection refused"
        } else {
            "request rejected or failed"
        };
        assert_eq!(
            out.render(),
            format!(
                "status: 4\n--- stdout\n\n--- stderr\ngptstream: cannot connect to \
                 127.0.0.1:{dead} through the proxy {} (set by ALL_PROXY): the proxy answered: \
                 {reason}\n",
                proxy.url(scheme)
            )
        );
    }
    assert_eq!(proxy.connects(), [ipv4(5, dead), ipv4(4, dead)]);
}

/// NO_PROXY (or no_proxy) decides per host: a listed host is reached directly, another one
/// through the proxy.
#[test]
fn defect1_no_proxy_bypasses_the_proxy_for_the_hosts_it_lists() {
    for (variable, list, bypassed) in [
        ("NO_PROXY", "example.com,127.0.0.1", true),
        ("no_proxy", "127.0.0.1", true),
        ("NO_PROXY", "example.com,localhost", false),
    ] {
        let server = Server::one(sse(&hello_chunks()));
        let proxy = SocksProxy::start();
        let out = gptstream()
            .server(&server)
            .env("ALL_PROXY", &proxy.url("socks5"))
            .env(variable, list)
            .args(["-q", "hi"])
            .run();
        assert_eq!(out.render(), HELLO, "{variable}={list}");
        let expected = if bypassed {
            vec![]
        } else {
            vec![ipv4(5, port_of(&server))]
        };
        assert_eq!(proxy.connects(), expected, "{variable}={list}");
    }
}
