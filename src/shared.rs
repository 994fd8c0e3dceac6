//! What the stream thread shares with the thread that answers a signal.
//!
//! Both write through one lock around the sink, so an interruption never cuts a line in half,
//! and once the run is interrupted the stream thread's late events are dropped, never printed.
//! Along the way the lock also keeps what an interruption needs to report and save: the usage
//! so far, the answer's text so far, and the conversation it belongs to.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::conversation::Conversation;
use crate::event::{Event, Interruption, Sink, add_usage};
use crate::interrupt::Signal;

/// The sink and the run's state, behind one lock. Clones share it.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<State>>);

struct State {
    sink: Box<dyn Sink + Send>,
    /// Bumped by every interruption: a stream started under an older one is muted.
    generation: u64,
    /// Choice 0's text since the last `start`, when a partial save or the chat history needs it.
    partial: Option<String>,
    /// The sum of the usage objects seen since [`Shared::begin`].
    usage: Option<Map<String, Value>>,
    /// The conversation as it stood when the current request was sent.
    checkpoint: Option<Conversation>,
}

/// What an interruption leaves behind: the answer that did not finish.
#[derive(Debug)]
pub struct Unfinished {
    signal: Signal,
    /// The answer's text that had arrived, if it was being kept.
    pub partial: Option<String>,
    checkpoint: Option<Conversation>,
}

impl Unfinished {
    /// The conversation the answer belonged to (its checkpoint, else `before`), ending with the
    /// text that arrived, marked as interrupted. `None` when neither is known.
    pub fn transcript(self, before: Option<Conversation>) -> Option<Conversation> {
        let mut conversation = self.checkpoint.or(before)?;
        let why = format!("interrupted by {}", self.signal.name());
        conversation.push_partial_answer(self.partial.as_deref().unwrap_or_default(), &why);
        Some(conversation)
    }
}

/// How long an interruption waits for a write in progress (stdout may be a stalled pager).
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

impl Shared {
    /// `keep_partial`: keep the text of the answer in flight, for `--save-partial` and chat.
    pub fn new(sink: Box<dyn Sink + Send>, keep_partial: bool) -> Self {
        Shared(Arc::new(Mutex::new(State {
            sink,
            generation: 0,
            partial: keep_partial.then(String::new),
            usage: None,
            checkpoint: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sink for one stream (a run, or one chat turn), muted by the next interruption.
    pub fn stream(&self) -> StreamSink {
        let mut state = self.lock();
        state.usage = None;
        state.checkpoint = None;
        if let Some(partial) = &mut state.partial {
            partial.clear();
        }
        StreamSink {
            shared: self.clone(),
            generation: state.generation,
        }
    }

    /// Writes an event outside any stream (chat's own notices, the final error).
    pub fn emit(&self, event: &Event<'_>) -> io::Result<()> {
        self.lock().sink.emit(event)
    }

    /// Mutes the stream in flight and reports the interruption through the sink. Gives up on
    /// the report, not on the interruption, if a write holds the lock for too long.
    pub fn interrupt(&self, signal: Signal) -> Unfinished {
        let deadline = Instant::now() + LOCK_PATIENCE;
        let mut state = loop {
            match self.0.try_lock() {
                Ok(state) => break state,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Unfinished {
                        signal,
                        partial: None,
                        checkpoint: None,
                    };
                }
            }
        };
        state.generation += 1;
        let interruption = Interruption {
            signal,
            usage: state.usage.take(),
        };
        // Best effort: stdout may be the reason we are being stopped.
        let _ = state.sink.emit(&Event::Interrupted(&interruption));
        Unfinished {
            signal,
            partial: state.partial.as_mut().map(std::mem::take),
            checkpoint: state.checkpoint.take(),
        }
    }
}

/// The sink one stream writes to.
pub struct StreamSink {
    shared: Shared,
    generation: u64,
}

impl StreamSink {
    /// Remembers the conversation a request is about to continue, for a save after an
    /// interruption.
    pub fn checkpoint(&self, conversation: &Conversation) {
        let mut state = self.shared.lock();
        if state.partial.is_some() {
            state.checkpoint = Some(conversation.clone());
        }
    }

    /// True when the answer's text is kept (for `--save-partial` or chat).
    pub fn keeps_partial(&self) -> bool {
        self.shared.lock().partial.is_some()
    }

    /// The answer's text so far in this request, when it is being kept.
    pub fn partial(&self) -> Option<String> {
        self.shared.lock().partial.clone()
    }
}

impl Sink for StreamSink {
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
        let mut state = self.shared.lock();
        if state.generation != self.generation {
            return Err(io::Error::other("the stream was interrupted"));
        }
        match *event {
            Event::Start { .. } => {
                if let Some(partial) = &mut state.partial {
                    partial.clear();
                }
            }
            Event::Content { choice: 0, delta } => {
                if let Some(partial) = &mut state.partial {
                    partial.push_str(delta);
                }
            }
            Event::Usage(usage) => match &mut state.usage {
                Some(total) => add_usage(total, usage),
                None => state.usage = Some(usage.clone()),
            },
            _ => {}
        }
        state.sink.emit(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.shared.lock();
        if state.generation != self.generation {
            return Err(io::Error::other("the stream was interrupted"));
        }
        state.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the events' kinds, to see what got through.
    struct Kinds(Arc<Mutex<Vec<String>>>);

    impl Sink for Kinds {
        fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
            let kind = match event {
                Event::Content { delta, .. } => format!("content {delta}"),
                Event::Interrupted(i) => format!("interrupted {}", i.signal.name()),
                other => format!("{other:?}").chars().take(5).collect(),
            };
            self.0.lock().unwrap().push(kind);
            Ok(())
        }
    }

    #[test]
    fn an_interruption_mutes_the_stream_and_keeps_its_text() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared::new(Box::new(Kinds(seen.clone())), true);
        let mut stream = shared.stream();
        stream
            .emit(&Event::Content {
                choice: 0,
                delta: "Hel",
            })
            .unwrap();
        let unfinished = shared.interrupt(Signal::Interrupt);
        assert_eq!(unfinished.partial.as_deref(), Some("Hel"));
        let late = stream.emit(&Event::Content {
            choice: 0,
            delta: "lo",
        });
        assert!(late.is_err());
        // The next stream (a new chat turn) writes again, from an empty text.
        let mut next = shared.stream();
        next.emit(&Event::Content {
            choice: 0,
            delta: "new",
        })
        .unwrap();
        assert_eq!(next.partial().as_deref(), Some("new"));
        assert_eq!(
            *seen.lock().unwrap(),
            ["content Hel", "interrupted SIGINT", "content new"]
        );
    }

    #[test]
    fn usage_so_far_is_summed_over_requests() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared::new(Box::new(Kinds(seen)), false);
        let mut stream = shared.stream();
        for n in [3, 4] {
            let usage = serde_json::json!({ "completion_tokens": n });
            stream
                .emit(&Event::Usage(usage.as_object().unwrap()))
                .unwrap();
        }
        assert!(stream.partial().is_none());
        let state = shared.lock();
        assert_eq!(state.usage.as_ref().unwrap()["completion_tokens"], 7);
    }
}
