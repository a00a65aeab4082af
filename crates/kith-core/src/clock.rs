//! The time kith believes it is. Every "now" in kith comes from one `Clock`, which the store
//! is opened with and the server takes from the store; tests and the job runner set it
//! explicitly instead of sleeping.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// System time, or a time set by hand.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<Timestamp>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that stays at `at` until moved.
    pub fn manual(at: Timestamp) -> Self {
        Clock { manual: Some(Arc::new(Mutex::new(at))) }
    }

    /// The manual clock's time if it is one, else the system clock's.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
            None => Timestamp::now(),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: SignedDuration) {
        if let Some(at) = &self.manual {
            let mut at = at.lock().unwrap_or_else(|p| p.into_inner());
            *at = at.checked_add(by).unwrap_or(*at);
        }
    }

    /// Sets a manual clock; does nothing to the system clock.
    pub fn set(&self, to: Timestamp) {
        if let Some(at) = &self.manual {
            *at.lock().unwrap_or_else(|p| p.into_inner()) = to;
        }
    }
}
