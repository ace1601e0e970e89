//! The signals that stop a run, with Chaos Toolkit's meanings.
//!
//! SIGTERM and SIGINT interrupt the run (rollbacks per strategy), SIGUSR1 exits gracefully
//! (rollbacks per strategy), SIGUSR2 exits without rollbacks and without waiting for background
//! activities. Once registered, a signal is handled for the rest of the process: a second
//! SIGTERM while the journal is being written no longer kills the process half-way.

use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

/// A stop request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Term,
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGUSR1: leave now, rollbacks per strategy.
    Usr1,
    /// SIGUSR2: leave now, no rollbacks.
    Usr2,
}

impl Stop {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
            Self::Usr1 => "SIGUSR1",
            Self::Usr2 => "SIGUSR2",
        }
    }

    /// Whether rollbacks may still be played (all but SIGUSR2).
    pub fn allows_rollbacks(self) -> bool {
        self != Self::Usr2
    }
}

/// The four handled signals.
#[derive(Debug)]
pub struct Signals {
    term: UnixSignal,
    int: UnixSignal,
    usr1: UnixSignal,
    usr2: UnixSignal,
}

impl Signals {
    /// Starts handling SIGTERM, SIGINT, SIGUSR1 and SIGUSR2.
    ///
    /// # Errors
    ///
    /// A handler cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for the next stop request.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
            _ = self.usr1.recv() => Stop::Usr1,
            _ = self.usr2.recv() => Stop::Usr2,
        }
    }
}
