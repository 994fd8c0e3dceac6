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
    /// Set when the listener is gone: the signals' default action runs again.
    #[cfg(unix)]
    default_again: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Calls `handler` on a thread of its own for every SIGINT and SIGTERM from now on, instead
    /// of the default of dying on the spot (which would lose the summary and any partial save).
    #[cfg(unix)]
    pub(crate) fn start(mut handler: impl FnMut(Signal) + Send + 'static) -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let default_again = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_default(signal, default_again.clone())?;
        }
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
            default_again,
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
            self.default_again
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.handle.close();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
