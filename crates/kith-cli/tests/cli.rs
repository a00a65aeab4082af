//! The `kith` binary as a newcomer uses it: first start, keys, migrations, settings.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::kith;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run kith");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

struct Served {
    child: Child,
    stdout: Vec<String>,
    url: String,
}

/// Starts `kith serve` and reads its first-start banner, if it prints one.
fn serve(data_dir: &Path) -> Served {
    let mut command = kith(data_dir);
    command.arg("serve");
    let served = common::serve(command);
    Served { child: served.child, stdout: served.banner, url: format!("http://127.0.0.1:{}", served.port) }
}

fn stop(mut served: Served) {
    let pid = served.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = common::wait(&mut served.child, Duration::from_secs(30));
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

fn key_after(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find(|line| line.contains(label))
        .and_then(|line| line.split_whitespace().last())
        .unwrap_or_else(|| panic!("no {label} in {lines:?}"))
        .to_owned()
}

#[test]
fn first_start_prints_keys_and_a_curl_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    assert!(dir.path().join("kith.db").exists());
    let write = key_after(&served.stdout, "write key");
    let secret = key_after(&served.stdout, "secret key");
    assert!(write.starts_with("kith_wk_") && secret.starts_with("kith_sk_"));
    let curl = served.stdout.iter().find(|line| line.contains("curl -u")).expect("a curl line");
    assert!(curl.contains(&write));
    assert!(curl.contains(&format!("{}/v1/identify", served.url)), "the banner names the port bound: {curl}");

    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{}/v1/identify", served.url))
        .basic_auth(&write, Some(""))
        .body(r#"{"userId":"u1","traits":{"email":"ada@example.com","name":"Ada"},"timestamp":"2024-06-01T10:00:00Z"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let contacts: serde_json::Value =
        client.get(format!("{}/api/contacts", served.url)).bearer_auth(&secret).send().unwrap().json().unwrap();
    assert_eq!(contacts["items"][0]["email"], "ada@example.com");
    stop(served);

    // Second start: same database, no new keys printed.
    let again = serve(dir.path());
    assert!(!again.stdout.iter().any(|line| line.contains("kith_wk_")), "keys are printed on first start only");
    stop(again);
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let created = run(kith(dir.path()).args(["keys", "create", "--kind", "secret", "--name", "ops"]));
    let key = created.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("kith_sk_"), "{created}");
    let id: String = created.split_whitespace().nth(3).unwrap().to_owned();

    let client = reqwest::blocking::Client::new();
    let status = client.get(format!("{}/api/keys", served.url)).bearer_auth(&key).send().unwrap().status();
    assert_eq!(status, 200);
    let listed = run(kith(dir.path()).args(["keys", "list"]));
    assert!(listed.contains("ops") && listed.contains(&key[..12]), "{listed}");
    assert!(!listed.contains(&key), "the full key is never listed");

    run(kith(dir.path()).args(["keys", "revoke", &id]));
    // The server's key cache lasts a second at most.
    std::thread::sleep(Duration::from_millis(1100));
    let status = client.get(format!("{}/api/keys", served.url)).bearer_auth(&key).send().unwrap().status();
    assert_eq!(status, 401, "a revoked key stops working");
    let output = kith(dir.path()).args(["keys", "revoke", "999"]).output().unwrap();
    assert!(!output.status.success());
    stop(served);
}

#[test]
fn migrate_and_workspace_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(kith(dir.path()).arg("migrate"));
    assert!(out.contains("applied migrations"), "{out}");
    let out = run(kith(dir.path()).arg("migrate"));
    assert!(out.contains("up to date"), "{out}");
    let out = run(kith(dir.path()).args(["workspaces", "create", "Acme"]));
    assert!(out.contains("kith_wk_") && out.contains("kith_sk_"));
    let out =
        run(kith(dir.path()).args(["workspaces", "set", "--time-zone", "Europe/Paris", "--half-life-days", "14"]));
    assert!(out.contains("Europe/Paris") && out.contains("14"), "{out}");
    let list = run(kith(dir.path()).args(["workspaces", "list"]));
    assert!(list.contains("Acme") && list.contains("Europe/Paris"), "{list}");
    let output = kith(dir.path()).args(["workspaces", "set", "--time-zone", "Nowhere/Land"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("IANA"));
}

#[test]
fn a_config_file_and_environment_variables_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let config = dir.path().join("kith.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", data.display().to_string())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .env_remove("KITH_DATA_DIR")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(data.join("kith.db").exists(), "the file's data_dir is used");

    let from_env = dir.path().join("from-env");
    let output = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .env("KITH_DATA_DIR", &from_env)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(from_env.join("kith.db").exists(), "KITH_DATA_DIR overrides the file");

    std::fs::write(&config, "lisen = \"0.0.0.0:1\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a typo in the file is an error, not silently ignored");
}

/// A supervisor may read the banner and close the pipe, or start kith with no reader at all:
/// kith serves anyway instead of dying on its next line of output.
#[test]
fn serve_keeps_running_when_nobody_reads_its_output() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0 cannot be used here: the line that reports the address is the one that cannot
    // be read. The free port is taken back at once; a clash only fails this test.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = kith(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start kith");
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + common::START_WITHIN;
    let answer = loop {
        assert!(child.try_wait().unwrap().is_none(), "kith exited when its output could not be written");
        if let Ok(answer) = reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")) {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "kith did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answer.status(), 200);
    stop(Served { child, stdout: Vec::new(), url: String::new() });
}
