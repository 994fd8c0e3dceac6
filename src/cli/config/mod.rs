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

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use serde_json::{Map, Value};

use crate::cli::args::{Api, Args, Color};
use crate::error::UsageError;
use crate::tools::mcp::Endpoint;
use crate::transport::key::KeySource;

mod file;
mod servers;

/// What the config file decided, for the layers below the flags.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// The file read, if there was one.
    pub(crate) path: Option<PathBuf>,
    /// The profile used, if one was selected.
    pub(crate) profile: Option<String>,
    pub(crate) key: KeySource,
    /// With `--profiles`: each profile as `-p NAME` would resolve it here, with no flags.
    pub(crate) listing: Vec<ProfileRow>,
    /// Where an explicit proxy came from, for its errors: `--proxy` or the config file.
    pub(crate) proxy_origin: &'static str,
    /// The file's `[mcp.NAME]` servers, which `--mcp NAME` enables.
    pub(crate) mcp_servers: Vec<(String, Endpoint)>,
    /// The servers the profile enables (`mcp = [...]`).
    pub(crate) mcp_enabled: Vec<String>,
}

impl Default for Applied {
    fn default() -> Self {
        Applied {
            path: None,
            profile: None,
            key: KeySource::default(),
            listing: Vec::new(),
            proxy_origin: "--proxy",
            mcp_servers: Vec::new(),
            mcp_enabled: Vec::new(),
        }
    }
}

impl Applied {
    /// `config PATH, profile NAME`, as `--dry-run` and `-v` say it; `None` without a file.
    pub(crate) fn describe(&self) -> Option<String> {
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
pub(crate) struct ProfileRow {
    pub(crate) name: String,
    pub(crate) base_url: String,
    pub(crate) model: String,
    pub(crate) api: Api,
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
    /// A profile's `mcp = [...]`: the servers it enables, each with its line.
    mcp: Vec<(String, usize)>,
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
    Variable,
}

impl Secret {
    fn described(self) -> &'static str {
        match self {
            Secret::ApiKey => "an API key",
            Secret::Header => "a secret header",
            Secret::Url => "a password or key in the URL",
            Secret::ProxyPassword => "a proxy password",
            Secret::Variable => "a secret environment variable",
        }
    }
}

/// The file, read and checked whole.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    path: PathBuf,
    defaults: Layer,
    profiles: Vec<(String, Layer)>,
    /// `[mcp.NAME]`.
    servers: Vec<(String, Endpoint)>,
}

/// Reads the config file (if any), picks the profile, and folds both into `args` by the
/// precedence above; what else the file decided comes back.
pub(crate) fn apply(args: &mut Args) -> anyhow::Result<Applied> {
    let mut applied = Applied {
        key: flag_key(args).unwrap_or_default(),
        ..Applied::default()
    };
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
        return Ok(applied);
    };
    let config = Config::read(&path)?;
    if args.profiles {
        // Each profile as `-p NAME` alone would resolve: the variables count, the other flags
        // (and a stale GPTSTREAM_PROFILE) do not.
        let plain = Args::parse_with_origins(["gptstream"]).unwrap_or_else(|_| args.clone());
        applied.listing = config
            .profiles
            .iter()
            .map(|(name, _)| {
                let mut resolved = plain.clone();
                resolved.profile = Some(name.clone());
                config.fold(&mut resolved, &mut Applied::default())?;
                Ok(ProfileRow {
                    name: name.clone(),
                    base_url: resolved.base_url,
                    model: resolved.model,
                    api: resolved.api,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        applied.path = Some(path);
        return Ok(applied);
    }
    config.fold(args, &mut applied)?;
    Ok(applied)
}

/// `--api-key-file`, which beats every other source.
fn flag_key(args: &Args) -> Option<KeySource> {
    args.api_key_file.as_ref().map(|path| KeySource::File {
        path: path.clone(),
        allow_shared: args.insecure_key_file,
        setting: "--api-key-file".into(),
    })
}

/// `--profiles`: one line per profile, `NAME  BASE_URL  MODEL  API` in columns, or one JSON
/// object per line with `--json`. URLs are shown without their secrets.
pub(crate) fn list(config: &Applied, json: bool) -> anyhow::Result<()> {
    let Some(path) = &config.path else {
        eprintln!("gptstream: no config file (see README, \"Profiles\")");
        return Ok(());
    };
    if config.listing.is_empty() {
        eprintln!("gptstream: {} has no [profiles.NAME] table", path.display());
    }
    let rows: Vec<[String; 4]> = config
        .listing
        .iter()
        .map(|row| {
            [
                crate::error::scrub(&row.name),
                crate::emit::redact::redact_url(&row.base_url),
                row.model.clone(),
                match row.api {
                    crate::cli::args::Api::Chat => "chat".to_owned(),
                    crate::cli::args::Api::Responses => "responses".to_owned(),
                },
            ]
        })
        .collect();
    let mut out = io::stdout().lock();
    if json {
        for [name, base_url, model, api] in &rows {
            let line =
                serde_json::json!({"name": name, "base_url": base_url, "model": model, "api": api});
            writeln!(out, "{line}")?;
        }
    } else {
        let width = |i: usize| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2)];
        for row in &rows {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            writeln!(out, "{}", line)?;
        }
    }
    out.flush()?;
    Ok(())
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
    pub(crate) fn read(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            UsageError(format!("cannot read config file {}: {err}", path.display()))
        })?;
        Self::parse(&text, path).map_err(Into::into)
    }

    /// Folds the selected profile (`args.profile`) and the defaults into `args`.
    fn fold(&self, args: &mut Args, applied: &mut Applied) -> anyhow::Result<()> {
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
                applied.proxy_origin = "proxy of the config file";
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
        applied.key = flag_key(args)
            .or_else(|| profile.and_then(|p| p.key.clone()))
            .or_else(|| {
                top.key
                    .clone()
                    .filter(|_| server_from_top || (top.base_url.is_none() && !openai_key_set))
            })
            .unwrap_or_default();
        applied.path = Some(self.path.clone());
        applied.profile = args.profile.clone();
        applied.mcp_servers = self.servers.clone();
        applied.mcp_enabled = profile
            .map(|p| p.mcp.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
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
