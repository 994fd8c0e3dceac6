//! The config file: defaults and named profiles, for people who use several servers in a day.
//!
//! `$GPTSTREAM_CONFIG`, else `$XDG_CONFIG_HOME/gptstream/config.toml`, else
//! `~/.config/gptstream/config.toml`; no file changes nothing. Top-level keys are defaults,
//! `[profiles.NAME]` tables override them, and `-p NAME` (or `GPTSTREAM_PROFILE`) picks one. The
//! whole file is checked when it is read, unselected profiles included, so a typo is found the
//! day it is made, with its line.
//!
//! Precedence, highest first: flag, selected profile, environment variable, top-level default,
//! built-in default. A profile is chosen on purpose, so it beats ambient variables such as
//! `OPENAI_BASE_URL`; without one, the environment beats the file's defaults. The API key is
//! where a profile matters most: `OPENAI_API_KEY` is sent only to a profile without a key source
//! of its own, so a profile for another host never gets the OpenAI key by accident.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use serde_json::{Map, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::cli::args::{Api, Args, Color};
use crate::error::{UsageError, register_secret};

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
];

/// Where the API key comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum KeySource {
    /// `OPENAI_API_KEY`, if it is set.
    #[default]
    OpenAiEnv,
    /// A file (`--api-key-file` or `api_key_file`): refused when others can read it, unless
    /// `allow_shared` (`--insecure-key-file`, for the flag's file only). `setting` names where
    /// it was set, for errors: `--api-key-file`, or `api_key_file` and its place in the file.
    File {
        path: PathBuf,
        allow_shared: bool,
        setting: String,
    },
    /// The variable `api_key_env` names; unset is an error, not "no key". `setting` names
    /// where it was set.
    Env { var: String, setting: String },
    /// `api_key` in the file itself (which only its owner may read).
    Inline(String),
}

/// What the config file decided, for the layers below the flags.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The file read, if there was one.
    pub path: Option<PathBuf>,
    /// The profile used, if one was selected.
    pub profile: Option<String>,
    pub key: KeySource,
    /// With `--profiles`: each profile as `-p NAME` would resolve it here, with no flags.
    pub listing: Vec<ProfileRow>,
    /// Where an explicit proxy came from, for its errors: `--proxy` or the config file.
    pub proxy_origin: &'static str,
}

impl Default for Applied {
    fn default() -> Self {
        Applied {
            path: None,
            profile: None,
            key: KeySource::default(),
            listing: Vec::new(),
            proxy_origin: "--proxy",
        }
    }
}

impl Applied {
    /// `config PATH, profile NAME`, as `--dry-run` and `-v` say it; `None` without a file.
    pub fn describe(&self) -> Option<String> {
        let path = self.path.as_ref()?;
        Some(match &self.profile {
            Some(profile) => format!(
                "config {}, profile {}",
                path.display(),
                crate::error::scrub(profile)
            ),
            None => format!("config {}, no profile", path.display()),
        })
    }
}

/// One line of `--profiles`.
#[derive(Debug, Clone)]
pub struct ProfileRow {
    pub name: String,
    pub base_url: String,
    pub model: String,
    pub api: Api,
}

/// Values of one layer: the top level, or a profile.
#[derive(Debug, Clone, Default)]
struct Layer {
    base_url: Option<String>,
    api: Option<Api>,
    model: Option<String>,
    system: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    headers: Vec<(String, String)>,
    extra: Map<String, Value>,
    retries: Option<u32>,
    connect_timeout: Option<f64>,
    first_byte_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    timeout: Option<f64>,
    proxy: Option<String>,
    cacert: Option<PathBuf>,
    reasoning_effort: Option<String>,
    no_usage: Option<bool>,
    color: Option<Color>,
    key: Option<KeySource>,
    /// The settings that hold a secret, which only the file's owner may be able to read.
    secrets: Vec<Held>,
}

/// A setting that holds a secret: an `api_key`, a header [`crate::transport::request::is_secret_header`]
/// names, a `base_url` with [`crate::emit::redact::url_secrets`], a `proxy` with a password. Named
/// with its line for the error a file others can read gets.
#[derive(Debug, Clone)]
struct Held {
    line: usize,
    /// `profiles.a.headers.x-api-key`, scrubbed.
    place: String,
    what: Secret,
}

/// What kind of secret a setting holds.
#[derive(Debug, Clone, Copy)]
enum Secret {
    ApiKey,
    Header,
    Url,
    ProxyPassword,
}

