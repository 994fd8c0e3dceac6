//! The top: flags in, one [`Plan`], and the driver that carries it out. A single run and a chat
//! ([`crate::session::chat`]) drive the same session; this thread owns the sink and the conversation, and
//! writes how the run ended once, after the worker that streamed it has been joined.

use std::io::{self, Write};
use std::time::Instant;

use clap::CommandFactory;

use crate::cli::args::Args;
use crate::cli::plan::{self, Plan, Save};
use crate::control::supervisor::Control;
use crate::decode::stream;
use crate::error::{ApiError, Interrupted, Panicked, is_broken_pipe};
use crate::event::{ErrorReport, Event, Interruption, Sink};
use crate::session::answer::{self, Session, Settings};
use crate::session::conversation::Conversation;

/// Runs gptstream with parsed flags. An error that comes back has been reported through the
/// sink (the `--json` error event) but not printed; `main` prints it, unless [`is_reported`].
pub fn run(mut args: Args) -> anyhow::Result<()> {
    install_panic_hook();
    // The config file is one more source of the flags' values; a bad one is reported as any
    // usage error is, through the sink.
    // Not for `--completions` and `--man`, which must work whatever state the file is in.
    let configured = if args.completions.is_some() || args.man {
        Ok(())
    } else {
        crate::cli::config::apply(&mut args)
    };
    let chat = plan::is_chat(&args);
    let mut sink = plan::sink(&args, chat);
    if args.verbose
        && !args.dry_run
        && let Some(config) = args.config.describe()
    {
        eprintln!("* {config}");
    }
    let result = configured
        .and_then(|()| Plan::resolve(&args, chat))
        .and_then(|plan| carry_out(plan, &mut *sink));
    if let Err(err) = &result
        && !is_broken_pipe(err)
        && !err.is::<Interrupted>()
    {
        // Best effort: if stdout is gone too, the stderr line from main still tells.
        let _ = sink.emit(&Event::Error(&ErrorReport::from_error(err)));
    }
    result
}

/// True when the error needs no line from `main`: the sink said it (`interrupted ...`), or the
/// panic hook did.
pub fn is_reported(err: &anyhow::Error) -> bool {
    err.is::<Interrupted>() || err.is::<Panicked>()
}

