//! The flags stage: what the user typed (clap's [`args::Args`]), the config file and the
//! environment, resolved once into a [`plan::Plan`]. Nothing below this stage sees a flag.

pub mod args;
pub(crate) mod config;
pub(crate) mod manual;
pub(crate) mod plan;
pub(crate) mod template;

use std::io::{self, Write};

use clap::CommandFactory;

use crate::event::Sink;
use args::Args;
use plan::Plan;

/// The flags, the config file and the environment, resolved once: the sink that every outcome
/// is reported through (it depends only on flags that cannot be wrong), and what to do, or
/// the usage error (exit 2) that stops the run before anything is sent.
pub(crate) fn resolve(mut args: Args) -> (Box<dyn Sink + Send>, anyhow::Result<Plan>) {
    // The config file is one more source of the flags' values; a bad one is reported as any
    // usage error is, through the sink.
    // Not for `--completions` and `--man`, which must work whatever state the file is in.
    let configured = if args.completions.is_some() || args.man {
        Ok(config::Applied::default())
    } else {
        config::apply(&mut args)
    };
    let chat = plan::is_chat(&args);
    if let Ok(configured) = &configured
        && args.verbose
        && !args.dry_run
        && let Some(config) = configured.describe()
    {
        eprintln!("* {config}");
    }
    let plan = configured.and_then(|configured| Plan::resolve(&args, configured, chat));
    // After the plan, which knows the MCP servers' tools: their calls are not the answer.
    let mut executed = plan::exec_names(&args);
    if let Ok(plan) = &plan {
        executed.extend(plan.mcp_tool_names());
    }
    (plan::sink(&args, chat, executed), plan)
}

/// Generated in memory first: clap_complete panics on a write error, and `| head` is one.
pub(crate) fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "gptstream", &mut script);
    let mut stdout = io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}
