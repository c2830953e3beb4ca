//! The clock the planner, dispatcher and retries read: the system's, or one a test moves by hand.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where "now" comes from. Leases and timeouts use real time regardless: they are about whether
/// a process is alive, not about when an email is due.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// A clock that only moves when told to, shared by everything that holds a clone.
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Moves a manual clock to `t`; the system clock cannot be set.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Clock::Manual(now) = self {
            *now.lock().expect("clock lock") = t;
        }
    }
}
