//! `[mcp.NAME]` tables: MCP servers named once in the config file, enabled with `--mcp NAME` or
//! by a profile's `mcp = ["NAME", ...]`. A table has `command` (stdio, with an optional `env`
//! table) or `url` (Streamable HTTP, with an optional `headers` table), each key checked with
//! its line like every other setting.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::file::File;
use super::{Held, Secret};
use crate::error::{UsageError, register_secret};
use crate::tools::mcp::Endpoint;

const KEYS: &[&str] = &["command", "url", "env", "headers"];

/// A key of the file, with where it is.
type Key<'k> = Spanned<std::borrow::Cow<'k, str>>;

/// An environment variable whose name says it holds a secret: its value is blanked wherever
/// it might be shown, and the file that holds it must be its owner's alone.
fn is_secret_variable(name: &str) -> bool {
    crate::transport::request::is_secret_name(name)
}

impl File<'_> {
    /// The `[mcp.NAME]` tables of `value` (the top level's `mcp`), each a server, and the
    /// settings among them that hold a secret.
    pub(super) fn servers(
        &self,
        key: &Key<'_>,
        value: &Spanned<DeValue<'_>>,
        held: &mut Vec<Held>,
    ) -> Result<Vec<(String, Endpoint)>, UsageError> {
        let DeValue::Table(tables) = value.get_ref() else {
            return Err(self.error(
                key,
                "mcp",
                "at the top level, mcp is the [mcp.NAME] tables of MCP servers (a profile lists the names it enables: mcp = [\"NAME\"])",
            ));
        };
        let mut servers = Vec::new();
        for (name, table) in tables {
            let place = format!("mcp.{}", name.get_ref());
            if !crate::tools::mcp::is_name(name.get_ref()) {
                return Err(self.error(
                    name,
                    &place,
                    "a server's name is letters, digits, _ and -",
                ));
            }
            let DeValue::Table(table) = table.get_ref() else {
                return Err(self.error(name, &place, "must be a table with command or url"));
            };
            servers.push((
                name.get_ref().to_string(),
                self.server(name, table, &place, held)?,
            ));
        }
        Ok(servers)
    }

    fn server(
        &self,
        name: &Key<'_>,
        table: &DeTable<'_>,
        place: &str,
        held: &mut Vec<Held>,
    ) -> Result<Endpoint, UsageError> {
        let mut command = None;
        let mut url = None;
        let mut env = Vec::new();
        let mut headers = Vec::new();
        let mut env_at = None;
        let mut headers_at = None;
        for (key, value) in table {
            let key_place = format!("{place}.{}", key.get_ref());
            let string = || match value.get_ref() {
                DeValue::String(text) => Ok(text.to_string()),
                _ => Err(self.error(value, &key_place, "expected a string")),
            };
            match key.get_ref().as_ref() {
                "command" => {
                    let text = string()?;
                    if text.trim().is_empty() {
                        return Err(self.error(value, &key_place, "expected a command"));
                    }
                    command = Some(text);
                }
                "url" => {
                    let text = string()?;
                    match Endpoint::url(&text) {
                        Ok(Some(_)) => {}
                        _ => {
                            return Err(self.error(
                                value,
                                &key_place,
                                "expected an http:// or https:// URL with a host",
                            ));
                        }
                    }
                    if !crate::emit::redact::url_secrets(&text).is_empty() {
                        held.push(self.held(value, &key_place, Secret::Url));
                    }
                    url = Some(text);
                }
                "env" => {
                    env_at = Some(key);
                    for (var, text) in self.strings(value, &key_place)? {
                        let var_place = format!("{key_place}.{}", var.get_ref());
                        if var.get_ref().is_empty() || var.get_ref().contains(['=', '\0']) {
                            return Err(self.error(
                                var,
                                &var_place,
                                "expected the name of an environment variable",
                            ));
                        }
                        if text.contains('\0') {
                            return Err(self.error(var, &var_place, "the value holds a NUL"));
                        }
                        if is_secret_variable(var.get_ref()) && !text.is_empty() {
                            register_secret(&text);
                            held.push(self.held(var, &var_place, Secret::Variable));
                        }
                        env.push((var.get_ref().to_string(), text));
                    }
                }
                "headers" => {
                    headers_at = Some(key);
                    for (header, text) in self.strings(value, &key_place)? {
                        let header_place = format!("{key_place}.{}", header.get_ref());
                        crate::transport::request::check_header(header.get_ref(), &text)
                            .map_err(|why| self.error(header, &header_place, &why))?;
                        if crate::transport::request::is_secret_header(header.get_ref())
                            && !text.is_empty()
                        {
                            held.push(self.held(header, &header_place, Secret::Header));
                        }
                        headers.push((header.get_ref().to_string(), text));
                    }
                    crate::transport::request::register_header_secrets(&headers);
                }
                unknown => {
                    let hint = super::file::closest(unknown, KEYS)
                        .map_or(String::new(), |known| format!(" (did you mean {known:?}?)"));
                    return Err(self.error(key, &key_place, &format!("unknown key{hint}")));
                }
            }
        }
        match (command, url) {
            (Some(command), None) => {
                if let Some(at) = headers_at {
                    let why = "headers go with url; a command's server gets env";
                    return Err(self.error(at, &format!("{place}.headers"), why));
                }
                Ok(Endpoint::Command { command, env })
            }
            (None, Some(url)) => {
                if let Some(at) = env_at {
                    let why = "env goes with command; a url's server gets headers";
                    return Err(self.error(at, &format!("{place}.env"), why));
                }
                Ok(Endpoint::Url { url, headers })
            }
            (Some(_), Some(_)) => Err(self.error(name, place, "has both command and url")),
            (None, None) => Err(self.error(name, place, "needs command or url")),
        }
    }

    /// A table of strings, `{ "Name" = "value" }`.
    fn strings<'k>(
        &self,
        value: &'k Spanned<DeValue<'_>>,
        place: &str,
    ) -> Result<Vec<(&'k Key<'k>, String)>, UsageError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(value, place, "expected a table of \"NAME\" = \"value\""));
        };
        table
            .iter()
            .map(|(name, text)| match text.get_ref() {
                DeValue::String(text) => Ok((name, text.to_string())),
                _ => Err(self.error(
                    text,
                    &format!("{place}.{}", name.get_ref()),
                    "expected a string",
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/c/config.toml")).map_err(|err| err.0)
    }

    #[test]
    fn tables_of_both_kinds_and_a_profile_s_list() {
        let config = parse(
            r#"
[mcp.fs]
command = "npx -y server ."
env = { ROOT = "/tmp" }

[mcp.web]
url = "https://mcp.example.com/mcp"
headers = { X-Team = "a" }

[profiles.p]
mcp = ["fs", "web"]
"#,
        )
        .unwrap();
        assert_eq!(
            config.servers,
            [
                (
                    "fs".to_owned(),
                    Endpoint::Command {
                        command: "npx -y server .".into(),
                        env: vec![("ROOT".into(), "/tmp".into())]
                    }
                ),
                (
                    "web".to_owned(),
                    Endpoint::Url {
                        url: "https://mcp.example.com/mcp".into(),
                        headers: vec![("X-Team".into(), "a".into())]
                    }
                ),
            ]
        );
        assert_eq!(
            config.profiles[0].1.mcp,
            [("fs".to_owned(), 11), ("web".to_owned(), 11)]
        );
    }

    #[test]
    fn bad_tables_name_the_line_and_the_key() {
        let cases = [
            (
                "[mcp.fs]\ncomand = \"x\"\n",
                "/c/config.toml:2: mcp.fs.comand: unknown key (did you mean \"command\"?)",
            ),
            (
                "[mcp.fs]\ncommand = \"x\"\nurl = \"http://h/\"\n",
                "/c/config.toml:1: mcp.fs: has both command and url",
            ),
            (
                "[mcp.fs]\nenv = { A = \"b\" }\n",
                "/c/config.toml:1: mcp.fs: needs command or url",
            ),
            (
                "[mcp.fs]\ncommand = \"x\"\nheaders = { A = \"b\" }\n",
                "/c/config.toml:3: mcp.fs.headers: headers go with url; a command's server gets env",
            ),
            (
                "[mcp.web]\nurl = \"ftp://h/\"\n",
                "/c/config.toml:2: mcp.web.url: expected an http:// or https:// URL with a host",
            ),
            (
                "[mcp.web]\nurl = \"http://h/\"\nheaders = { \"Bad Name\" = \"v\" }\n",
                "/c/config.toml:3: mcp.web.headers.Bad Name: expected 'Name: value', the name of letters, digits and !#$%&'*+-.^_`|~",
            ),
            (
                "[mcp.fs]\ncommand = \"x\"\nenv = { A = 1 }\n",
                "/c/config.toml:3: mcp.fs.env.A: expected a string",
            ),
            (
                "[mcp.\"a b\"]\ncommand = \"x\"\n",
                "/c/config.toml:1: mcp.a b: a server's name is letters, digits, _ and -",
            ),
            (
                "mcp = [\"fs\"]\n",
                "/c/config.toml:1: mcp: at the top level, mcp is the [mcp.NAME] tables of MCP servers (a profile lists the names it enables: mcp = [\"NAME\"])",
            ),
            (
                "[profiles.p]\nmcp = [\"nope\"]\n",
                "/c/config.toml:2: profiles.p.mcp: no [mcp.nope] table",
            ),
            (
                "[profiles.p]\nmcp = \"fs\"\n",
                "/c/config.toml:2: profiles.p.mcp: expected a list of [mcp.NAME] names",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).err().as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn secret_variables_and_headers_are_secrets() {
        assert!(is_secret_variable("GITHUB_TOKEN"));
        assert!(is_secret_variable("api_key"));
        assert!(!is_secret_variable("ROOT"));
        // A secret makes the file's mode matter: a real file, the owner's alone.
        let path =
            std::env::temp_dir().join(format!("gptstream-servers-{}.toml", std::process::id()));
        let text = "[mcp.gh]\ncommand = \"x\"\nenv = { GITHUB_TOKEN = \"ghp-unit-canary-1\", ROOT = \"/\" }\n";
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = Config::parse(text, &path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let shared = Config::parse(text, &path).map(|_| ()).map_err(|err| err.0);
        let _ = std::fs::remove_file(&path);
        assert_eq!(config.unwrap().servers.len(), 1);
        assert_eq!(
            shared,
            Err(format!(
                "{}:3: mcp.gh.env.GITHUB_TOKEN: a secret environment variable in a file other users can access (mode 644); run chmod 600 on it",
                path.display()
            ))
        );
        assert_eq!(
            crate::error::scrub("saw ghp-unit-canary-1"),
            "saw ***",
            "the value is blanked wherever it might be shown"
        );
    }
}
