//! Secrets inside a URL: the userinfo password and the values of query parameters that carry
//! keys, found once so they can be hidden wherever the URL is shown and blanked from anything a
//! server echoes back.
//!
//! `--base-url http://user:pass@host/v1?key=...` is how some gateways take their credentials
//! (Google's `?key=`, Azure's `?api-key=` and SAS `&sig=`, basic auth in the userinfo). The URL
//! shows up in `--dry-run`, `-v` and error messages, so it is always shown through
//! [`redact_url`]. The files a user keeps or shares (`--save`, `--record`) are written through
//! [`Blanking`], which blanks every secret of the run from them.

use std::io::{self, Write};

/// `url` with its secrets replaced by `***`: the password of the userinfo (`user:***@host`; a
/// userinfo without a colon is a token, `***@host`) and the value of every query parameter whose
/// name [`is_secret_parameter`]. Everything else is kept as it was, so the URL still says where
/// the request went. Text that is not a URL at all comes back unchanged.
pub(crate) fn redact_url(url: &str) -> String {
    let parts = Parts::of(url);
    let mut shown = String::with_capacity(url.len());
    shown.push_str(parts.scheme);
    if let Some(userinfo) = parts.userinfo {
        match userinfo.split_once(':') {
            Some((user, password)) if !password.is_empty() => {
                shown.push_str(user);
                shown.push_str(":***");
            }
            Some(_) => shown.push_str(userinfo),
            None if !userinfo.is_empty() => shown.push_str("***"),
            None => {}
        }
        shown.push('@');
    }
    shown.push_str(parts.host_and_path);
    if let Some(query) = parts.query {
        shown.push('?');
        for (i, parameter) in query.split('&').enumerate() {
            if i > 0 {
                shown.push('&');
            }
            match parameter.split_once('=') {
                Some((name, value)) if !value.is_empty() && is_secret_parameter(name) => {
                    shown.push_str(name);
                    shown.push_str("=***");
                }
                _ => shown.push_str(parameter),
            }
        }
    }
    shown.push_str(parts.fragment);
    shown
}

/// The secrets [`redact_url`] hides, as written in the URL and percent-decoded (the server sees
/// the decoded form and may echo either), for [`crate::error::register_secret`].
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let parts = Parts::of(url);
    let mut secrets = Vec::new();
    if let Some(userinfo) = parts.userinfo {
        let password = match userinfo.split_once(':') {
            Some((_, password)) => password,
            None => userinfo,
        };
        secrets.push(password);
    }
    for parameter in parts.query.into_iter().flat_map(|query| query.split('&')) {
        if let Some((name, value)) = parameter.split_once('=')
            && is_secret_parameter(name)
        {
            secrets.push(value);
        }
    }
    let mut all = Vec::new();
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        let decoded = percent_decode(secret);
        if decoded != secret {
            all.push(decoded);
        }
        all.push(secret.to_owned());
    }
    all
}

/// Whether a query parameter's name says its value is a credential. Case, `-` and `_` are
/// ignored; a name that ends in `key`, `token`, `secret`, `password`, `passwd`, `signature`,
/// `sig` or `credential(s)` counts (`key`, `api-key`, `apikey`, `subscription-key`,
/// `access_token`, `client_secret`, Azure SAS's `sig`), and so do `auth`, `authorization`,
/// `code`, `pass`, `pwd`, `jwt` and `session`. A false alarm costs only a `***` in a message.
pub(crate) fn is_secret_parameter(name: &str) -> bool {
    const ENDINGS: [&str; 9] = [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "signature",
        "sig",
        "credential",
        "credentials",
    ];
    const NAMES: [&str; 7] = [
        "auth",
        "authorization",
        "code",
        "pass",
        "pwd",
        "jwt",
        "session",
    ];
    let name: String = percent_decode(name)
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    ENDINGS.iter().any(|ending| name.ends_with(ending)) || NAMES.contains(&name.as_str())
}

/// A URL cut where its secrets can be: `scheme://` `userinfo@` `host/path` `?query` `#fragment`.
/// The authority ends at the first `/`, `?` or `#`, as in every URL parser, so an `@` in the
/// path is not taken for the end of a userinfo. Without `://` the text is read from its start.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host_and_path: &'a str,
    query: Option<&'a str>,
    fragment: &'a str,
}

