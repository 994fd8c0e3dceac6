//! Which proxy a request goes through, and how a failure through it is named.
//!
//! `--proxy` wins; otherwise the proxy variables are read in ureq's order, the first one set and
//! not empty decides, and NO_PROXY lists the hosts reached directly. A proxy that is set but
//! unusable is an error, never a quiet direct connection: ureq's own `Proxy::try_from_env()`
//! skips a value it cannot parse and tries the next variable, or none. A proxy's credentials
//! never reach a message: they are shown as `***`.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::time::Duration;

use ureq::ProxyProtocol;

use crate::error::{NetworkError, UsageError, scrub};

/// The proxy variables, in the order ureq reads them.
pub(crate) const ENV_VARS: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// What a proxy value must look like, for the error that says it does not.
const EXPECTED: &str = "expected SCHEME://HOST[:PORT], the scheme one of http, https, socks4, \
                        socks4a, socks5, socks5h";

/// The proxy of a run, and where it was set, so that a failure can name both.
#[derive(Debug, Clone)]
pub(crate) struct ProxyInfo {
    proxy: ureq::Proxy,
    /// `--proxy`, or the variable that set it.
    origin: &'static str,
}

/// The proxy for this run: `--proxy`, else the environment (with NO_PROXY); `None` for a
/// direct connection. A value that does not parse is a usage error naming where it was set.
///
/// `flag_origin` says where an explicit value came from: `--proxy`, or the config file.
pub(crate) fn resolve(
    flag: Option<&str>,
    flag_origin: &'static str,
) -> anyhow::Result<Option<ProxyInfo>> {
    let Some((origin, value)) = choose(flag, std::env::var_os) else {
        return Ok(None);
    };
    let value = value.into_string().map_err(|value| {
        let shown = redacted(&value.to_string_lossy());
        UsageError(format!("bad {origin} {shown}: not UTF-8"))
    })?;
    let origin = if flag.is_some() { flag_origin } else { origin };
    let proxy = parse(&value, origin)?;
    if flag.is_some() && flag_origin == "--proxy" {
        return Ok(Some(ProxyInfo { proxy, origin }));
    }
    if flag.is_some() {
        // The config file's proxy is a setting like the variables, so NO_PROXY applies to it.
        let proxy = match std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")) {
            Ok(hosts) => with_no_proxy(&proxy, &hosts)
                .map_err(|err| UsageError(format!("bad {origin} {}: {err}", redacted(&value))))?,
            Err(_) => proxy,
        };
        return Ok(Some(ProxyInfo { proxy, origin }));
    }
    // ureq's reading adds NO_PROXY, as ureq matches it. It takes the first variable that
    // parses, which is this one: those before it are unset or empty, and empty does not parse.
    match ureq::Proxy::try_from_env() {
        Some(from_env) if from_env.uri() == proxy.uri() => Ok(Some(ProxyInfo {
            proxy: from_env,
            origin,
        })),
        _ => Err(anyhow::anyhow!(
            "the proxy variables changed while they were read"
        )),
    }
}

/// `proxy`, bypassed for the hosts of a NO_PROXY list.
fn with_no_proxy(proxy: &ureq::Proxy, hosts: &str) -> Result<ureq::Proxy, ureq::Error> {
    let mut builder = ureq::Proxy::builder(proxy.protocol())
        .host(proxy.host())
        .port(proxy.port())
        .resolve_target(proxy.resolve_target());
    if let Some(username) = proxy.username() {
        builder = builder.username(username);
    }
    if let Some(password) = proxy.password() {
        builder = builder.password(password);
    }
    // Split as ureq splits the variable for the variables' proxies, so both read it alike.
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        builder = builder.no_proxy(host);
    }
    builder.build()
}

/// The proxy value in force, unparsed: `--proxy`, else the first proxy variable set and not
/// empty. For decisions made before the proxy is resolved (whether TLS will be needed).
pub(crate) fn setting(flag: Option<&str>) -> Option<String> {
    choose(flag, std::env::var_os).map(|(_, value)| value.to_string_lossy().into_owned())
}

/// `--proxy`, else the first variable of [`ENV_VARS`] that is set and not empty.
fn choose(
    flag: Option<&str>,
    var: impl Fn(&'static str) -> Option<OsString>,
) -> Option<(&'static str, OsString)> {
    if let Some(flag) = flag {
        // An empty one means no proxy at all, as curl's `--proxy ''` does.
        return (!flag.is_empty()).then(|| ("--proxy", flag.into()));
    }
    ENV_VARS.into_iter().find_map(|name| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(|v| (name, v))
    })
}

