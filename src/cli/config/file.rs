//! The config file read and checked whole: TOML into [`Layer`]s, each key's type and range
//! checked with its line, unknown keys with a "did you mean", and a file others can read refused
//! when it holds a secret.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Config, Held, Layer, Secret};
use crate::cli::args::{Api, Color};
use crate::error::{UsageError, register_secret};
use crate::transport::key::KeySource;

/// The keys a profile (or the top level) may set; they mirror the long flags.
const KEYS: &[&str] = &[
    "base_url",
    "api",
    "model",
    "system",
    "max_tokens",
    "temperature",
    "headers",
    "extra",
    "retries",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "timeout",
    "proxy",
    "cacert",
    "reasoning_effort",
    "no_usage",
    "color",
    "api_key_env",
    "api_key_file",
    "api_key",
    "mcp",
];

impl Config {
    /// Parses and checks the text of the file at `path`.
    pub(super) fn parse(text: &str, path: &Path) -> Result<Config, UsageError> {
        let file = File { text, path };
        let root = DeTable::parse(text).map_err(|err| {
            let line = err
                .span()
                .map_or(String::new(), |s| format!(":{}", file.line(s.start)));
            UsageError(format!(
                "{}{line}: invalid TOML: {}",
                path.display(),
                err.message().trim_end()
            ))
        })?;
        let mut profiles = Vec::new();
        let mut top = DeTable::new();
        let mut servers = Vec::new();
        let mut server_secrets = Vec::new();
        for (key, value) in root.get_ref() {
            if key.get_ref() == "mcp" {
                servers = file.servers(key, value, &mut server_secrets)?;
            } else if key.get_ref() == "profiles" {
                let DeValue::Table(tables) = value.get_ref() else {
                    return Err(file.error(
                        key,
                        "profiles",
                        "must be a table of [profiles.NAME] tables",
                    ));
                };
                for (name, profile) in tables {
                    let DeValue::Table(profile) = profile.get_ref() else {
                        let place = format!("profiles.{}", name.get_ref());
                        return Err(file.error(name, &place, "must be a table of settings"));
                    };
                    let layer = file.layer(profile, Some(name.get_ref()))?;
                    profiles.push((name.get_ref().to_string(), layer));
                }
            } else {
                top.insert(key.clone(), value.clone());
            }
        }
        let defaults = file.layer(&top, None)?;
        for (profile, layer) in &profiles {
            for (name, line) in &layer.mcp {
                if !servers.iter().any(|(server, _)| server == name) {
                    return Err(UsageError(format!(
                        "{}:{line}: profiles.{}.mcp: no [mcp.{}] table",
                        path.display(),
                        crate::error::scrub(profile),
                        crate::error::scrub(name)
                    )));
                }
            }
        }
        let layers = || profiles.iter().map(|(_, layer)| layer).chain([&defaults]);
        for layer in layers() {
            if let Some(KeySource::Inline(key)) = &layer.key {
                register_secret(key);
            }
        }
        // The first secret in the file's order is the one named.
        if let Some(held) = layers()
            .flat_map(|layer| &layer.secrets)
            .chain(&server_secrets)
            .min_by_key(|held| held.line)
        {
            refuse_shared(path, held)?;
        }
        Ok(Config {
            path: path.to_owned(),
            defaults,
            profiles,
            servers,
        })
    }
}

/// The file being read, for errors that name a line.
pub(super) struct File<'a> {
    text: &'a str,
    path: &'a Path,
}

