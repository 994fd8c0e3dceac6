//! Profiles: the config file's defaults and `[profiles.NAME]`, their precedence against flags
//! and variables on every kind of key, the API key that never goes to the wrong host, and the
//! errors a bad file gets.

use serde_json::{Value, json};

use crate::server::{DONE, Server, content, finish, sse};
use crate::util::{Scratch, gptstream};

fn ok() -> Vec<crate::server::Step> {
    sse(&[content("ok"), finish("stop"), DONE.to_owned()])
}

/// A config file (mode 600, as a file with a key must be) and the command that reads it.
struct Setup {
    scratch: Scratch,
    path: String,
}

impl Setup {
    fn new(name: &str, text: &str) -> Setup {
        let scratch = Scratch::new(name);
        let path = scratch.file("config.toml", text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Setup { scratch, path }
    }

    fn gptstream(&self) -> crate::util::Gptstream {
        gptstream().env("GPTSTREAM_CONFIG", &self.path)
    }

    /// The body `--dry-run` shows with these flags and variables.
    fn body(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut command = self.gptstream().args(["--dry-run"]).args(args).arg("hi");
        for (key, value) in env {
            command = command.env(key, value);
        }
        let out = command.run();
        assert_eq!(out.code, 0, "{args:?} {env:?}: {}", out.render());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

const LAYERED: &str = r#"
model = "top-model"
max_tokens = 10
headers = { "X-A" = "top", "X-Top" = "t" }
extra = { seed = 1, stop = "top" }

[profiles.p]
model = "profile-model"
max_tokens = 20
headers = { "X-A" = "profile", "X-B" = "profile" }
extra = { seed = 2 }

[profiles.bare]
api = "responses"
"#;

#[test]
fn precedence_flag_profile_environment_defaults_on_strings_and_numbers() {
    let setup = Setup::new("profiles-precedence", LAYERED);
    let model = |args: &[&str], env: &[(&str, &str)]| setup.body(args, env)["model"].clone();
    let env = [("GPTSTREAM_MODEL", "env-model")];
    // Without a profile: the environment beats the file's defaults, which beat the built-in.
    assert_eq!(model(&[], &[]), "top-model");
    assert_eq!(model(&[], &env), "env-model");
    // A profile chosen on purpose beats the environment; a flag beats everything.
    assert_eq!(model(&["-p", "p"], &env), "profile-model");
    assert_eq!(
        model(&[], &[("GPTSTREAM_PROFILE", "p"), env[0]]),
        "profile-model"
    );
    assert_eq!(model(&["-p", "p", "-m", "flag-model"], &env), "flag-model");
    // A profile without the key: the environment, then the defaults.
    assert_eq!(model(&["-p", "bare"], &env), "env-model");
    assert_eq!(model(&["-p", "bare"], &[]), "top-model");
    // Numbers: no variable, the same order otherwise.
    let max = |args: &[&str]| setup.body(args, &[])["max_tokens"].clone();
    assert_eq!(max(&[]), 10);
    assert_eq!(max(&["-p", "p"]), 20);
    assert_eq!(max(&["-p", "p", "--max-tokens", "30"]), 30);
    // An enum key: the profile's api changes the endpoint and the body's shape.
    let out = setup
        .gptstream()
        .args(["--dry-run", "-p", "bare", "hi"])
        .run();
    assert!(out.stderr.contains("/v1/responses"), "{}", out.stderr);
}

#[test]
fn tables_merge_top_then_profile_then_flags() {
    let setup = Setup::new("profiles-tables", LAYERED);
    let body = setup.body(&["-p", "p", "--extra", r#"{"stop":"flag"}"#], &[]);
    assert_eq!(body["seed"], 2, "the profile's extra over the defaults'");
    assert_eq!(body["stop"], "flag", "--extra over both");
    assert_eq!(setup.body(&[], &[])["seed"], 1);
    // Headers go on the wire: the profile's X-A over the top level's, -H over the profile's.
    let server = Server::one(ok());
    let out = setup
        .gptstream()
        .server(&server)
        .args(["-q", "-p", "p", "-H", "X-B: flag", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let request = server.request();
    assert_eq!(request.header("x-a"), Some("profile"));
    assert_eq!(request.header("x-b"), Some("flag"));
    assert_eq!(request.header("x-top"), Some("t"));
    let x_b = request.headers.iter().filter(|(n, _)| n == "x-b").count();
    assert_eq!(x_b, 1, "a header given twice is sent once");
}

#[test]
fn a_profile_with_its_own_key_never_sends_the_openai_key() {
    let server = Server::start(vec![ok(), ok(), ok()]);
    let config = format!(
        r#"
[profiles.router]
base_url = "{base}"
api_key_env = "ROUTER_KEY"

[profiles.local]
base_url = "{base}"
"#,
        base = server.base_url()
    );
    let setup = Setup::new("profiles-keys", &config);
    let run = |profile: &str, env: &[(&str, &str)]| {
        let mut command = setup.gptstream().args(["-q", "-p", profile, "hi"]);
        // OPENAI_BASE_URL points nowhere: the profile's base_url must win over it.
        command = command
            .env("OPENAI_API_KEY", "sk-openai-canary")
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
        for (key, value) in env {
            command = command.env(key, value);
        }
        command.run()
    };
    let out = run("router", &[("ROUTER_KEY", "sk-router")]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().header("authorization"),
        Some("Bearer sk-router")
    );
    // Its variable unset: exit 2 naming it, and nothing is sent (not even without a key).
    let out = run("router", &[]);
    assert_eq!(
        out.render(),
        format!(
            "status: 2\n--- stdout\n\n--- stderr\ngptstream: ROUTER_KEY is not set (api_key_env of profile router in {} names it for the API key)\n",
            setup.path
        )
    );
    // A profile without a key source of its own gets OPENAI_API_KEY.
    let out = run("local", &[]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().header("authorization"),
        Some("Bearer sk-openai-canary")
    );
    assert_eq!(
        server.connections(),
        2,
        "the run without its key sent nothing"
    );
}

#[test]
fn profiles_lists_them_as_columns_or_json_lines() {
    let setup = Setup::new(
        "profiles-list",
        r#"
model = "m0"
[profiles.openai]
[profiles.local-llama]
base_url = "http://user:secret@127.0.0.1:8080/v1"
model = "qwen"
api = "responses"
"#,
    );
    let out = setup.gptstream().arg("--profiles").run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n\
         openai       https://api.openai.com/v1          m0    chat\n\
         local-llama  http://user:***@127.0.0.1:8080/v1  qwen  responses\n\
         \n--- stderr\n"
    );
    let out = setup.gptstream().args(["--profiles", "--json"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        out.json_lines(),
        [
            json!({"name":"openai","base_url":"https://api.openai.com/v1","model":"m0","api":"chat"}),
            json!({"name":"local-llama","base_url":"http://user:***@127.0.0.1:8080/v1","model":"qwen","api":"responses"}),
        ]
    );
}

#[test]
fn bad_config_is_exit_2_with_file_line_and_key_before_anything_else() {
    let setup = Setup::new(
        "profiles-bad",
        "[profiles.a]\nmodel = \"m\"\n\n[profiles.b]\nmodle = \"x\"\n",
    );
    // The unselected profile is checked too.
    let out = setup.gptstream().args(["-p", "a", "hi"]).run();
    assert_eq!(
        out.render(),
        format!(
            "status: 2\n--- stdout\n\n--- stderr\ngptstream: {}:5: profiles.b.modle: unknown key (did you mean \"model\"?)\n",
            setup.path
        )
    );
    let setup = Setup::new("profiles-unknown", "[profiles.a]\n[profiles.b]\n");
    let out = setup.gptstream().args(["-p", "c", "hi"]).run();
    assert_eq!(
        out.stderr,
        format!(
            "gptstream: unknown profile \"c\" (in {}: a, b)\n",
            setup.path
        )
    );
    assert_eq!(out.code, 2);
    // With --json the error is an event too.
    let out = setup.gptstream().args(["--json", "-p", "c", "hi"]).run();
    assert_eq!(out.json_lines()[0]["type"], "error");
    // No file: -p is an error, not a silent default.
    let out = gptstream().args(["-p", "x", "hi"]).run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("unknown profile \"x\": there is no config file")
    );
    let out = gptstream()
        .env("GPTSTREAM_CONFIG", &setup.scratch.path("missing.toml"))
        .arg("hi")
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("missing.toml: no such file"));
}

#[cfg(unix)]
#[test]
fn a_key_in_a_file_others_can_read_is_refused_and_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::one(ok());
    let setup = Setup::new(
        "profiles-inline",
        &format!(
            "[profiles.s]\nbase_url = \"{}\"\napi_key = \"sk-inline-canary\"\n",
            server.base_url()
        ),
    );
    let out = setup.gptstream().args(["-q", "-p", "s", "-v", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().header("authorization"),
        Some("Bearer sk-inline-canary")
    );
    assert!(!out.stderr.contains("sk-inline-canary"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("* config {}, profile s", setup.path))
    );
    std::fs::set_permissions(&setup.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = setup.gptstream().args(["-p", "s", "hi"]).run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("mode 640"), "{}", out.stderr);
    assert!(!out.stderr.contains("sk-inline-canary"));
}

#[test]
fn dry_run_says_which_config_and_profile() {
    let setup = Setup::new("profiles-dry", LAYERED);
    let out = setup.gptstream().args(["--dry-run", "-p", "p", "hi"]).run();
    assert!(
        out.stderr
            .starts_with(&format!("* config {}, profile p\nPOST ", setup.path)),
        "{}",
        out.stderr
    );
    let out = setup.gptstream().args(["--dry-run", "-v", "hi"]).run();
    assert!(
        out.stderr
            .starts_with(&format!("* config {}, no profile\n", setup.path))
    );
    assert_eq!(
        out.stderr.matches("* config").count(),
        1,
        "said once: {}",
        out.stderr
    );
    // No file, no line.
    let out = gptstream().args(["--dry-run", "hi"]).run();
    assert!(out.stderr.starts_with("POST "), "{}", out.stderr);
}

#[test]
fn a_profile_s_proxy_beats_the_variables_and_the_top_level_s_does_not() {
    use crate::socks::SocksProxy;
    let server = Server::start(vec![ok(), ok()]);
    let socks = SocksProxy::start();
    let dead = format!("socks5://127.0.0.1:{}", crate::server::unused_port());
    let config = format!(
        "proxy = \"{dead}\"\n[profiles.via]\nbase_url = \"{}\"\nproxy = \"{}\"\n",
        server.base_url(),
        socks.url("socks5")
    );
    let setup = Setup::new("profiles-proxy", &config);
    // The profile's proxy over ALL_PROXY (which points nowhere).
    let out = setup
        .gptstream()
        .env("ALL_PROXY", &dead)
        .args(["-q", "-p", "via", "--retries", "0", "hi"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    assert_eq!(socks.connects().len(), 1);
    // Without a profile, ALL_PROXY (the working one now) beats the top level's dead proxy.
    let out = setup
        .gptstream()
        .server(&server)
        .env("ALL_PROXY", &socks.url("socks5"))
        .args(["-q", "--retries", "0", "hi"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    assert_eq!(socks.connects().len(), 2);
    // Alone, the top level's proxy is used, and its failure names where it was set.
    let out = setup
        .gptstream()
        .server(&server)
        .args(["-q", "--retries", "0", "hi"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    assert!(
        out.stderr.contains("proxy of the config file"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_color_key_and_a_flag_over_it() {
    let setup = Setup::new("profiles-color", "color = \"always\"\n");
    let reasoning = || {
        Server::one(sse(&[
            crate::server::delta(json!({"reasoning_content":"hmm"}), None),
            content("ok"),
            finish("stop"),
            DONE.to_owned(),
        ]))
    };
    let server = reasoning();
    let out = setup.gptstream().server(&server).arg("hi").run();
    assert!(
        out.stderr.contains('\x1b'),
        "color = always colours a pipe: {:?}",
        out.stderr
    );
    let server = reasoning();
    let out = setup
        .gptstream()
        .server(&server)
        .args(["--color", "never", "hi"])
        .run();
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    let bad = Setup::new(
        "profiles-color-bad",
        "[profiles.x]\nproxy = \"ftp://h:1\"\n",
    );
    let out = bad.gptstream().arg("hi").run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains(":2: profiles.x.proxy: bad proxy ftp://h:1"),
        "{}",
        out.stderr
    );
}

#[test]
fn review_a_server_set_at_the_top_level_gets_the_top_level_s_key_not_openai_s() {
    let server = Server::start(vec![ok(), ok()]);
    let setup = Setup::new(
        "profiles-top-key",
        &format!(
            "base_url = \"{}\"\napi_key_env = \"OTHER_KEY\"\n[profiles.x]\nmodel = \"xm\"\n",
            server.base_url()
        ),
    );
    for args in [&["-q", "hi"][..], &["-q", "-p", "x", "hi"]] {
        let out = setup
            .gptstream()
            .env("OPENAI_API_KEY", "sk-openai-canary")
            .env("OTHER_KEY", "sk-other")
            .args(args)
            .run();
        assert_eq!(out.code, 0, "{args:?}: {}", out.render());
        assert_eq!(
            server.request().header("authorization"),
            Some("Bearer sk-other"),
            "{args:?}"
        );
    }
}

#[test]
fn review_no_proxy_bypasses_a_config_proxy_and_an_empty_one_is_direct() {
    let server = Server::start(vec![ok(), ok(), ok()]);
    let dead = format!("http://127.0.0.1:{}", crate::server::unused_port());
    let setup = Setup::new(
        "profiles-no-proxy",
        &format!(
            "proxy = \"{dead}\"\n[profiles.local]\nbase_url = \"{}\"\n[profiles.direct]\nbase_url = \"{}\"\nproxy = \"\"\n",
            server.base_url(),
            server.base_url()
        ),
    );
    let run = |profile: &str, env: &[(&str, &str)]| {
        let mut command = setup
            .gptstream()
            .args(["-q", "--retries", "0", "-p", profile, "hi"]);
        for (key, value) in env {
            command = command.env(key, value);
        }
        command.run()
    };
    // The top level's proxy, bypassed for 127.0.0.1 as NO_PROXY says.
    let out = run("local", &[("NO_PROXY", "127.0.0.1")]);
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    let out = run("local", &[]);
    assert_eq!(
        out.code,
        4,
        "without NO_PROXY the dead proxy is used: {}",
        out.render()
    );
    // `proxy = ""`: a direct connection, over the top level's and over ALL_PROXY.
    let out = run("direct", &[("ALL_PROXY", &dead)]);
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    // And `--proxy ''` on the command line, as curl has it.
    let out = setup
        .gptstream()
        .env("ALL_PROXY", &dead)
        .args(["-q", "--retries", "0", "-p", "local", "--proxy", "", "hi"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
}

#[test]
fn review_man_completions_and_profiles_work_whatever_the_file_s_state() {
    let bad = Setup::new("profiles-bad-man", "modle = 1\n");
    for args in [&["--man"][..], &["--completions", "bash"]] {
        let out = bad.gptstream().args(args).run();
        assert_eq!(out.code, 0, "{args:?}: {}", out.render());
    }
    let setup = Setup::new("profiles-stale", "[profiles.a]\n[profiles.b]\n");
    let out = setup
        .gptstream()
        .env("GPTSTREAM_PROFILE", "gone")
        .arg("--profiles")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout().lines().count(), 2);
    // The listing is what `-p NAME` alone resolves: other flags do not leak into it.
    let out = setup
        .gptstream()
        .args(["--profiles", "-m", "flag-model"])
        .run();
    assert!(!out.stdout().contains("flag-model"), "{}", out.stdout());
}

#[test]
fn review_a_variable_set_to_nothing_is_not_set() {
    let setup = Setup::new("profiles-empty-vars", "model = \"top-model\"\n");
    let body = setup.body(&[], &[("GPTSTREAM_PROFILE", ""), ("GPTSTREAM_MODEL", "")]);
    assert_eq!(body["model"], "top-model");
    let out = gptstream()
        .env("GPTSTREAM_PROFILE", "")
        .env("GPTSTREAM_MODEL", "")
        .args(["--dry-run", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
}

#[cfg(unix)]
#[test]
fn review_a_config_key_file_is_named_as_the_config_s_and_relative_to_it() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::one(ok());
    let setup = Setup::new(
        "profiles-key-file",
        &format!(
            "[profiles.f]\nbase_url = \"{}\"\napi_key_file = \"key.txt\"\n",
            server.base_url()
        ),
    );
    let key = setup.scratch.file("key.txt", "sk-from-file\n");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Run from elsewhere: the path is the config file's neighbour, not the working directory's.
    let out = setup
        .gptstream()
        .args(["-q", "-p", "f", "hi"])
        .current_dir("/")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().header("authorization"),
        Some("Bearer sk-from-file")
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = setup.gptstream().args(["-p", "f", "hi"]).run();
    assert_eq!(
        out.stderr,
        format!(
            "gptstream: {key} (api_key_file of profile f in {}) is accessible by other users (mode 644); run chmod 600 on it\n",
            setup.path
        )
    );
}

#[test]
fn review_the_top_level_s_key_never_goes_to_a_server_it_did_not_name() {
    let server = Server::start(vec![ok(), ok()]);
    let setup = Setup::new(
        "profiles-top-key-elsewhere",
        &format!(
            "base_url = \"{base}/top\"\napi_key_env = \"LOCAL_KEY\"\n[profiles.other]\nbase_url = \"{base}\"\n",
            base = server.base_url()
        ),
    );
    // A profile's own server, and a server from OPENAI_BASE_URL: neither gets LOCAL_KEY.
    let out = setup
        .gptstream()
        .env("LOCAL_KEY", "sk-local-canary")
        .args(["-q", "-p", "other", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(server.request().header("authorization"), None);
    let out = setup
        .gptstream()
        .server(&server)
        .env("LOCAL_KEY", "sk-local-canary")
        .args(["-q", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(server.request().header("authorization"), None);
}

#[test]
fn review_absurd_timeouts_escape_sequences_and_a_header_without_colon() {
    for flag in [
        "--timeout",
        "--connect-timeout",
        "--first-byte-timeout",
        "--idle-timeout",
    ] {
        let out = gptstream()
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .args([flag, "1.8e19", "hi"])
            .run();
        assert_eq!(out.code, 2, "{flag}: {}", out.render());
        assert!(out.stderr.contains("at most 1e9"), "{flag}: {}", out.stderr);
    }
    let setup = Setup::new(
        "profiles-escapes",
        "[profiles.\"\\u001b[31mred\"]\napi_key_env = \"NOPE\\u001b[2J\"\n",
    );
    let out = setup
        .gptstream()
        .args(["-p", "\x1b[31mred", "-v", "hi"])
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("is not set"), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    let out = gptstream()
        .args([
            "-H",
            "Authorization Bearer sk-typed-canary",
            "--dry-run",
            "hi",
        ])
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(!out.stderr.contains("sk-typed-canary"), "{}", out.stderr);
}

#[test]
fn usage_flag_says_no_to_the_config_s_no_usage() {
    let setup = Setup::new("profiles-usage", "no_usage = true\n");
    assert!(setup.body(&[], &[]).get("stream_options").is_none());
    assert_eq!(
        setup.body(&["--usage"], &[])["stream_options"],
        json!({"include_usage": true})
    );
    // The last of --usage and --no-usage wins.
    assert!(
        setup
            .body(&["--usage", "--no-usage"], &[])
            .get("stream_options")
            .is_none()
    );
    assert!(
        setup
            .body(&["--no-usage", "--usage"], &[])
            .get("stream_options")
            .is_some()
    );
}

/// #20.15: every secret a config file holds, not only `api_key`, needs a file only its owner can
/// read: a secret header (the names `-v` shows as `***`), a password or key inside `base_url`
/// (what `--dry-run` shows as `***`), a proxy's password. The error names the file, the line and
/// the setting, never the secret; the same file at mode 600 is used, and settings that hold no
/// secret are fine at any mode.
#[cfg(unix)]
#[test]
fn issue20_15_every_secret_in_a_config_others_can_read_is_refused_with_its_line() {
    use std::os::unix::fs::PermissionsExt;
    let refused = [
        (
            "model = \"m\"\nheaders = { \"X-Title\" = \"t\", \"x-api-key\" = \"hdr-canary-15\" }\n",
            "2: headers.x-api-key: a secret header",
        ),
        (
            "[profiles.a]\nmodel = \"m\"\n\n[profiles.a.headers]\nAuthorization = \"Bearer hdr-canary-15\"\n",
            "5: profiles.a.headers.Authorization: a secret header",
        ),
        (
            "[profiles.g]\nbase_url = \"https://gw.example/v1?key=url-canary-15\"\n",
            "2: profiles.g.base_url: a password or key in the URL",
        ),
        (
            "base_url = \"http://me:url-canary-15@127.0.0.1:9/v1\"\n",
            "1: base_url: a password or key in the URL",
        ),
        (
            "[profiles.p]\nproxy = \"http://me:proxy-canary-15@127.0.0.1:9\"\n",
            "2: profiles.p.proxy: a proxy password",
        ),
        (
            "[profiles.k]\nmodel = \"m\"\napi_key = \"key-canary-15\"\n",
            "3: profiles.k.api_key: an API key",
        ),
    ];
    for (text, error) in refused {
        let setup = Setup::new("profiles-secrets", text);
        let out = setup.gptstream().args(["--dry-run", "hi"]).run();
        assert_eq!(out.code, 0, "{text}: {}", out.render());
        std::fs::set_permissions(&setup.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = setup.gptstream().args(["--dry-run", "hi"]).run();
        let hint = if error.ends_with("an API key") {
            ", or use api_key_env or api_key_file"
        } else {
            ""
        };
        assert_eq!(
            out.render(),
            format!(
                "status: 2\n--- stdout\n\n--- stderr\ngptstream: {}:{error} in a file other users can access (mode 644); run chmod 600 on it{hint}\n",
                setup.path
            ),
            "{text}"
        );
        assert!(!out.render().contains("canary-15"));
    }
    let accepted = [
        "headers = { \"X-Title\" = \"t\", \"x-api-key\" = \"\" }\n",
        "base_url = \"https://gw.example/v1?api-version=2024-10-21\"\n",
        "proxy = \"http://127.0.0.1:9\"\n",
        "[profiles.e]\napi_key_env = \"SOME_KEY\"\n",
    ];
    for text in accepted {
        let setup = Setup::new("profiles-no-secrets", text);
        std::fs::set_permissions(&setup.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = setup.gptstream().args(["--dry-run", "hi"]).run();
        assert_eq!(out.code, 0, "{text}: {}", out.render());
    }
}
