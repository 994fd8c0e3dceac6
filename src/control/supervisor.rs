//! The control path around a stream: one answer runs on a worker thread while this thread waits
//! for it to end, for a signal, or (in chat) for lines typed ahead.
//!
//! On a signal the answer is told to stop: its [`Cancel`] is set (ending any backoff wait), the
//! session's HTTP agent is shut down (which ends a read blocked on a silent server) and running
//! tools are killed. Then the worker is joined. Only after that does the caller, the one owner of
//! the sink and the conversation, write how the answer ended: nothing is written twice, nothing
//! after the end. A worker that panics is joined too, and becomes one error.
//!
//! A watchdog makes sure a signal is never swallowed: once one arrives, the controlling thread
//! has [`STOP_PATIENCE`] to settle it (chat: back at the prompt) or the process to end; a
//! thread blocked on a stdout or stderr that nobody reads cannot do either, so then the
//! watchdog leaves with the signal's exit code. A second signal before the first is settled
//! leaves at once.
//!
//! `--timeout` has the same guarantee. ureq counts a request's time only while it reads, so a
//! worker stuck writing to a blocked stdout would never time out: the worker sets a
//! [`Deadline`] as each request is sent, and when it passes this thread stops the answer as a
//! signal would; a worker that is not joined within [`STOP_PATIENCE`] after that is left
//! behind by the watchdog, with the timeout's exit code.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::control::signals::Listener;
use crate::error::Signal;
use crate::error::{Cancelled, NetworkError, Panicked, exit, is_broken_pipe};

/// What the controlling thread waits for.
pub(crate) enum Notice {
    Signal(Signal),
    /// A line from the chat's stdin thread.
    Line(String),
    /// A line from the chat's stdin thread that was too long to keep.
    LongLine,
    /// The end of the chat's stdin.
    Eof,
    /// The worker thread has returned (or panicked).
    Finished,
    /// The worker sent a request: its [`Deadline`] is set.
    Deadline,
}

/// How long a signal may stay unsettled before the watchdog ends the process.
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

/// When the request in flight must be over (`--timeout`): set by the worker as each request is
/// sent, cleared when its body has been read (a tool's run is not part of it), and watched by
/// the controlling thread, which each setting wakes.
#[derive(Clone, Default)]
pub(crate) struct Deadline(Arc<Mutex<DeadlineState>>);

#[derive(Default)]
struct DeadlineState {
    /// When, and the error that says it passed.
    at: Option<(Instant, String)>,
    /// Where the controlling thread waits.
    watcher: Option<Sender<Notice>>,
}

impl Deadline {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request being sent must be over by `at`; `message` is the error if it is not.
    pub(crate) fn set(&self, at: Instant, message: String) {
        let mut state = self.lock();
        state.at = Some((at, message));
        if let Some(watcher) = &state.watcher {
            let _ = watcher.send(Notice::Deadline);
        }
    }

    /// The request is over (or failed): no deadline until the next one.
    pub(crate) fn clear(&self) {
        self.lock().at = None;
    }

    fn watch(&self, notices: Sender<Notice>) {
        self.lock().watcher = Some(notices);
    }

    fn at(&self) -> Option<Instant> {
        self.lock().at.as_ref().map(|(at, _)| *at)
    }

    /// The error, once the deadline has passed (then it is cleared); `None` before, or when
    /// the worker cleared it meanwhile.
    fn expire(&self, now: Instant) -> Option<String> {
        let mut state = self.lock();
        match &state.at {
            Some((at, _)) if *at <= now => state.at.take().map(|(_, message)| message),
            _ => None,
        }
    }
}

/// The controlling thread's end of the control path: signals, chat input, worker endings.
pub(crate) struct Control {
    notices: Sender<Notice>,
    inbox: Receiver<Notice>,
    watch: Arc<Watch>,
    /// Signals taken from the inbox by the controlling thread.
    taken: std::cell::Cell<u64>,
    watchdog: Option<JoinHandle<()>>,
    signals: Option<Listener>,
}

/// What the signal thread, the watchdog and the controlling thread share.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    wake: Condvar,
}

#[derive(Default)]
struct WatchState {
    /// Signals received, and signals the controlling thread has dealt with.
    received: u64,
    settled: u64,
    last: Option<Signal>,
    /// When the oldest unsettled signal runs out of patience.
    deadline: Option<Instant>,
    /// A `--timeout` that stopped the answer: when it runs out of patience, and its error.
    timed_out: Option<(Instant, String)>,
    closing: bool,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The signal thread's part: a second signal while one is unsettled leaves at once.
    fn received(&self, signal: Signal) {
        let mut state = self.lock();
        if state.received > state.settled {
            drop(state);
            leave(signal, "a second signal");
        }
        state.received += 1;
        state.last = Some(signal);
        state.deadline = Some(Instant::now() + STOP_PATIENCE);
        self.wake.notify_all();
    }

