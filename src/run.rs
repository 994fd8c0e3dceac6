//! The top: flags in, one [`Plan`] (from [`crate::cli::resolve`]), and each kind of plan handed
//! to the stage that carries it out: a single run ([`crate::session::single`]), a chat
//! ([`crate::session::chat`]), a listing. A failure is reported through the sink, once, here.

use std::io::{self, Write};

use crate::cli::args::Args;
use crate::cli::plan::Plan;
use crate::error::{Interrupted, is_broken_pipe};
use crate::event::{ErrorReport, Event, Interruption, Sink};
use crate::session::single;

/// Runs gptstream with parsed flags. An error that comes back has been reported through the
/// sink (the `--json` error event) but not printed; `main` prints it, unless [`crate::error::is_reported`].
pub fn run(args: Args) -> anyhow::Result<()> {
    install_panic_hook();
    let (mut sink, plan) = crate::cli::resolve(args);
    let result = match plan {
        Ok(plan) => carry_out(plan, &mut *sink),
        Err(err) => {
            // A signal while the plan was made (its MCP servers starting) is told as a signal
            // during the run is: no stage carried out has told it.
            if let Some(Interrupted(signal)) = err.downcast_ref() {
                let _ = sink.emit(&Event::Interrupted(&Interruption {
                    signal: *signal,
                    usage: None,
                }));
            }
            Err(err)
        }
    };
    if let Err(err) = &result
        && !is_broken_pipe(err)
        && !err.is::<Interrupted>()
    {
        // Best effort: if stdout is gone too, the stderr line from main still tells.
        let _ = sink.emit(&Event::Error(&ErrorReport::from_error(err)));
    }
    result
}

fn carry_out(plan: Plan, sink: &mut (dyn Sink + Send)) -> anyhow::Result<()> {
    match plan {
        Plan::Completions(shell) => crate::cli::print_completions(shell),
        Plan::Replay {
            path,
            schema,
            choice,
        } => single::replay(&path, schema.as_ref(), choice, sink),
        Plan::Man => crate::cli::manual::write(&mut io::stdout().lock()),
        Plan::Profiles { config, json } => crate::cli::config::list(&config, json),
        Plan::ListTools { toolbox, json } => toolbox.print_listing(json),
        Plan::ListModels { settings, json } => crate::session::models::list(settings, json),
        Plan::DryRun {
            request,
            config,
            mcp,
        } => {
            let mut err = io::stderr().lock();
            if let Some(config) = config {
                writeln!(err, "* {config}")?;
            }
            for server in mcp {
                writeln!(err, "* {server}")?;
            }
            request.print_dry_run(&mut io::stdout().lock(), &mut err)
        }
        Plan::Run {
            settings,
            conversation,
            save,
            schema,
        } => single::run(settings, conversation, &save, schema.as_ref(), sink),
        Plan::Chat {
            settings,
            conversation,
            save,
            first,
            schema,
            attachments,
        } => crate::session::chat::run(
            settings,
            conversation,
            save,
            crate::session::chat::Start { first, attachments },
            schema,
            sink,
        ),
    }
}

/// A panic is a bug: one line on stderr, then the error (or, in release builds, the abort).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = message.replace(['\n', '\r'], " ");
        eprintln!("gptstream: internal error: {message}{place}; please report it");
    }));
}