pub(crate) fn parse(value: &str, origin: &str) -> anyhow::Result<ureq::Proxy> {
    ureq::Proxy::new(value).map_err(|err| {
        UsageError(format!(
            "bad {origin} {}: {err} ({EXPECTED})",
            redacted(value)
        ))
        .into()
    })
}

/// A proxy value as it may be shown: whatever precedes the last `@` (after the scheme) is a
/// user and a password, and becomes `***`. Blanks too much rather than too little when the value
/// is malformed.
fn redacted(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (&value[..scheme.len() + 3], rest)
        }
        _ => ("", value),
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => scrub(&format!("{scheme}***@{host}")),
        None => scrub(value),
    }
}

impl ProxyInfo {
    /// The proxy for ureq's `Config`.
    pub(crate) fn proxy(&self) -> &ureq::Proxy {
        &self.proxy
    }

    /// Whether a request to `url` goes through the proxy: not when NO_PROXY lists its host.
    pub(crate) fn carries(&self, url: &str) -> bool {
        url.parse::<ureq::http::Uri>()
            .map_or(true, |uri| !self.proxy.is_no_proxy(&uri))
    }

    /// Names a failure to get through the proxy to `url`, so that nobody looks for the fault in
    /// the server; `None` when the proxy played no part (a TLS, HTTP or body error, or a host
    /// that NO_PROXY sends direct), for the caller's usual message.
    pub(crate) fn failure(
        &self,
        err: &ureq::Error,
        url: &str,
        connect_timeout: Duration,
    ) -> Option<anyhow::Error> {
        if !self.carries(url) {
            return None;
        }
        let host = crate::transport::request::host_of(url);
        let via = format!("{host} through the proxy {self}");
        let cannot = |why: &dyn fmt::Display| format!("cannot connect to {via}: {why}");
        let socks = !matches!(
            self.proxy.protocol(),
            ProxyProtocol::Http | ProxyProtocol::Https
        );
        let http_url = !url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let (message, transient) = match err {
            ureq::Error::ConnectionFailed => (format!("cannot connect to {via}"), true),
            ureq::Error::HostNotFound => (cannot(&self.unresolved(host)), false),
            ureq::Error::ConnectProxyFailed(reason) => (cannot(&scrub(reason)), false),
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => (
                format!(
                    "timed out connecting to {via} after {}s (--connect-timeout)",
                    connect_timeout.as_secs_f64()
                ),
                false,
            ),
            ureq::Error::Io(io) => match io.kind() {
                // std's resolver error has no stable kind of its own.
                _ if io.to_string().contains("failed to lookup address") => {
                    (cannot(&self.unresolved(host)), false)
                }
                io::ErrorKind::ConnectionRefused => (
                    cannot(&"the proxy refused the connection (is it running?)"),
                    true,
                ),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    (format!("the connection to {via} was reset"), true)
                }
                io::ErrorKind::UnexpectedEof => (
                    format!("the connection to {via} closed before {host} answered"),
                    true,
                ),
                // The SOCKS reply: the proxy's refusal to reach the server, or to take us.
                io::ErrorKind::Other | io::ErrorKind::PermissionDenied if socks => {
                    (cannot(&format!("the proxy answered: {io}")), false)
                }
                io::ErrorKind::InvalidInput if socks => (cannot(io), false),
                // Over https://, a TLS error is also InvalidData: left to the caller.
                io::ErrorKind::InvalidData if socks && http_url => (
                    cannot(&format!("the proxy's answer is not SOCKS: {io}")),
                    false,
                ),
                _ => return None,
            },
            _ => return None,
        };
        Some(if transient {
            NetworkError::transient(message).into()
        } else {
            NetworkError::new(message).into()
        })
    }

    /// Which host name did not resolve: the proxy's, or (when the target is resolved here,
    /// for `socks4://`, `socks5://`) perhaps the server's.
    fn unresolved(&self, host: &str) -> String {
        if self.proxy.resolve_target() {
            format!("cannot resolve {host} or the proxy's host")
        } else {
            "cannot resolve the proxy's host".to_owned()
        }
    }
}