    /// The controlling thread's part when `--timeout` stopped the answer: the worker has
    /// [`STOP_PATIENCE`] to be joined.
    fn timed_out(&self, message: String) {
        let mut state = self.lock();
        state.timed_out = Some((Instant::now() + STOP_PATIENCE, message));
        self.wake.notify_all();
    }

    /// The watchdog thread: sleeps until a signal or a timeout is unsettled past its deadline,
    /// or closing.
    fn watch(&self) {
        let mut state = self.lock();
        loop {
            if state.closing {
                return;
            }
            let now = Instant::now();
            let signal = match (state.deadline, state.last) {
                (Some(deadline), Some(signal)) if state.received > state.settled => {
                    Some((deadline, signal))
                }
                _ => None,
            };
            if let Some((deadline, signal)) = signal
                && now >= deadline
            {
                drop(state);
                leave(signal, "it did not finish in time (is output blocked?)");
            }
            if let Some((deadline, message)) = &state.timed_out
                && now >= *deadline
            {
                let line = format!(
                    "gptstream: {message}; the answer could not be stopped in time (is output blocked?)\n"
                );
                drop(state);
                last_word(line, exit::NETWORK);
            }
            let next = [
                signal.map(|(deadline, _)| deadline),
                state.timed_out.as_ref().map(|(deadline, _)| *deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            state = match next {
                Some(next) => {
                    self.wake
                        .wait_timeout(state, next - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// The last resort: one line on stderr, written by a thread of its own so that a blocked stderr
/// cannot block us too (and without std's stderr lock, which the blocked writer holds), then the
/// exit code the signal stands for.
fn leave(signal: Signal, why: &str) -> ! {
    let line = format!("gptstream: interrupted by {}; {why}\n", signal.name());
    last_word(line, signal.exit_code())
}

/// Writes `line` to stderr if it can within a moment, and exits with `code`. Tools still running
/// are killed meanwhile, with what they left outside their group: the worker that would have
/// done it is abandoned.
fn last_word(line: String, code: u8) -> ! {
    let (written, done) = mpsc::channel();
    let _ = thread::Builder::new()
        .name("last-word".into())
        .spawn(move || {
            if let Ok(mut stderr) = crate::emit::stderr_unlocked() {
                let _ = stderr.write_all(line.as_bytes());
            }
            let _ = written.send(());
        });
    crate::control::children::kill_running_tools();
    crate::control::reaper::kill_kept();
    crate::control::reaper::sweep_at_exit();
    let _ = done.recv_timeout(Duration::from_millis(200));
    std::process::exit(i32::from(code))
}

/// How a supervised answer ended.
pub(crate) struct Supervised<T> {
    /// The worker's own result (a panic becomes [`Panicked`]).
    pub(crate) result: anyhow::Result<T>,
    /// The signal that stopped it, if one came while it ran.
    pub(crate) signal: Option<Signal>,
    /// `--timeout` stopped it: its agent was shut down (and `result`, unless a success, a
    /// signal's or a panic, is the timeout's error).
    pub(crate) timed_out: bool,
}

/// Sends [`Notice::Finished`] when dropped, once armed: at the worker's return, and at its panic
/// too, but not for a worker that never started.
struct FinishedOnDrop {
    notices: Sender<Notice>,
    armed: bool,
}

impl Drop for FinishedOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.notices.send(Notice::Finished);
        }
    }
}

impl Control {
    /// Starts listening for signals, and the watchdog.
    pub(crate) fn start() -> anyhow::Result<Control> {
        let (notices, inbox) = mpsc::channel();
        let watch = Arc::new(Watch::default());
        let (on_signal, watched) = (notices.clone(), Arc::clone(&watch));
        let signals = Listener::start(move |signal| {
            watched.received(signal);
            let _ = on_signal.send(Notice::Signal(signal));
        })
        .context("cannot listen for signals")?;
        let watching = Arc::clone(&watch);
        let watchdog = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watching.watch())
            .context("cannot start the watchdog thread")?;
        Ok(Control {
            notices,
            inbox,
            watch,
            taken: std::cell::Cell::new(0),
            watchdog: Some(watchdog),
            signals: Some(signals),
        })
    }

    /// Where other threads (chat's stdin reader) post their notices.
    pub(crate) fn sender(&self) -> Sender<Notice> {
        self.notices.clone()
    }

    /// The next notice; between answers only signals and chat input arrive.
    pub(crate) fn next(&self) -> Notice {
        // `self` holds a sender, so the channel cannot close.
        let notice = self.inbox.recv().unwrap_or(Notice::Eof);
        if let Notice::Signal(_) = notice {
            self.taken.set(self.taken.get() + 1);
        }
        notice
    }

    /// The next notice, or `None` once `deadline` has come.
    fn next_before(&self, deadline: Instant) -> Option<Notice> {
        let left = deadline.saturating_duration_since(Instant::now());
        let notice = self.inbox.recv_timeout(left).ok()?;
        if let Notice::Signal(_) = notice {
            self.taken.set(self.taken.get() + 1);
        }
        Some(notice)
    }

    /// Says that every signal taken so far, and a timeout, has been dealt with (its answer
    /// stopped and joined), so the watchdog stands down for them.
    pub(crate) fn settled(&self) {
        let mut state = self.watch.lock();
        state.timed_out = None;
        state.settled = self.taken.get();
        if state.settled >= state.received {
            state.deadline = None;
        }
        self.watch.wake.notify_all();
    }

    /// Runs `work` on a worker thread and waits for it. A signal, or the `deadline` the worker
    /// sets passing, calls `stop` (once) and still waits for the worker to return; other notices
    /// (typed-ahead chat lines) go to `aside`.
    pub(crate) fn supervise<T: Send>(
        &self,
        stop: impl FnOnce(),
        deadline: &Deadline,
        work: impl FnOnce() -> anyhow::Result<T> + Send,
        mut aside: impl FnMut(Notice),
    ) -> Supervised<T> {
        deadline.watch(self.notices.clone());
        thread::scope(|scope| {
            let mut finished = FinishedOnDrop {
                notices: self.notices.clone(),
                armed: false,
            };
            let worker =
                thread::Builder::new()
                    .name("stream".into())
                    .spawn_scoped(scope, move || {
                        finished.armed = true;
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
                        timed_out: false,
                    };
                }
            };
            let mut stop = Some(stop);
            let mut signal = None;
            let mut timed_out = None;
            loop {
                let notice = match deadline.at() {
                    Some(at) => match self.next_before(at) {
                        Some(notice) => notice,
                        None => {
                            if let Some(message) = deadline.expire(Instant::now()) {
                                self.watch.timed_out(message.clone());
                                timed_out.get_or_insert(message);
                                if let Some(stop) = stop.take() {
                                    stop();
                                }
                            }
                            continue;
                        }
                    },
                    None => self.next(),
                };
                match notice {
                    Notice::Finished => break,
                    Notice::Signal(first) => {
                        signal.get_or_insert(first);
                        if let Some(stop) = stop.take() {
                            stop();
                        }
                    }
                    Notice::Deadline => {}
                    other => aside(other),
                }
            }
            deadline.clear();
            let mut result = worker.join().unwrap_or_else(|_| Err(Panicked.into()));
            if let Some(message) = &timed_out
                && signal.is_none()
                && result
                    .as_ref()
                    .is_err_and(|err| !err.is::<Panicked>() && !is_broken_pipe(err))
            {
                // The stop made the worker fail however it was then failing: the time ran out.
                // A reader that went away (`| head`) is still success, as without a timeout.
                result = Err(NetworkError::new(message.clone()).into());
            }
            Supervised {
                result,
                signal,
                timed_out: timed_out.is_some(),
            }
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // The signals' default action first, so that none falls between the two.
        drop(self.signals.take());
        self.watch.lock().closing = true;
        self.watch.wake.notify_all();
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
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
        let supervised: Supervised<()> =
            control.supervise(|| {}, &Deadline::default(), || panic!("worker bug"), |_| {});
        assert!(supervised.result.unwrap_err().is::<Panicked>());
        assert_eq!(supervised.signal, None);
    }

    #[test]
    fn a_deadline_that_passes_stops_the_worker_and_its_error_is_the_timeout() {
        let control = Control::start().unwrap();
        let deadline = Deadline::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let set = deadline.clone();
        let supervised: Supervised<()> = control.supervise(
            move || drop(stop),
            &deadline,
            move || {
                set.set(Instant::now(), "timed out: too long (--timeout)".into());
                // Blocked until the stop: what the worker fails with then does not matter.
                let _ = stopped.recv();
                Err(anyhow::anyhow!("the agent was shut down"))
            },
            |_| {},
        );
        control.settled();
        assert!(supervised.timed_out);
        let err = supervised.result.unwrap_err();
        assert_eq!(crate::error::exit_code(&err), exit::NETWORK);
        assert_eq!(err.to_string(), "timed out: too long (--timeout)");
    }

    #[test]
    fn a_deadline_cleared_in_time_changes_nothing() {
        let control = Control::start().unwrap();
        let deadline = Deadline::default();
        let set = deadline.clone();
        let supervised = control.supervise(
            || panic!("stopped"),
            &deadline,
            move || {
                set.set(Instant::now() + Duration::from_secs(600), "late".into());
                set.clear();
                Ok(7)
            },
            |_| {},
        );
        assert!(!supervised.timed_out);
        assert_eq!(supervised.result.unwrap(), 7);
    }

    #[test]
    fn lines_typed_while_the_worker_runs_are_set_aside() {
        let control = Control::start().unwrap();
        let sender = control.sender();
        let mut aside = Vec::new();
        let supervised = control.supervise(
            || {},
            &Deadline::default(),
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
