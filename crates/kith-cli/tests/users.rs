//! `kith users create` and the first user printed on first start.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kith(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_DATABASE_URL")
        .env_remove("KITH_LISTEN")
        .env_remove("KITH_USER_PASSWORD")
        .env("KITH_LOG", "warn");
    command
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = kith(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kith did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let served = child.wait_with_output().unwrap();
    assert!(served.status.success());
    let stdout = String::from_utf8_lossy(&served.stdout);
    assert!(stdout.contains(&format!("http://127.0.0.1:{port}/ as admin@localhost")), "{stdout}");
    let password = stdout.lines().find(|l| l.trim_start().starts_with("password:")).expect("a password line");
    assert_eq!(password.split_whitespace().last().map(str::len), Some(23));

    let (ok, _, stderr) = output(kith(dir.path()).args(["users", "create", "--email", "admin@localhost"]));
    assert!(!ok && stderr.contains("already exists"), "the first user is stored: {stderr}");
}