impl Secret {
    fn described(self) -> &'static str {
        match self {
            Secret::ApiKey => "an API key",
            Secret::Header => "a secret header",
            Secret::Url => "a password or key in the URL",
            Secret::ProxyPassword => "a proxy password",
        }
    }
}

/// The file, read and checked whole.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    defaults: Layer,
    profiles: Vec<(String, Layer)>,
}

/// Reads the config file (if any), picks the profile, and folds both into `args` by the
/// precedence above.
pub fn apply(args: &mut Args) -> anyhow::Result<()> {
    args.config.key = flag_key(args).unwrap_or_default();
    let Some(path) = locate()? else {
        if let Some(profile) = &args.profile {
            return Err(UsageError(format!(
                "unknown profile {profile:?}: there is no config file ({})",
                default_location().map_or("set GPTSTREAM_CONFIG or HOME".into(), |p| p
                    .display()
                    .to_string())
            ))
            .into());
        }
        return Ok(());
    };
    let config = Config::read(&path)?;
    if args.profiles {
        // Each profile as `-p NAME` alone would resolve: the variables count, the other flags
        // (and a stale GPTSTREAM_PROFILE) do not.
        let plain = Args::parse_with_origins(["gptstream"]).unwrap_or_else(|_| args.clone());
        args.config.listing = config
            .profiles
            .iter()
            .map(|(name, _)| {
                let mut resolved = plain.clone();
                resolved.profile = Some(name.clone());
                config.fold(&mut resolved)?;
                Ok(ProfileRow {
                    name: name.clone(),
                    base_url: resolved.base_url,
                    model: resolved.model,
                    api: resolved.api,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        args.config.path = Some(path);
        return Ok(());
    }
    config.fold(args)
}

/// `--api-key-file`, which beats every other source.
fn flag_key(args: &Args) -> Option<KeySource> {
    args.api_key_file.as_ref().map(|path| KeySource::File {
        path: path.clone(),
        allow_shared: args.insecure_key_file,
        setting: "--api-key-file".into(),
    })
}

/// `$GPTSTREAM_CONFIG` (which must exist), else the XDG location if there is a file there.
fn locate() -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os("GPTSTREAM_CONFIG").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(
                UsageError(format!("GPTSTREAM_CONFIG={}: no such file", path.display())).into(),
            );
        }
        return Ok(Some(path));
    }
    Ok(default_location().filter(|path| path.is_file()))
}

/// `$XDG_CONFIG_HOME/gptstream/config.toml`, else `~/.config/gptstream/config.toml`.
fn default_location() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_CONFIG_HOME").or_else(|| Some(absolute("HOME")?.join(".config")))?;
    Some(base.join("gptstream").join("config.toml"))
}

