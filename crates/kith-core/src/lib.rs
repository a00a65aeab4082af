//! kith's domain, free of I/O.
//!
//! Everything a Segment event goes through before it touches storage lives here as pure
//! functions: splitting a request body into events ([`envelope`]), reading one event the way
//! the Segment spec and the Nat.app contract say ([`event`]), email and id rules
//! ([`identity`]), event times and day keys ([`time`]), the closeness model ([`closeness`]) and
//! account health ([`health`]).
#![forbid(unsafe_code)]

pub mod backtest;
pub mod clock;
pub mod closeness;
pub mod envelope;
pub mod error;
pub mod event;
pub mod health;
pub mod identity;
pub mod journeys;
pub mod json;
pub mod profile;
pub mod rules;
pub mod time;

pub use clock::Clock;
pub use error::{Code, Rejection};
pub use event::{AudienceChange, Event, EventKind, ParseContext};
