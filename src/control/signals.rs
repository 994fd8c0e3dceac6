//! Ctrl-C and SIGTERM, turned from process-killing signals into messages.
//!
//! A [`Listener`] owns one thread that waits for SIGINT and SIGTERM and hands each to a callback
//! (which sends it down the control channel, see [`crate::control::supervisor`]). Nothing is decided here:
//! the thread that owns the run decides whether a signal ends it or only cancels an answer.
//! The listener is told to stop and joined when it is dropped, and from then on SIGINT and
//! SIGTERM do what they do by default again: end the process.

use std::io;
use std::thread::JoinHandle;

use crate::error::Signal;

/// The signal thread. Dropping it closes the signal iterator and joins the thread.
pub(crate) struct Listener {
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Calls `handler` on a thread of its own for every SIGINT and SIGTERM from now on, instead
    /// of the default of dying on the spot (which would lose the summary and any partial save).
    #[cfg(unix)]
    pub(crate) fn start(mut handler: impl FnMut(Signal) + Send + 'static) -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        // From now on the signals are this listener's, until it is dropped.
        default_flag().store(false, std::sync::atomic::Ordering::SeqCst);
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    handler(if signal == SIGTERM {
                        Signal::Terminate
                    } else {
                        Signal::Interrupt
                    });
                }
            })?;
        Ok(Listener {
            handle,
            thread: Some(thread),
        })
    }

    /// Elsewhere the platform's default stays: Ctrl-C ends the process at once.
    #[cfg(not(unix))]
    pub(crate) fn start(_handler: impl FnMut(Signal) + Send + 'static) -> io::Result<Self> {
        Ok(Listener { thread: None })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            default_flag().store(true, std::sync::atomic::Ordering::SeqCst);
            self.handle.close();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `start` (starting MCP servers, before the run's [`Listener`] exists) with SIGINT and
/// SIGTERM caught rather than fatal: a signal calls `stop` (on a thread of its own), which is to
/// stop what `start` waits for, and comes back as the second value. So what `start` started is
/// stopped as at any end (its `Drop`), not left behind by a process killed on the spot. Before
/// and after, the signals do what they did.
#[cfg(unix)]
pub(crate) fn catching<T>(
    stop: impl FnOnce() + Send + 'static,
    start: impl FnOnce() -> T,
) -> (T, Option<Signal>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let caught = Arc::new(AtomicUsize::new(0));
    // While `start` runs, no default ends the process; then it is as it was.
    let before = default_flag().swap(false, Ordering::SeqCst);
    let mut ids = Vec::new();
    for signal in [SIGINT, SIGTERM] {
        // The flag only: no default action runs while it is registered.
        if let Ok(id) =
            signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)
        {
            ids.push(id);
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (caught, done) = (Arc::clone(&caught), Arc::clone(&done));
        std::thread::Builder::new()
            .name("start-signals".into())
            .spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if caught.load(Ordering::SeqCst) != 0 {
                        stop();
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            })
            .ok()
    };
    let result = start();
    done.store(true, Ordering::SeqCst);
    if let Some(watcher) = watcher {
        let _ = watcher.join();
    }
    let signal = match caught.load(Ordering::SeqCst) {
        0 => None,
        n if n == SIGTERM as usize => Some(Signal::Terminate),
        _ => Some(Signal::Interrupt),
    };
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    default_flag().store(before, Ordering::SeqCst);
    (result, signal)
}

/// Whether SIGINT and SIGTERM end the process as by default: true unless a [`Listener`] takes
/// them or [`catching`] holds them. One flag for the process, registered once: signal-hook
/// keeps a registered default for good, so a listener's own flag, once it was dropped, would end
/// the process under a later listener (or a later catch).
#[cfg(unix)]
fn default_flag() -> &'static std::sync::Arc<std::sync::atomic::AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static FLAG: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        for signal in [SIGINT, SIGTERM] {
            let _ = signal_hook::flag::register_conditional_default(signal, flag.clone());
        }
        flag
    })
}

/// Sends `signal` to this process again: what was caught while it could not be acted on is
/// acted on now (by default: the end, with the signal's status).
#[cfg(unix)]
pub(crate) fn raise(signal: Signal) {
    let number = match signal {
        Signal::Interrupt => signal_hook::consts::SIGINT,
        Signal::Terminate => signal_hook::consts::SIGTERM,
    };
    let _ = signal_hook::low_level::raise(number);
}

#[cfg(not(unix))]
pub(crate) fn raise(_signal: Signal) {}

#[cfg(not(unix))]
pub(crate) fn catching<T>(
    _stop: impl FnOnce() + Send + 'static,
    start: impl FnOnce() -> T,
) -> (T, Option<Signal>) {
    (start(), None)
}