impl<'a> Parts<'a> {
    fn of(url: &'a str) -> Parts<'a> {
        let (scheme, rest) = match url.find("://") {
            Some(at) => url.split_at(at + 3),
            None => ("", url),
        };
        let (rest, fragment) = match rest.find('#') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let authority_end = before_query.find('/').unwrap_or(before_query.len());
        let (userinfo, host_and_path) = match before_query[..authority_end].rfind('@') {
            Some(at) => (Some(&before_query[..at]), &before_query[at + 1..]),
            None => (None, before_query),
        };
        Parts {
            scheme,
            userinfo,
            host_and_path,
            query,
            fragment,
        }
    }
}

/// `%41` → `A`; a `%` not followed by two hex digits is kept, and bytes that are not UTF-8
/// become U+FFFD: this is for recognising echoes, not for sending.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2))
        {
            decoded.push((high * 16 + low) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A writer that blanks every secret of this run (the key, secret header values, URL secrets:
/// see [`crate::error::register_secret`]) to `***` in what passes through: for the files a user
/// keeps or shares, the `--save` transcript and the `--record` body. Bytes go on as soon as they
/// cannot be part of a secret: only a tail that may be the start of one is held back until the
/// next write or [`Blanking::finish`] (`flush` keeps it too), so a secret split across writes is
/// still found, and a recording is current up to at most that tail. Big writes are worked through
/// in pieces, never copied whole.
pub(crate) struct Blanking<W: Write> {
    inner: W,
    /// Longest first, so a secret that begins with another is blanked whole.
    secrets: Vec<Vec<u8>>,
    /// Bytes not written yet: a piece being worked through, or a tail that may start a secret.
    held: Vec<u8>,
}

/// How much of a big write is worked through at a time.
const PIECE: usize = 64 * 1024;

impl<W: Write> Blanking<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self::with(inner, crate::error::secrets())
    }

    fn with(inner: W, secrets: Vec<String>) -> Self {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            // As JSON writes it too: a transcript holds `\"` for a `"` in a decoded URL secret.
            if let Ok(quoted) = serde_json::to_string(&secret)
                && let Some(escaped) = quoted.get(1..quoted.len() - 1)
                && escaped != secret
            {
                forms.push(escaped.as_bytes().to_vec());
            }
            forms.push(secret.into_bytes());
        }
        forms.retain(|form| !form.is_empty());
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Blanking {
            inner,
            secrets: forms,
            held: Vec::new(),
        }
    }

    /// Writes what was held back and hands back the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.pass(true)?;
        Ok(self.inner)
    }

    /// Writes `held` on, blanked, up to where the rest may be the start of a secret (all of it
    /// when `last`), and keeps that rest.
    fn pass(&mut self, last: bool) -> io::Result<()> {
        let (held, secrets) = (&self.held, &self.secrets);
        let longest = secrets.first().map_or(0, Vec::len);
        let (mut at, mut run) = (0, 0);
        while at < held.len() {
            let rest = &held[at..];
            // Too short to tell yet, and a secret begins this way: wait for more.
            if !last
                && rest.len() < longest
                && secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                break;
            }
            match secrets.iter().find(|s| rest.starts_with(s)) {
                Some(secret) => {
                    self.inner.write_all(&held[run..at])?;
                    self.inner.write_all(b"***")?;
                    at += secret.len();
                    run = at;
                }
                None => at += 1,
            }
        }
        self.inner.write_all(&held[run..at])?;
        self.held.drain(..at);
        Ok(())
    }
}

