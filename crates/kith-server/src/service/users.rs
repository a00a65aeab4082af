//! The people who sign in to the web app: creating them, their passwords, removing them.
//!
//! Passwords are hashed with argon2id (a PHC string with its own salt) on the blocking pool;
//! an unknown email costs the same hash as a wrong password, so timing does not tell which
//! emails exist. The web app (`web/signin.rs`) and the `kith users` commands both come here.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kith_store::{Store, StoreError, User, WorkspaceId};
use rand::Rng;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// `n` random characters from an alphabet without look-alikes (no 0/O, 1/l/I).
pub fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A password for a user created without one: 20 characters (~115 bits), in groups of 5.
pub fn generate_password() -> String {
    let text = random_text(20);
    text.as_bytes().chunks(5).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join("-")
}

/// The argon2id hash (PHC string) of a password.
fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let hash =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// [`hash_password`] on the blocking pool: a hash takes tens of milliseconds of CPU, which an
/// async worker must not spend.
pub async fn hash_password_blocking(password: &str) -> Result<String, UserError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|e| UserError::Hash(e.to_string()))?
}

/// Whether `password` matches a PHC hash; a malformed hash matches nothing.
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Verified against when the email is unknown, so that answer takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&random_text(24)).unwrap_or_default());

/// Whether `password` is `user`'s, checked on the blocking pool; with no user it is checked
/// against a dummy hash, so the answer takes as long either way.
pub async fn password_matches(user: Option<&User>, password: &str) -> bool {
    let hash = user.map_or_else(|| DUMMY_HASH.clone(), |user| user.password_hash.clone());
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false)
}

/// Whether a new password is long enough.
pub fn is_long_enough(password: &str) -> bool {
    password.chars().count() >= MIN_PASSWORD_CHARS
}

/// A sign-in email: trimmed and lower-cased; `local@domain` without spaces (no TLD required,
/// so `admin@localhost` works).
pub fn normalize_user_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(email)
}

/// Why a user could not be created, changed or removed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The email is not `local@domain`.
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    /// The password is too short.
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    /// No user signs in with this email.
    #[error("no user signs in with {0}")]
    Unknown(String),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store refused (e.g. the email is taken, the workspace does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a user of `workspace` who signs in with `email` and `password`.
pub async fn create_user(
    store: &dyn Store,
    workspace: WorkspaceId,
    email: &str,
    password: &str,
) -> Result<User, UserError> {
    let email = normalize_user_email(email).ok_or_else(|| UserError::InvalidEmail(email.to_owned()))?;
    if !is_long_enough(password) {
        return Err(UserError::ShortPassword);
    }
    let hash = hash_password_blocking(password).await?;
    Ok(store.create_user(workspace, &email, &hash).await?)
}

/// Sets the password of the user with `email` (from the command line: no current password
/// asked) and ends all their sessions.
pub async fn set_user_password(store: &dyn Store, email: &str, password: &str) -> Result<User, UserError> {
    let user = find_user(store, email).await?;
    if !is_long_enough(password) {
        return Err(UserError::ShortPassword);
    }
    let hash = hash_password_blocking(password).await?;
    store.set_password(user.id, &hash).await?;
    Ok(user)
}

/// Removes the user with `email` and ends their sessions.
pub async fn remove_user(store: &dyn Store, email: &str) -> Result<User, UserError> {
    let user = find_user(store, email).await?;
    store.delete_user(user.id).await?;
    Ok(user)
}

async fn find_user(store: &dyn Store, email: &str) -> Result<User, UserError> {
    let normalised = normalize_user_email(email).ok_or_else(|| UserError::InvalidEmail(email.to_owned()))?;
    store.user_by_email(&normalised).await?.ok_or(UserError::Unknown(normalised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 23);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn emails_are_normalised_loosely() {
        assert_eq!(normalize_user_email(" Admin@LocalHost ").as_deref(), Some("admin@localhost"));
        assert_eq!(normalize_user_email("no-at-sign"), None);
        assert_eq!(normalize_user_email("a b@c.d"), None);
        assert_eq!(normalize_user_email("@c.d"), None);
    }
}
