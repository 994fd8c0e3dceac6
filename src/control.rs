//! The control path around a stream: one answer runs on a worker thread while this thread waits
//! for it to end, for a signal, or (in chat) for lines typed ahead.
//!
//! On a signal the answer is told to stop: its [`Cancel`] is set (ending any backoff wait), the
//! session's HTTP agent is shut down (which ends a read blocked on a silent server) and running
//! tools are killed. Then the worker is joined. Only after that does the caller, the one owner of
//! the sink and the conversation, write how the answer ended: nothing is written twice, nothing
//! after the end. A worker that panics is joined too, and becomes one error.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::error::{Cancelled, Panicked};
use crate::signals::{Listener, Signal};

/// What the controlling thread waits for.
pub(crate) enum Notice {
    Signal(Signal),
    /// A line from the chat's stdin thread.
    Line(String),
    /// The end of the chat's stdin.
    Eof,
    /// The worker thread has returned (or panicked).
    Finished,
}

/// How long a stopped answer may take to return before the process leaves without it: only a
/// write blocked on a stdout nobody reads can take that long.
const STOP_PATIENCE: Duration = Duration::from_secs(3);

/// A flag that a running answer checks between steps, and that wakes its waits.
#[derive(Clone, Default)]
pub(crate) struct Cancel(Arc<(Mutex<bool>, Condvar)>);

impl Cancel {
    pub(crate) fn cancel(&self) {
        let (cancelled, wake) = &*self.0;
        *cancelled.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error a worker returns when it finds itself cancelled.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.is_cancelled() {
            return Err(Cancelled.into());
        }
        Ok(())
    }

    /// Waits `wait`, or less if cancelled meanwhile (then it is an error).
    pub(crate) fn sleep(&self, wait: Duration) -> anyhow::Result<()> {
        let (cancelled, wake) = &*self.0;
        let guard = cancelled.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, wait, |cancelled| !*cancelled)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard {
            return Err(Cancelled.into());
        }
        Ok(())
    }
}

/// The controlling thread's end of the control path: signals, chat input, worker endings.
pub(crate) struct Control {
    notices: Sender<Notice>,
    inbox: Receiver<Notice>,
    _signals: Listener,
}

/// How a supervised answer ended.
pub(crate) struct Supervised<T> {
    /// The worker's own result (a panic becomes [`Panicked`]).
    pub result: anyhow::Result<T>,
    /// The signal that stopped it, if one came while it ran.
    pub signal: Option<Signal>,
}

/// Sends [`Notice::Finished`] when dropped: at the worker's return, and at its panic too.
struct FinishedOnDrop(Sender<Notice>);

impl Drop for FinishedOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Notice::Finished);
    }
}

impl Control {
    /// Starts listening for signals.
    pub(crate) fn start() -> anyhow::Result<Control> {
        let (notices, inbox) = mpsc::channel();
        let on_signal = notices.clone();
        let signals = Listener::start(move |signal| {
            let _ = on_signal.send(Notice::Signal(signal));
        })
        .context("cannot listen for signals")?;
        Ok(Control {
            notices,
            inbox,
            _signals: signals,
        })
    }

    /// Where other threads (chat's stdin reader) post their notices.
    pub(crate) fn sender(&self) -> Sender<Notice> {
        self.notices.clone()
    }

    /// The next notice; between answers only signals and chat input arrive.
    pub(crate) fn next(&self) -> Notice {
        // `self` holds a sender, so the channel cannot close.
        self.inbox.recv().unwrap_or(Notice::Eof)
    }

    /// Runs `work` on a worker thread and waits for it. A signal calls `stop` (once) and still
    /// waits for the worker to return; other notices (typed-ahead chat lines) go to `aside`.
    pub(crate) fn supervise<T: Send>(
        &self,
        stop: impl FnOnce(),
        work: impl FnOnce() -> anyhow::Result<T> + Send,
        mut aside: impl FnMut(Notice),
    ) -> Supervised<T> {
        thread::scope(|scope| {
            let finished = FinishedOnDrop(self.notices.clone());
            let worker =
                thread::Builder::new()
                    .name("stream".into())
                    .spawn_scoped(scope, move || {
                        let _finished = finished;
                        #[cfg(debug_assertions)]
                        if std::env::var_os("GPTSTREAM_DEBUG_PANIC").is_some() {
                            panic!("GPTSTREAM_DEBUG_PANIC is set");
                        }
                        work()
                    });
            let worker = match worker {
                Ok(worker) => worker,
                Err(err) => {
                    return Supervised {
                        result: Err(anyhow::Error::new(err).context("cannot start a thread")),
                        signal: None,
                    };
                }
            };
            let mut stop = Some(stop);
            let mut signal = None;
            let mut deadline: Option<Instant> = None;
            loop {
                let notice = match deadline {
                    None => self.next(),
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match self.inbox.recv_timeout(left) {
                            Ok(notice) => notice,
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                leave_without_worker(signal)
                            }
                        }
                    }
                };
                match notice {
                    Notice::Finished => break,
                    Notice::Signal(first) if signal.is_none() => {
                        signal = Some(first);
                        if let Some(stop) = stop.take() {
                            stop();
                        }
                        deadline = Some(Instant::now() + STOP_PATIENCE);
                    }
                    // A second Ctrl-C: the user does not want to wait.
                    Notice::Signal(_) => leave_without_worker(signal),
                    other => aside(other),
                }
            }
            let result = worker.join().unwrap_or_else(|_| Err(Panicked.into()));
            Supervised { result, signal }
        })
    }
}

/// The last resort when a stopped worker does not return (blocked writing to a stdout that
/// nobody reads): say so and leave with the signal's exit code, as the signal alone would have.
fn leave_without_worker(signal: Option<Signal>) -> ! {
    let signal = signal.unwrap_or(Signal::Interrupt);
    eprintln!(
        "gptstream: interrupted by {}; the answer did not stop within {}s (is stdout blocked?)",
        signal.name(),
        STOP_PATIENCE.as_secs()
    );
    std::process::exit(i32::from(signal.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_ends_a_sleep_early_and_is_an_error() {
        let cancel = Cancel::default();
        assert!(cancel.sleep(Duration::from_millis(1)).is_ok());
        let waker = cancel.clone();
        let started = Instant::now();
        let sleeper = thread::spawn(move || cancel.sleep(Duration::from_secs(60)));
        waker.cancel();
        let slept = sleeper.join().unwrap();
        assert!(slept.unwrap_err().is::<Cancelled>());
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(waker.check().is_err());
    }

    #[test]
    fn a_panicking_worker_is_joined_and_becomes_an_error() {
        let control = Control::start().unwrap();
        let supervised: Supervised<()> = control.supervise(|| {}, || panic!("worker bug"), |_| {});
        assert!(supervised.result.unwrap_err().is::<Panicked>());
        assert_eq!(supervised.signal, None);
    }

    #[test]
    fn lines_typed_while_the_worker_runs_are_set_aside() {
        let control = Control::start().unwrap();
        let sender = control.sender();
        let mut aside = Vec::new();
        let supervised = control.supervise(
            || {},
            move || {
                sender.send(Notice::Line("typed ahead".into())).unwrap();
                Ok(7)
            },
            |notice| {
                if let Notice::Line(line) = notice {
                    aside.push(line);
                }
            },
        );
        assert_eq!(supervised.result.unwrap(), 7);
        assert_eq!(aside, ["typed ahead"]);
    }
}