impl Config {
    pub fn read(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            UsageError(format!("cannot read config file {}: {err}", path.display()))
        })?;
        Self::parse(&text, path).map_err(Into::into)
    }

    fn parse(text: &str, path: &Path) -> Result<Config, UsageError> {
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
        for (key, value) in root.get_ref() {
            if key.get_ref() == "profiles" {
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
        let layers = || profiles.iter().map(|(_, layer)| layer).chain([&defaults]);
        for layer in layers() {
            if let Some(KeySource::Inline(key)) = &layer.key {
                register_secret(key);
            }
        }
        // The first secret in the file's order is the one named.
        if let Some(held) = layers()
            .flat_map(|layer| &layer.secrets)
            .min_by_key(|held| held.line)
        {
            refuse_shared(path, held)?;
        }
        Ok(Config {
            path: path.to_owned(),
            defaults,
            profiles,
        })
    }

    /// Folds the selected profile (`args.profile`) and the defaults into `args`.
    fn fold(&self, args: &mut Args) -> anyhow::Result<()> {
        let profile = match &args.profile {
            Some(name) => Some(
                self.profiles
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, layer)| layer)
                    .ok_or_else(|| {
                        let names: Vec<String> = self
                            .profiles
                            .iter()
                            .map(|(n, _)| crate::error::scrub(n))
                            .collect();
                        UsageError(format!(
                            "unknown profile {name:?} (in {}: {})",
                            self.path.display(),
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ))
                    })?,
            ),
            None => None,
        };
        let top = &self.defaults;
        let origins = args.origins.clone();
        // Each setting from the layer that wins, set as the flag's field is (`Some` for an
        // optional flag).
        macro_rules! fold {
            ($set:expr; $($field:ident),*) => {$(
                if let Some(value) = pick(
                    origins.of(stringify!($field)),
                    profile.and_then(|p| p.$field.clone()),
                    top.$field.clone(),
                ) {
                    args.$field = $set(value);
                }
            )*};
        }
        fold!(std::convert::identity; base_url, api, model, retries, no_usage, color);
        // `--usage` is the flag that says no to `no_usage = true`.
        if args.usage {
            args.no_usage = false;
        }
        fold!(std::convert::identity; connect_timeout, first_byte_timeout, idle_timeout);
        fold!(Some; system, max_tokens, temperature, timeout, cacert, reasoning_effort);
        // The proxy's environment is read later, by `proxy::resolve`: a profile beats it, the
        // top level does not.
        if args.proxy.is_none() {
            let from_environment = crate::transport::proxy::setting(None).is_some();
            args.proxy = profile
                .and_then(|p| p.proxy.clone())
                .or_else(|| top.proxy.clone().filter(|_| !from_environment));
            if args.proxy.as_ref().is_some_and(|proxy| !proxy.is_empty()) {
                args.config.proxy_origin = "proxy of the config file";
            }
        }
        // Headers: the top level's, then the profile's, then `-H`, a later one of a name
        // replacing an earlier one.
        let flags: Vec<String> = std::mem::take(&mut args.headers);
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in top
            .headers
            .iter()
            .chain(profile.into_iter().flat_map(|p| &p.headers))
        {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        let flag_names: Vec<String> = flags
            .iter()
            .filter_map(|raw| raw.split_once(':').map(|(n, _)| n.trim().to_owned()))
            .collect();
        headers.retain(|(n, _)| !flag_names.iter().any(|f| f.eq_ignore_ascii_case(n)));
        args.headers = headers
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .chain(flags)
            .collect();
        // `extra`: the top level's, then the profile's, then `--extra`, each merged over the last.
        let mut extra = top.extra.clone();
        if let Some(profile) = profile {
            extra.extend(profile.extra.clone());
        }
        if !extra.is_empty() {
            match &args.extra {
                Some(flag) => {
                    // A bad --extra is reported where it always was, with its own words.
                    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(flag) {
                        extra.extend(fields);
                        args.extra = Some(Value::Object(extra).to_string());
                    }
                }
                None => args.extra = Some(Value::Object(extra).to_string()),
            }
        }
        // The key: the flag's file; else the profile's own source (never OPENAI_API_KEY); else,
        // when the top level set the server, the top level's source; else OPENAI_API_KEY; else
        // the top level's source if the top level names no server. A server the file names gets
        // the key the file names for it, and no other server gets that key.
        let server_from_top = !matches!(
            origins.of("base_url"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) && profile.is_none_or(|p| p.base_url.is_none())
            && top.base_url.is_some();
        let openai_key_set = std::env::var_os("OPENAI_API_KEY").is_some_and(|v| !v.is_empty());
        args.config.key = flag_key(args)
            .or_else(|| profile.and_then(|p| p.key.clone()))
            .or_else(|| {
                top.key
                    .clone()
                    .filter(|_| server_from_top || (top.base_url.is_none() && !openai_key_set))
            })
            .unwrap_or_default();
        args.config.path = Some(self.path.clone());
        args.config.profile = args.profile.clone();
        Ok(())
    }
}

/// The value a layer gives a setting that came from `source`: none over a flag, the profile's
/// over a variable, else the profile's or the top level's over the built-in default.
fn pick<T>(source: Option<ValueSource>, profile: Option<T>, top: Option<T>) -> Option<T> {
    match source {
        Some(ValueSource::CommandLine) => None,
        Some(ValueSource::EnvVariable) => profile,
        _ => profile.or(top),
    }
}

/// The file being read, for errors that name a line.
struct File<'a> {
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

    fn error<T>(&self, at: &Spanned<T>, key: &str, why: &str) -> UsageError {
        UsageError(format!(
            "{}:{}: {}: {why}",
            self.path.display(),
            self.line(at.span().start),
            crate::error::scrub(key)
        ))
    }

    fn held<T>(&self, at: &Spanned<T>, place: &str, what: Secret) -> Held {
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
                match crate::cli::plan::valid_seconds(secs) {
                    Some(_) => Ok(secs),
                    None => Err(fail(&format!(
                        "expected a positive number of seconds, at most {:e}",
                        crate::cli::plan::MAX_SECONDS
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
    KEYS.iter()
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
    let mode = crate::transport::request::shared_mode(path)
        .map_err(|err| UsageError(format!("cannot read config file {}: {err}", path.display())))?;
    let Some(mode) = mode else {
        return Ok(());
    };
    let or_else = match held.what {
        Secret::ApiKey => ", or use api_key_env or api_key_file",
        Secret::Header | Secret::Url | Secret::ProxyPassword => "",
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
