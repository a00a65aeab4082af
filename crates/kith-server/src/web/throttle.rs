//! Sign-in throttling and the bound on password hashing.
//!
//! - Failed sign-ins are counted per account (the normalised email, known or not, so the
//!   answer does not tell which emails exist) and per client address. After a few free
//!   failures a key is locked for a delay that doubles with every further failure, up to
//!   [`MAX_LOCK`]; while locked, sign-in answers 429 with `Retry-After` without hashing.
//!   A success clears the account's count, not the address's: signing in to one's own
//!   account must not reset the counter an attacker guesses other accounts against.
//! - Checking a password costs an argon2 hash (19 MiB, tens of milliseconds), so at most a
//!   few run at once; a request that cannot start one within [`HASH_WAIT`] gets 503.
//! - Counts are kept in memory: a restart forgets them, and on several nodes each node
//!   throttles on its own (the limits then apply per node).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Failures of one account before it is locked.
const ACCOUNT_FREE: u32 = 5;
/// Failures from one address before it is locked; higher, as a whole office can share one.
const ADDRESS_FREE: u32 = 20;
/// The first lock; each further failure doubles it.
const FIRST_LOCK: Duration = Duration::from_secs(1);
/// The longest lock.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long starts again from zero.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys remembered at most; beyond, the stalest are dropped (a bound on memory under a
/// spray of addresses).
const MAX_KEYS: usize = 100_000;
/// Password hashes running at once at most.
pub const MAX_HASHES: usize = 4;
/// How long a sign-in waits for a hashing slot before it is answered 503.
const HASH_WAIT: Duration = Duration::from_secs(5);

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

impl Key {
    fn free(&self) -> u32 {
        match self {
            Key::Account(_) => ACCOUNT_FREE,
            Key::Address(_) => ADDRESS_FREE,
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Why a sign-in may not check a password now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: try again after this long.
    Throttled(Duration),
    /// Too many sign-ins hashing at once.
    Busy,
}

/// Failure counts and the hashing slots, shared by every sign-in.
pub struct SignInGuard {
    failures: Mutex<HashMap<Key, Failures>>,
    hashing: Semaphore,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Default for SignInGuard {
    fn default() -> Self {
        SignInGuard {
            failures: Mutex::default(),
            hashing: Semaphore::new(MAX_HASHES),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }
}

/// A hashing slot, held while one password is checked.
pub struct HashSlot<'a> {
    guard: &'a SignInGuard,
    _permit: SemaphorePermit<'a>,
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        self.guard.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SignInGuard {
    /// Whether `email` may be tried from `address` now: the longer wait of the two locks.
    pub fn check(&self, email: &str, address: Option<IpAddr>) -> Result<(), Refusal> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys(email, address)
            .filter_map(|key| failures.get(&key)?.locked_until)
            .filter_map(|until| until.checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(Refusal::Throttled(wait)),
            _ => Ok(()),
        }
    }

    /// A hashing slot, waiting a little for one.
    pub async fn hashing_slot(&self) -> Result<HashSlot<'_>, Refusal> {
        let permit = tokio::time::timeout(HASH_WAIT, self.hashing.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let running = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(running, Ordering::Relaxed);
        Ok(HashSlot { guard: self, _permit: permit })
    }

    /// The most password hashes that ran at once since the start.
    pub fn peak_hashes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Counts a failed sign-in against the account and the address.
    pub fn failed(&self, email: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys(email, address) {
            let free = key.free();
            let entry = failures.entry(key).or_insert(Failures { count: 0, last: now, locked_until: None });
            if now.duration_since(entry.last) > FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= free {
                let doublings = (entry.count - free).min(20);
                let lock = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
                entry.locked_until = Some(now + lock);
            }
        }
        if failures.len() > MAX_KEYS {
            forget_stalest(&mut failures, now);
        }
    }

    /// A successful sign-in: the account starts again from zero.
    pub fn succeeded(&self, email: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&Key::Account(email.to_owned()));
    }
}

fn keys(email: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
    [Some(Key::Account(email.to_owned())), address.map(Key::Address)].into_iter().flatten()
}

/// Drops forgotten keys and, if that is not enough, the least recently failed half.
fn forget_stalest(failures: &mut HashMap<Key, Failures>, now: Instant) {
    failures.retain(|_, entry| now.duration_since(entry.last) <= FORGET_AFTER);
    if failures.len() > MAX_KEYS {
        let mut lasts: Vec<Instant> = failures.values().map(|entry| entry.last).collect();
        let (_, median, _) = lasts.select_nth_unstable(MAX_KEYS / 2);
        let median = *median;
        failures.retain(|_, entry| entry.last > median);
    }
}

/// The address a request came from: the peer, or, when the peer is a proxy on this machine
/// (loopback), the last address it put in `X-Forwarded-For`. Only a local proxy is believed:
/// anyone else could write the header.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let forwarded = || {
            parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|last| last.trim().parse::<IpAddr>().ok())
        };
        Ok(ClientAddress(match peer {
            Some(peer) if peer.is_loopback() => forwarded().or(Some(peer)),
            other => other,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_grow_after_the_free_failures() {
        let guard = SignInGuard::default();
        for _ in 0..ACCOUNT_FREE - 1 {
            guard.failed("a@example.com", None);
        }
        assert_eq!(guard.check("a@example.com", None), Ok(()));
        guard.failed("a@example.com", None);
        let Err(Refusal::Throttled(first)) = guard.check("a@example.com", None) else { panic!("locked") };
        guard.failed("a@example.com", None);
        let Err(Refusal::Throttled(second)) = guard.check("a@example.com", None) else { panic!("locked") };
        assert!(second > first && second <= FIRST_LOCK * 2, "{first:?} then {second:?}");
        assert_eq!(guard.check("b@example.com", None), Ok(()), "other accounts are not locked");
        guard.succeeded("a@example.com");
        assert_eq!(guard.check("a@example.com", None), Ok(()));
    }

    #[test]
    fn an_address_is_locked_across_accounts() {
        let guard = SignInGuard::default();
        let address = Some(IpAddr::from([192, 0, 2, 7]));
        for n in 0..ADDRESS_FREE {
            guard.failed(&format!("user{n}@example.com"), address);
        }
        assert!(matches!(guard.check("new@example.com", address), Err(Refusal::Throttled(_))));
        assert_eq!(guard.check("new@example.com", Some(IpAddr::from([192, 0, 2, 8]))), Ok(()));
    }

    #[test]
    fn many_keys_stay_bounded() {
        let mut failures = HashMap::new();
        let now = Instant::now();
        for n in 0..MAX_KEYS + 10 {
            let key = Key::Account(n.to_string());
            failures
                .insert(key, Failures { count: 1, last: now + Duration::from_millis(n as u64), locked_until: None });
        }
        forget_stalest(&mut failures, now + Duration::from_secs(1000));
        assert!(failures.len() <= MAX_KEYS / 2 + 10, "{}", failures.len());
        assert!(failures.contains_key(&Key::Account((MAX_KEYS + 9).to_string())), "the latest are kept");
    }
}