impl File<'_> {
    /// `api_key_env of profile p in PATH`: a setting named for an error.
    fn setting(&self, place: &str) -> String {
        let (profile, key) = match place
            .strip_prefix("profiles.")
            .and_then(|rest| rest.rsplit_once('.'))
        {
            Some((profile, key)) => (format!(" of profile {}", crate::error::scrub(profile)), key),
            None => (String::new(), place),
        };
        format!("{key}{profile} in {}", self.path.display())
    }

    /// A path from the file: `~/` is the home directory, and a relative path is relative to
    /// the file's own directory, wherever gptstream runs.
    fn path_of(&self, path: &str) -> PathBuf {
        let path = expand_home(path);
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn error<T>(&self, at: &Spanned<T>, key: &str, why: &str) -> UsageError {
        UsageError(format!(
            "{}:{}: {}: {why}",
            self.path.display(),
            self.line(at.span().start),
            crate::error::scrub(key)
        ))
    }

    pub(super) fn held<T>(&self, at: &Spanned<T>, place: &str, what: Secret) -> Held {
        Held {
            line: self.line(at.span().start),
            place: crate::error::scrub(place),
            what,
        }
    }

    /// One table's settings, every key checked.
    fn layer(&self, table: &DeTable<'_>, profile: Option<&str>) -> Result<Layer, UsageError> {
        let mut layer = Layer::default();
        let mut key_sources = Vec::new();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            let place = match profile {
                Some(profile) => format!("profiles.{profile}.{name}"),
                None => name.to_owned(),
            };
            let fail = |why: &str| self.error(value, &place, why);
            let string = || match value.get_ref() {
                DeValue::String(text) => Ok(text.to_string()),
                other => Err(fail(&format!("expected a string, got {}", kind(other)))),
            };
            let number = || match value.get_ref() {
                DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
                    .map(|n| n as f64)
                    .map_err(|_| fail("the number is too large")),
                DeValue::Float(f) => f
                    .as_str()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| fail("expected a finite number")),
                other => Err(fail(&format!("expected a number, got {}", kind(other)))),
            };
            let count = || match value.get_ref() {
                DeValue::Integer(n) => u32::from_str_radix(n.as_str(), n.radix())
                    .map_err(|_| fail("expected a whole number from 0 to 4294967295")),
                other => Err(fail(&format!("expected an integer, got {}", kind(other)))),
            };
            let seconds = || {
                let secs = number()?;
                match crate::cli::args::valid_seconds(secs) {
                    Some(_) => Ok(secs),
                    None => Err(fail(&format!(
                        "expected a positive number of seconds, at most {:e}",
                        crate::cli::args::MAX_SECONDS
                    ))),
                }
            };
            match name {
                "base_url" => {
                    let url = string()?;
                    let host = url
                        .strip_prefix("http://")
                        .or_else(|| url.strip_prefix("https://"));
                    if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                        return Err(fail("expected an http:// or https:// URL with a host"));
                    }
                    if !crate::emit::redact::url_secrets(&url).is_empty() {
                        let held = self.held(value, &place, Secret::Url);
                        layer.secrets.push(held);
                    }
                    layer.base_url = Some(url);
                }
                "api" => {
                    layer.api = Some(match string()?.as_str() {
                        "chat" => Api::Chat,
                        "responses" => Api::Responses,
                        other => {
                            return Err(fail(&format!(
                                "expected \"chat\" or \"responses\", got {other:?}"
                            )));
                        }
                    })
                }
                "model" => layer.model = Some(string()?),
                "system" => layer.system = Some(string()?),
                "max_tokens" => layer.max_tokens = Some(count()?),
                "temperature" => layer.temperature = Some(number()?),
                "retries" => layer.retries = Some(count()?),
                "connect_timeout" => layer.connect_timeout = Some(seconds()?),
                "first_byte_timeout" => layer.first_byte_timeout = Some(seconds()?),
                "idle_timeout" => layer.idle_timeout = Some(seconds()?),
                "timeout" => layer.timeout = Some(seconds()?),
                "proxy" => {
                    // "" is a direct connection, whatever the proxy variables say.
                    let proxy = string()?;
                    if !proxy.is_empty() {
                        let parsed = crate::transport::proxy::parse(&proxy, "proxy")
                            .map_err(|err| fail(&format!("{err:#}")))?;
                        if parsed
                            .password()
                            .is_some_and(|password| !password.is_empty())
                        {
                            layer
                                .secrets
                                .push(self.held(value, &place, Secret::ProxyPassword));
                        }
                    }
                    layer.proxy = Some(proxy);
                }
                "cacert" => layer.cacert = Some(self.path_of(&string()?)),
                "reasoning_effort" => layer.reasoning_effort = Some(string()?),
                "no_usage" => match value.get_ref() {
                    DeValue::Boolean(b) => layer.no_usage = Some(*b),
                    other => {
                        return Err(fail(&format!(
                            "expected true or false, got {}",
                            kind(other)
                        )));
                    }
                },
                "color" => {
                    layer.color = Some(match string()?.as_str() {
                        "auto" => Color::Auto,
                        "always" => Color::Always,
                        "never" => Color::Never,
                        other => {
                            return Err(fail(&format!(
                                "expected \"auto\", \"always\" or \"never\", got {other:?}"
                            )));
                        }
                    })
                }
                "headers" => {
                    let DeValue::Table(headers) = value.get_ref() else {
                        return Err(fail("expected a table of \"Name\" = \"value\""));
                    };
                    for (header, text) in headers {
                        let header_place = format!("{place}.{}", header.get_ref());
                        let DeValue::String(text) = text.get_ref() else {
                            return Err(self.error(text, &header_place, "expected a string"));
                        };
                        crate::transport::request::check_header(header.get_ref(), text)
                            .map_err(|why| self.error(header, &header_place, &why))?;
                        if crate::transport::request::is_secret_header(header.get_ref())
                            && !text.is_empty()
                        {
                            let held = self.held(header, &header_place, Secret::Header);
                            layer.secrets.push(held);
                        }
                        layer
                            .headers
                            .push((header.get_ref().to_string(), text.to_string()));
                    }
                    crate::transport::request::register_header_secrets(&layer.headers);
                }
                "extra" => match json(value.get_ref()) {
                    Ok(Value::Object(fields)) => layer.extra = fields,
                    Ok(_) => return Err(fail("expected a table")),
                    Err(why) => return Err(fail(&why)),
                },
                "api_key_env" => {
                    let var = string()?;
                    if var.is_empty() || var.contains(['=', '\0']) {
                        return Err(fail("expected the name of an environment variable"));
                    }
                    key_sources.push((
                        key,
                        KeySource::Env {
                            var,
                            setting: self.setting(&place),
                        },
                    ));
                }
                "api_key_file" => key_sources.push((
                    key,
                    KeySource::File {
                        path: self.path_of(&string()?),
                        allow_shared: false,
                        setting: self.setting(&place),
                    },
                )),
                "api_key" => {
                    let key_text = string()?.trim().to_owned();
                    if !key_text.is_empty() {
                        layer.secrets.push(self.held(value, &place, Secret::ApiKey));
                    }
                    key_sources.push((key, KeySource::Inline(key_text)))
                }
                "mcp" if profile.is_some() => {
                    let DeValue::Array(names) = value.get_ref() else {
                        return Err(fail("expected a list of [mcp.NAME] names"));
                    };
                    for name in names {
                        let DeValue::String(text) = name.get_ref() else {
                            return Err(self.error(name, &place, "expected a name"));
                        };
                        layer
                            .mcp
                            .push((text.to_string(), self.line(name.span().start)));
                    }
                }
                "profiles" if profile.is_some() => {
                    return Err(self.error(key, &place, "profiles do not nest"));
                }
                unknown => {
                    let hint = did_you_mean(unknown)
                        .map_or(String::new(), |known| format!(" (did you mean {known:?}?)"));
                    return Err(self.error(key, &place, &format!("unknown key{hint}")));
                }
            }
        }
        if let [_, (second, _), ..] = &key_sources[..] {
            let place = profile.map_or("the top level".to_owned(), |p| format!("profile {p:?}"));
            return Err(self.error(
                second,
                second.get_ref(),
                &format!("{place} sets more than one of api_key_env, api_key_file, api_key"),
            ));
        }
        layer.key = key_sources.pop().map(|(_, source)| source);
        Ok(layer)
    }
}