impl<W: Write> Write for Blanking<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.secrets.is_empty() {
            return self.inner.write(bytes);
        }
        for piece in bytes.chunks(PIECE) {
            self.held.extend_from_slice(piece);
            self.pass(false)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blanked(pieces: &[&[u8]], secrets: &[&str]) -> String {
        let secrets = secrets.iter().map(|s| s.to_string()).collect();
        let mut out = Blanking::with(Vec::new(), secrets);
        for piece in pieces {
            out.write_all(piece).unwrap();
            out.flush().unwrap();
        }
        String::from_utf8(out.finish().unwrap()).unwrap()
    }

    #[test]
    fn blanking_finds_secrets_whole_split_over_writes_and_back_to_back() {
        let text = b"key sk-secret-1 then hdr-secret-22hdr-secret-22 end sk-secret";
        let secrets = ["sk-secret-1", "hdr-secret-22"];
        let expected = "key *** then ****** end sk-secret";
        assert_eq!(blanked(&[text], &secrets), expected);
        // One byte per write: every secret spans writes, and each flush must not let one out.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(blanked(&bytes, &secrets), expected);
        let pieces: Vec<&[u8]> = text.chunks(7).collect();
        assert_eq!(blanked(&pieces, &secrets), expected);
    }

    #[test]
    fn blanking_holds_back_only_what_may_start_a_secret() {
        let secrets = vec!["sk-secret-1".to_string()];
        let mut out = Blanking::with(Vec::new(), secrets);
        out.write_all(b"data: {\"x\":1}\n\n").unwrap();
        assert_eq!(
            out.inner, b"data: {\"x\":1}\n\n",
            "nothing here can start the secret"
        );
        out.write_all(b"then sk-sec").unwrap();
        assert_eq!(out.inner.len(), b"data: {\"x\":1}\n\nthen ".len());
        out.write_all(b"ond").unwrap();
        assert_eq!(
            String::from_utf8(out.finish().unwrap()).unwrap(),
            "data: {\"x\":1}\n\nthen sk-second"
        );
    }

    #[test]
    fn blanking_takes_the_longest_secret_and_the_json_escaped_form() {
        let secrets = ["sk-abcdefgh", "sk-abcdefgh-longer-part", "pa\"ss/word"];
        assert_eq!(
            blanked(&[b"x sk-abcdefgh-longer-part y sk-abcdefgh z"], &secrets),
            "x *** y *** z"
        );
        // One byte at a time, the longer secret is still seen whole.
        let text = b"x sk-abcdefgh-longer-part y";
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(blanked(&bytes, &secrets), "x *** y");
        assert_eq!(
            blanked(&[br#"{"p":"pa\"ss/word"}"#], &secrets),
            r#"{"p":"***"}"#
        );
    }

    #[test]
    fn blanking_a_big_write_needs_no_copy_of_it() {
        let secrets = vec!["sk-secret-1".to_string()];
        let mut out = Blanking::with(Vec::new(), secrets);
        let big = vec![b'a'; 10 * PIECE + 3];
        out.write_all(&big).unwrap();
        assert!(out.held.capacity() <= 2 * PIECE, "{}", out.held.capacity());
        assert_eq!(out.finish().unwrap(), big);
    }

    #[test]
    fn blanking_with_no_secrets_passes_bytes_through() {
        assert_eq!(blanked(&[b"abc", b"def"], &[]), "abcdef");
    }

    /// Issue #12, defect 9: secrets inside the URL were printed verbatim.
    #[test]
    fn the_password_and_secret_query_values_of_a_url_are_hidden() {
        let cases = [
            (
                "http://user:pass@host/v1?key=k1&api-version=2024-10-21&api-key=k2",
                "http://user:***@host/v1?key=***&api-version=2024-10-21&api-key=***",
            ),
            ("https://tok@host:8443/v1", "https://***@host:8443/v1"),
            ("https://user:@host/v1", "https://user:@host/v1"),
            ("https://@host/v1", "https://@host/v1"),
            (
                "https://h/v1/chat/completions?API_KEY=a&Token=b&access_token=c&sig=d&Signature=e\
                 &secret=f&client_secret=g&password=h&pass=i&code=j&auth=k&apikey=l\
                 &subscription-key=m&x-api-key=n&se=2030&sp=r&model=gpt",
                "https://h/v1/chat/completions?API_KEY=***&Token=***&access_token=***&sig=***\
                 &Signature=***&secret=***&client_secret=***&password=***&pass=***&code=***\
                 &auth=***&apikey=***&subscription-key=***&x-api-key=***&se=2030&sp=r&model=gpt",
            ),
            ("http://h/v1?key=&key&x", "http://h/v1?key=&key&x"),
            (
                "http://u:p@h/a@b?key=v#frag?key=w",
                "http://u:***@h/a@b?key=***#frag?key=w",
            ),
            ("http://h/p@q/v1", "http://h/p@q/v1"),
            ("ftp://u:p@h/v1?token=t", "ftp://u:***@h/v1?token=***"),
            ("u:p@h:8080/v1?key=v", "u:***@h:8080/v1?key=***"),
            ("not a url", "not a url"),
            ("", ""),
            (
                "https://api.openai.com/v1/chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn the_secrets_are_listed_raw_and_decoded_for_scrubbing() {
        assert_eq!(
            url_secrets("http://user:p%40ss-word@h/v1?key=k%2Bey-value&api-version=1&sig=abc"),
            [
                "p@ss-word",
                "p%40ss-word",
                "k+ey-value",
                "k%2Bey-value",
                "abc"
            ]
        );
        assert_eq!(url_secrets("http://token-only@h/v1"), ["token-only"]);
        assert!(url_secrets("https://api.openai.com/v1?api-version=1").is_empty());
        assert!(url_secrets("http://user:@h/v1?key=").is_empty());
    }

    #[test]
    fn secret_parameter_names() {
        for name in [
            "key",
            "KEY",
            "api-key",
            "api_key",
            "apikey",
            "x-api-key",
            "token",
            "id_token",
            "sig",
            "signature",
            "secret",
            "password",
            "passwd",
            "pass",
            "pwd",
            "code",
            "auth",
            "Authorization",
            "jwt",
            "session",
            "api%2Dkey",
        ] {
            assert!(is_secret_parameter(name), "{name}");
        }
        for name in [
            "api-version",
            "model",
            "se",
            "sp",
            "sv",
            "deployment",
            "user",
            "format",
        ] {
            assert!(!is_secret_parameter(name), "{name}");
        }
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
