//! `kith users create` and the first user printed on first start.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::kith;

fn output(command: &mut Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("run kith");
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn users_are_created_with_a_given_or_generated_password() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "create", "--email", "ada@example.com"]));
    assert!(!ok && stderr.contains("no workspace yet"), "{stderr}");

    assert!(output(kith(dir.path()).args(["workspaces", "create", "Acme"])).0);
    let (ok, stdout, stderr) = output(kith(dir.path()).args(["users", "create", "--email", "Ada@Example.com"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created user ada@example.com"), "{stdout}");
    let password = stdout.lines().find(|l| l.starts_with("password")).and_then(|l| l.split_whitespace().last());
    assert_eq!(password.map(str::len), Some(23), "{stdout}");

    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "create", "--email", "ada@example.com"]));
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let (ok, _, stderr) =
        output(kith(dir.path()).args(["users", "create", "--email", "bob@example.com", "--password", "short"]));
    assert!(!ok && stderr.contains("at least 8"), "{stderr}");
    let (ok, stdout, _) =
        output(kith(dir.path()).args(["users", "create", "--email", "bob@example.com", "--password", "long enough"]));
    assert!(ok && !stdout.contains("password"), "a given password is not printed: {stdout}");
    let (ok, _, stderr) =
        output(kith(dir.path()).args(["users", "create", "--email", "c@example.com", "--workspace", "99"]));
    assert!(!ok && stderr.contains("no workspace 99"), "{stderr}");
}

#[test]
fn the_first_start_prints_a_user_and_its_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = kith(dir.path());
    command.arg("serve");
    let mut served = common::serve(command);
    Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(common::wait(&mut served.child, Duration::from_secs(30)).success());
    let stdout = served.banner.join("\n");
    assert!(stdout.contains(&format!("http://127.0.0.1:{}/ as admin@localhost", served.port)), "{stdout}");
    let password = stdout.lines().find(|l| l.trim_start().starts_with("password:")).expect("a password line");
    assert_eq!(password.split_whitespace().last().map(str::len), Some(23));

    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "create", "--email", "admin@localhost"]));
    assert!(!ok && stderr.contains("already exists"), "the first user is stored: {stderr}");
}

/// The stored password hash of a user and how many sessions they have.
fn stored(dir: &Path, email: &str) -> Option<(String, i64)> {
    let db = rusqlite::Connection::open(dir.join("kith.db")).unwrap();
    let found = db.query_row("SELECT id, password_hash FROM users WHERE email = ?1", [email], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    });
    let (id, hash) = found.ok()?;
    let sessions = db.query_row("SELECT COUNT(*) FROM sessions WHERE user_id = ?1", [id], |row| row.get(0)).unwrap();
    Some((hash, sessions))
}

fn add_session(dir: &Path, email: &str) {
    let db = rusqlite::Connection::open(dir.join("kith.db")).unwrap();
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
         SELECT randomblob(32), id, 0, 9000000000000 FROM users WHERE email = ?1",
        [email],
    )
    .unwrap();
}

#[test]
fn passwords_are_changed_and_users_removed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(output(kith(dir.path()).args(["workspaces", "create", "Acme"])).0);
    let create = ["users", "create", "--email", "ada@example.com", "--password", "first password"];
    assert!(output(kith(dir.path()).args(create)).0);
    add_session(dir.path(), "ada@example.com");
    let (before, sessions) = stored(dir.path(), "ada@example.com").unwrap();
    assert_eq!(sessions, 1);

    let (ok, stdout, stderr) = output(kith(dir.path()).args(["users", "passwd", "--email", "Ada@Example.com"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("changed the password of ada@example.com"), "{stdout}");
    let password = stdout.lines().find(|l| l.starts_with("password")).and_then(|l| l.split_whitespace().last());
    assert_eq!(password.map(str::len), Some(23), "a generated password is shown once: {stdout}");
    let (after, sessions) = stored(dir.path(), "ada@example.com").unwrap();
    assert!(after != before && after.starts_with("$argon2id$"));
    assert_eq!(sessions, 0, "a new password signs the user out everywhere");

    let (ok, _, stderr) =
        output(kith(dir.path()).args(["users", "passwd", "--email", "ada@example.com", "--password", "short"]));
    assert!(!ok && stderr.contains("at least 8"), "{stderr}");
    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "passwd", "--email", "nobody@example.com"]));
    assert!(!ok && stderr.contains("no user signs in with nobody@example.com"), "{stderr}");

    add_session(dir.path(), "ada@example.com");
    let (ok, stdout, stderr) = output(kith(dir.path()).args(["users", "remove", "--email", "ada@example.com"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("removed user ada@example.com"), "{stdout}");
    assert_eq!(stored(dir.path(), "ada@example.com"), None);
    let db = rusqlite::Connection::open(dir.path().join("kith.db")).unwrap();
    let sessions: i64 = db.query_row("SELECT COUNT(*) FROM sessions", [], |row| row.get(0)).unwrap();
    assert_eq!(sessions, 0, "their sessions are gone with them");
    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "remove", "--email", "ada@example.com"]));
    assert!(!ok && stderr.contains("no user signs in with"), "{stderr}");
    assert!(output(kith(dir.path()).args(create)).0, "the email can be used again");
}