/// The key the user probably meant: the closest known one, a small edit away.
fn did_you_mean(unknown: &str) -> Option<&'static str> {
    closest(unknown, KEYS)
}

/// The one of `known` closest to `unknown`, if it is a small edit away.
pub(super) fn closest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .copied()
        .map(|known| (edit_distance(unknown, known), known))
        .filter(|(distance, known)| *distance <= 2.max(known.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `~/x` is `$HOME/x`, as a shell would have it.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A TOML value as JSON, for `extra`: dates become strings, infinities are refused.
fn json(value: &DeValue<'_>) -> Result<Value, String> {
    Ok(match value {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
            .map(Value::from)
            .map_err(|_| format!("{} is too large", n.as_str()))?,
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{} is not a number JSON can hold", f.as_str()))?,
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(date) => Value::String(date.to_string()),
        DeValue::Array(items) => items
            .iter()
            .map(|item| json(item.get_ref()))
            .collect::<Result<_, _>>()?,
        DeValue::Table(table) => table
            .iter()
            .map(|(key, value)| Ok((key.get_ref().to_string(), json(value.get_ref())?)))
            .collect::<Result<Map<_, _>, String>>()?
            .into(),
    })
}

/// A file that holds a secret must be its owner's alone, as `--api-key-file` must: the error
/// names the first one, with its line.
fn refuse_shared(path: &Path, held: &Held) -> Result<(), UsageError> {
    let mode = crate::transport::key::shared_mode(path)
        .map_err(|err| UsageError(format!("cannot read config file {}: {err}", path.display())))?;
    let Some(mode) = mode else {
        return Ok(());
    };
    let or_else = match held.what {
        Secret::ApiKey => ", or use api_key_env or api_key_file",
        Secret::Header | Secret::Url | Secret::ProxyPassword | Secret::Variable => "",
    };
    Err(UsageError(format!(
        "{}:{}: {}: {} in a file other users can access (mode {mode:o}); run chmod 600 on it{or_else}",
        path.display(),
        held.line,
        held.place,
        held.what.described(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/c/config.toml")).map_err(|err| err.0)
    }

    #[test]
    fn a_file_of_defaults_and_profiles() {
        let config = parse(
            r#"
model = "gpt-4o-mini"
temperature = 0
headers = { "X-Team" = "a" }

[profiles.local]
base_url = "http://127.0.0.1:8080/v1"
api = "responses"
max_tokens = 0x10
connect_timeout = 2.5
no_usage = true
color = "never"
extra = { seed = 1, stop = ["a"], when = 1979-05-27, nested = { x = 1.5 } }
api_key_env = "LOCAL_KEY"
"#,
        )
        .unwrap();
        assert_eq!(config.defaults.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(config.defaults.temperature, Some(0.0));
        assert_eq!(config.defaults.headers, [("X-Team".into(), "a".into())]);
        let (name, local) = &config.profiles[0];
        assert_eq!(name, "local");
        assert_eq!(local.api, Some(Api::Responses));
        assert_eq!(local.max_tokens, Some(16));
        assert_eq!(local.connect_timeout, Some(2.5));
        assert_eq!(local.no_usage, Some(true));
        assert_eq!(local.color, Some(Color::Never));
        assert_eq!(
            Value::Object(local.extra.clone()),
            serde_json::json!({"seed":1,"stop":["a"],"when":"1979-05-27","nested":{"x":1.5}})
        );
        assert_eq!(
            local.key,
            Some(KeySource::Env {
                var: "LOCAL_KEY".into(),
                setting: "api_key_env of profile local in /c/config.toml".into()
            })
        );
    }

    #[test]
    fn bad_config_names_the_file_the_line_and_the_key() {
        let cases = [
            (
                "model = \"m\"\nmodle = \"x\"\n",
                "/c/config.toml:2: modle: unknown key (did you mean \"model\"?)",
            ),
            (
                "[profiles.a]\nmax_tokens = \"many\"\n",
                "/c/config.toml:2: profiles.a.max_tokens: expected an integer, got a string",
            ),
            (
                "[profiles.a]\nmodel = \"m\"\n[profiles.b]\napi = \"completions\"\n",
                "/c/config.toml:4: profiles.b.api: expected \"chat\" or \"responses\", got \"completions\"",
            ),
            (
                "retries = -1\n",
                "/c/config.toml:1: retries: expected a whole number from 0 to 4294967295",
            ),
            (
                "idle_timeout = 0\n",
                "/c/config.toml:1: idle_timeout: expected a positive number of seconds, at most 1e9",
            ),
            (
                "headers = { \"Bad Name\" = \"v\" }\n",
                "/c/config.toml:1: headers.Bad Name: expected 'Name: value', the name of letters, digits and !#$%&'*+-.^_`|~",
            ),
            (
                "headers = { \"X:Y\" = \"v\" }\n",
                "/c/config.toml:1: headers.X:Y: expected 'Name: value', the name of letters, digits and !#$%&'*+-.^_`|~",
            ),
            (
                "headers = { \"Content-Length\" = \"5\" }\n",
                "/c/config.toml:1: headers.Content-Length: Content-Length is set by gptstream, which sends the body with its exact length",
            ),
            (
                "headers = { \"X-A\" = \"a\\nb\" }\n",
                "/c/config.toml:1: headers.X-A: the value holds a control character",
            ),
            (
                "base_url = \"ftp://x\"\n",
                "/c/config.toml:1: base_url: expected an http:// or https:// URL with a host",
            ),
            (
                "[profiles.a]\nbase_url = \"http://\"\n",
                "/c/config.toml:2: profiles.a.base_url: expected an http:// or https:// URL with a host",
            ),
            (
                "timeout = 1.8e19\n",
                "/c/config.toml:1: timeout: expected a positive number of seconds, at most 1e9",
            ),
            (
                "timeout = 1e300\n",
                "/c/config.toml:1: timeout: expected a positive number of seconds, at most 1e9",
            ),
            (
                "[profiles.\"\\u001b[31mred\"]\nmodle = 1\n",
                "/c/config.toml:2: profiles. [31mred.modle: unknown key (did you mean \"model\"?)",
            ),
            (
                "profiles = 3\n",
                "/c/config.toml:1: profiles: must be a table of [profiles.NAME] tables",
            ),
            (
                "[profiles.a]\napi_key_env = \"A\"\napi_key_file = \"/k\"\n",
                "/c/config.toml:3: api_key_file: profile \"a\" sets more than one of api_key_env, api_key_file, api_key",
            ),
            (
                "[profiles.a]\ncolour = \"never\"\n",
                "/c/config.toml:2: profiles.a.colour: unknown key (did you mean \"color\"?)",
            ),
            ("zzz = 1\n", "/c/config.toml:1: zzz: unknown key"),
        ];
        for (text, error) in cases {
            assert_eq!(parse(text).unwrap_err(), error, "{text}");
        }
        let invalid = parse("model = \"m\"\n\nbase_url = \n").unwrap_err();
        assert!(
            invalid.starts_with("/c/config.toml:3: invalid TOML: "),
            "{invalid}"
        );
    }

    #[test]
    fn did_you_mean_only_when_close() {
        assert_eq!(did_you_mean("max_token"), Some("max_tokens"));
        assert_eq!(did_you_mean("base-url"), Some("base_url"));
        assert_eq!(did_you_mean("apikey"), Some("api_key"));
        assert_eq!(did_you_mean("banana"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_in_the_file_needs_a_file_only_its_owner_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("gptstream-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "[profiles.a]\napi_key = \"sk-in-file\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Config::read(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: profiles.a.api_key: an API key in a file other users can access (mode 644); run chmod 600 on it, or use api_key_env or api_key_file"),
            "{err}"
        );
        assert!(!err.contains("sk-in-file"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = Config::read(&path).unwrap();
        assert_eq!(
            config.profiles[0].1.key,
            Some(KeySource::Inline("sk-in-file".into()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