fn carry_out(plan: Plan, sink: &mut (dyn Sink + Send)) -> anyhow::Result<()> {
    match plan {
        Plan::Completions(shell) => print_completions(shell),
        Plan::Replay {
            path,
            schema,
            choice,
        } => {
            let started = Instant::now();
            let mut progress = answer::Progress::default();
            let mut recording = answer::Recording {
                sink: &mut *sink,
                progress: &mut progress,
                choice,
                keep_text: schema.is_some(),
            };
            let mut turn = stream::replay(&path, &mut recording)?;
            turn.content = progress.text;
            turn.refusal = progress.refusal;
            let turns = [turn];
            let summary = answer::summary(&turns, started);
            if let Some(schema) = &schema {
                check_schema(schema, &turns, &summary, sink)?;
            }
            sink.emit(&Event::End(&summary))?;
            Ok(())
        }
        Plan::Man => crate::cli::manual::write(&mut io::stdout().lock()),
        Plan::Profiles { config, json } => list_profiles(&config, json),
        Plan::ListModels { settings, json } => list_models(settings, json),
        Plan::DryRun { request, config } => {
            let mut err = io::stderr().lock();
            if let Some(config) = config {
                writeln!(err, "* {config}")?;
            }
            request.print_dry_run(&mut io::stdout().lock(), &mut err)
        }
        Plan::Run {
            settings,
            conversation,
            save,
            schema,
        } => single(settings, conversation, &save, schema.as_ref(), sink),
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

/// One answer: streamed on a worker thread, stopped and joined on a signal, then reported and
/// saved here, once.
fn single(
    settings: Settings,
    mut conversation: Conversation,
    save: &Save,
    schema: Option<&serde_json::Value>,
    sink: &mut (dyn Sink + Send),
) -> anyhow::Result<()> {
    let control = Control::start()?;
    let mut session = Session::new(settings)?;
    let started = Instant::now();
    let stopper = session.stopper();
    let deadline = session.deadline().clone();
    let supervised = control.supervise(
        || stopper.stop(),
        &deadline,
        || session.answer(&mut conversation, sink),
        |_| {},
    );
    let progress = session.progress().clone();
    // Joins the threads that were draining finished bodies.
    drop(session);
    // The worker is joined: a signal has had its effect; the report and the save below may
    // take their time (a slow disk) without the watchdog cutting them short.
    control.settled();
    let err = match supervised.result {
        Ok(turns) => {
            if let Some(path) = &save.path {
                conversation.save(path)?;
            }
            let summary = answer::summary(&turns, started);
            if let Some(schema) = schema {
                check_schema(schema, &turns, &summary, sink)?;
            }
            sink.emit(&Event::End(&summary))?;
            return Ok(());
        }
        Err(err) => err,
    };
    let (err, why) = match supervised.signal {
        Some(signal) => {
            let interruption = Interruption {
                signal,
                usage: progress.usage.clone(),
            };
            // Best effort: stdout may be the reason we are being stopped.
            let _ = sink.emit(&Event::Interrupted(&interruption));
            let why = format!("interrupted by {}", signal.name());
            (Interrupted(signal).into(), why)
        }
        None => {
            let why = format!("{err:#}");
            (err, why)
        }
    };
    if let (true, Some(path)) = (save.partial, &save.path) {
        let in_flight = progress.in_flight.then_some(progress.text.as_str());
        conversation.close_unfinished(in_flight, &why);
        // The run's own failure decides the exit code; a failed save is said as well.
        if let Err(save_err) = conversation.save(path) {
            eprintln!("gptstream: {save_err:#}");
        }
    }
    Err(err)
}

/// Checks the answer (the last turn) against `--schema`, says so in a `schema` event, and is
/// exit 7 when it does not match; the stream completed all the same, so its `summary` is
/// still given (text mode's summary line).
pub(crate) fn check_schema(
    schema: &serde_json::Value,
    turns: &[crate::event::Turn],
    summary: &crate::event::Summary,
    sink: &mut (dyn Sink + Send),
) -> anyhow::Result<()> {
    let verdict = crate::session::schema::verdict(schema, turns.last());
    sink.emit(&Event::Schema {
        valid: verdict.is_ok(),
        error: verdict.as_ref().err().map(String::as_str),
    })?;
    if verdict.is_err() {
        sink.emit(&Event::Completed(summary))?;
    }
    verdict.map_err(|why| crate::session::schema::mismatch(&why))
}

/// `--profiles`: one line per profile, `NAME  BASE_URL  MODEL  API` in columns, or one JSON
/// object per line with `--json`. URLs are shown without their secrets.
fn list_profiles(config: &crate::cli::config::Applied, json: bool) -> anyhow::Result<()> {
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

/// `--list-models`: the ids the server lists, sorted, one per line; with `--json` each model's
/// object as the server sent it, in the same order.
fn list_models(settings: Settings, json: bool) -> anyhow::Result<()> {
    let mut session = Session::new(settings)?;
    let listing = session.get_json()?;
    let mut models = crate::session::models::from_listing(&listing)?;
    models.sort_by(|a, b| a.0.cmp(&b.0));
    if models.is_empty() {
        // Not silence: a script's empty stdout and a person's empty screen both need a reason.
        eprintln!("gptstream: the server listed no models");
    }
    let mut out = io::stdout().lock();
    for (id, model) in &models {
        if json {
            writeln!(out, "{model}")?;
        } else {
            writeln!(out, "{}", crate::error::scrub(id))?;
        }
    }
    out.flush()?;
    Ok(())
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

/// Generated in memory first: clap_complete panics on a write error, and `| head` is one.
fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "gptstream", &mut script);
    let mut stdout = io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}

impl ErrorReport {
    /// The `--json` view of an error: the whole message, and status and code when the server
    /// gave them.
    pub fn from_error(err: &anyhow::Error) -> Self {
        let api = err
            .chain()
            .find_map(|cause| cause.downcast_ref::<ApiError>());
        ErrorReport {
            message: format!("{err:#}"),
            status: api.and_then(|a| a.status),
            code: api.and_then(|a| a.code.clone()),
        }
    }
}
