//! The API key: where it comes from (`OPENAI_API_KEY`, `--api-key-file`, the config file), read
//! once, and held so that printing it by accident prints `***`.
//!
//! The key is read here, and not through clap, so it never shows in `--help` or in a parse
//! error; `--dry-run` shows it as `Bearer ***`.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use anyhow::Context;

use crate::error::{UsageError, register_secret};

/// Where the API key comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum KeySource {
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

/// An API key. Printing it by accident prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Reads the key from where the flags and the config file said (see [`KeySource`]); `None`
/// when there is none. A key source that was named but is empty or unset is an error.
pub(crate) fn load_api_key(source: &KeySource) -> anyhow::Result<Option<ApiKey>> {
    let key = match source {
        KeySource::File {
            path,
            allow_shared,
            setting,
        } => {
            if !allow_shared {
                refuse_shared_key_file(path, setting)?;
            }
            fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", key_file(setting, path)))?
                .trim()
                .to_owned()
        }
        KeySource::OpenAiEnv => std::env::var("OPENAI_API_KEY")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        KeySource::Env { var, setting } => {
            let key = std::env::var(var).unwrap_or_default().trim().to_owned();
            if key.is_empty() {
                return Err(UsageError(format!(
                    "{} is not set ({setting} names it for the API key)",
                    crate::error::scrub(var)
                ))
                .into());
            }
            key
        }
        KeySource::Inline(key) => key.clone(),
    };
    if key.is_empty() {
        return Ok(None);
    }
    register_secret(&key);
    Ok(Some(ApiKey(key)))
}

/// Refuses a key file that other users can read or write, as ssh does with private keys.
fn refuse_shared_key_file(path: &std::path::Path, setting: &str) -> anyhow::Result<()> {
    let mode =
        shared_mode(path).with_context(|| format!("cannot read {}", key_file(setting, path)))?;
    if let Some(mode) = mode {
        // Only the flag's file may be used anyway: `--insecure-key-file` goes with it.
        let or_else = if setting == "--api-key-file" {
            ", or pass --insecure-key-file"
        } else {
            ""
        };
        return Err(UsageError(format!(
            "{} is accessible by other users (mode {mode:o}); run chmod 600 on it{or_else}",
            key_file(setting, path),
        ))
        .into());
    }
    Ok(())
}

/// `--api-key-file PATH`, or `PATH (api_key_file of profile p in CONFIG)`.
fn key_file(setting: &str, path: &std::path::Path) -> String {
    if setting.starts_with("--") {
        format!("{setting} {}", path.display())
    } else {
        format!("{} ({setting})", path.display())
    }
}

/// The permission bits of a file that others than its owner may read or write (`None` when
/// only its owner may, and always off Unix): a file holding a key must be its owner's alone.
pub(crate) fn shared_mode(path: &std::path::Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        Ok((mode & 0o077 != 0).then_some(mode & 0o777))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints() {
        let key = Some(ApiKey("sk-canary".into()));
        assert_eq!(format!("{key:?}"), "Some(ApiKey(***))");
    }
}
