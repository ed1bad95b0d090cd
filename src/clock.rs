//! Time, passed in: the hub reads the clock through [`Clock`] so tests can
//! move time (pairing expiry, sessions, retention) without sleeping.

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, UTC.
    fn now(&self) -> OffsetDateTime;

    /// Now as Unix seconds.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that tests move by hand; it starts at the system time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(OffsetDateTime::now_utc())))
    }
}

impl ManualClock {
    /// Moves time forward.
    pub fn advance(&self, by: time::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
    }
}

/// RFC 3339 text of a Unix time (UTC, whole seconds).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