/// `socks5h://127.0.0.1:1080 (set by ALL_PROXY)`; a user and password show as `***`.
impl fmt::Display for ProxyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lowercase, as written: a proxy rebuilt for NO_PROXY has its scheme in capitals.
        let scheme = self
            .proxy
            .uri()
            .scheme_str()
            .unwrap_or("http")
            .to_ascii_lowercase();
        let credentials = if self.proxy.username().is_some() || self.proxy.password().is_some() {
            "***@"
        } else {
            ""
        };
        write!(
            f,
            "{scheme}://{credentials}{}:{} (set by {})",
            self.proxy.host(),
            self.proxy.port(),
            self.origin
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&'static str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_first_proxy_variable_set_and_not_empty_wins_unless_the_flag_is_given() {
        let vars = [
            ("ALL_PROXY", ""),
            ("https_proxy", "socks5://b:1"),
            ("HTTP_PROXY", "socks5://c:1"),
            ("all_proxy", "socks5://a:1"),
        ];
        let chosen = |flag, vars| choose(flag, env(vars)).map(|(n, v)| (n, v.into_string()));
        assert_eq!(
            chosen(None, &vars),
            Some(("all_proxy", Ok("socks5://a:1".into())))
        );
        assert_eq!(
            chosen(None, &vars[1..3]),
            Some(("https_proxy", Ok("socks5://b:1".into())))
        );
        assert_eq!(
            chosen(Some("socks4://f:1"), &vars),
            Some(("--proxy", Ok("socks4://f:1".into())))
        );
        assert_eq!(chosen(None, &vars[..1]), None);
        assert_eq!(chosen(None, &[]), None);
    }

    #[test]
    fn shown_proxy_values_have_no_credentials() {
        for (value, shown) in [
            ("socks5://127.0.0.1:1080", "socks5://127.0.0.1:1080"),
            ("socks5://user:pw@host:1", "socks5://***@host:1"),
            ("user:pw@host:1", "***@host:1"),
            ("user:p://w@host", "***@host"),
            ("http://u:p@ss@host/x", "http://***@host/x"),
            ("socks5://[oops", "socks5://[oops"),
            ("a\nb", "a b"),
        ] {
            assert_eq!(redacted(value), shown, "{value}");
        }
    }

    #[test]
    fn a_bad_value_is_a_usage_error_naming_its_origin_without_its_password() {
        let err = parse("socks9://user:hunter2@host:1", "ALL_PROXY").unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::exit::USAGE);
        assert_eq!(
            err.to_string(),
            format!("bad ALL_PROXY socks9://***@host:1: invalid proxy url ({EXPECTED})")
        );
    }

    #[test]
    fn a_proxy_is_shown_with_its_scheme_port_and_origin_and_no_credentials() {
        for (value, shown) in [
            ("socks5h://127.0.0.1:1080", "socks5h://127.0.0.1:1080"),
            ("socks4a://u:hunter2@proxy", "socks4a://***@proxy:1080"),
            // Schemes are shown in lowercase, however they were written.
            ("SOCKS5://[::1]:9", "socks5://[::1]:9"),
            ("proxy:3128", "http://proxy:3128"),
        ] {
            let info = ProxyInfo {
                proxy: parse(value, "--proxy").expect(value),
                origin: "HTTP_PROXY",
            };
            assert_eq!(info.to_string(), format!("{shown} (set by HTTP_PROXY)"));
        }
    }

    #[test]
    fn failures_through_a_proxy_name_it_and_others_are_left_alone() {
        let info = ProxyInfo {
            proxy: parse("socks5h://u:hunter2@proxy:1080", "--proxy").expect("parses"),
            origin: "--proxy",
        };
        let failure = |err: ureq::Error| {
            info.failure(&err, "http://server:8000/v1/chat", Duration::from_secs(3))
                .map(|err| format!("{err}"))
        };
        let refused = ureq::Error::Io(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            failure(refused).as_deref(),
            Some(
                "cannot connect to server:8000 through the proxy socks5h://***@proxy:1080 \
                 (set by --proxy): the proxy refused the connection (is it running?)"
            )
        );
        assert_eq!(
            failure(ureq::Error::Io(io::Error::other("host unreachable"))).as_deref(),
            Some(
                "cannot connect to server:8000 through the proxy socks5h://***@proxy:1080 \
                 (set by --proxy): the proxy answered: host unreachable"
            )
        );
        assert_eq!(
            failure(ureq::Error::HostNotFound).as_deref(),
            Some(
                "cannot connect to server:8000 through the proxy socks5h://***@proxy:1080 \
                 (set by --proxy): cannot resolve the proxy's host"
            )
        );
        assert_eq!(
            failure(ureq::Error::Timeout(ureq::Timeout::Connect)).as_deref(),
            Some(
                "timed out connecting to server:8000 through the proxy \
                 socks5h://***@proxy:1080 (set by --proxy) after 3s (--connect-timeout)"
            )
        );
        assert_eq!(failure(ureq::Error::Timeout(ureq::Timeout::PerRead)), None);
        assert_eq!(
            failure(ureq::Error::Io(io::ErrorKind::TimedOut.into())),
            None
        );
    }
}
