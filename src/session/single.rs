//! One answer to one conversation (with its tool loop), and `--replay`: the drivers of a
//! single run. The answer streams on a worker thread, stopped and joined on a signal; this
//! thread owns the sink and the conversation, and reports and saves how it ended, once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::control::supervisor::Control;
use crate::decode::stream;
use crate::error::Interrupted;
use crate::event::{Event, Interruption, Sink, Summary, Turn};
use crate::session::answer::{self, Session, Settings};
use crate::session::conversation::Conversation;

/// `--save` and `--save-partial`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Save {
    pub(crate) path: Option<PathBuf>,
    /// Also save an answer cut short by an error or a signal.
    pub(crate) partial: bool,
}

/// `--replay PATH`: decodes a recorded body as a live stream would be (and checks it against
/// `--schema`).
pub(crate) fn replay(
    path: &Path,
    schema: Option<&serde_json::Value>,
    choice: u64,
    sink: &mut (dyn Sink + Send),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut progress = answer::Progress::default();
    let mut recording = answer::Recording {
        sink: &mut *sink,
        progress: &mut progress,
        choice,
        keep_text: schema.is_some(),
    };
    let mut turn = stream::replay(path, &mut recording)?;
    turn.content = progress.text;
    turn.refusal = progress.refusal;
    let turns = [turn];
    let summary = Summary::of(&turns, started);
    if let Some(schema) = schema {
        check_schema(schema, &turns, &summary, sink)?;
    }
    sink.emit(&Event::End(&summary))?;
    Ok(())
}

/// One answer: streamed on a worker thread, stopped and joined on a signal, then reported and
/// saved here, once.
pub(crate) fn run(
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
            let summary = Summary::of(&turns, started);
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
    turns: &[Turn],
    summary: &Summary,
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
