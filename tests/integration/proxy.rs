//! Proxies: SOCKS4, SOCKS4a, SOCKS5 and SOCKS5h by `--proxy` and by the environment, NO_PROXY.

use crate::server::{Server, hello_chunks, sse};
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

#[test]
fn socks5_by_flag_carries_the_stream() {
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
fn socks_proxies_from_the_environment_carry_the_stream() {
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

/// NO_PROXY (or no_proxy) decides per host: a listed host is reached directly, another one
/// through the proxy.
#[test]
fn no_proxy_bypasses_the_proxy_for_the_hosts_it_lists() {
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
