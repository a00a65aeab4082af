//! The real binary against hostile clients (issue 12): bodies built to cost memory before the
//! key is checked, slow and idle connections, a workspace flooding the ingest queue, writes
//! that all fail, and who may read `/metrics`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::kith;

/// A running `kith serve`, stopped when dropped.
struct Kith {
    child: Child,
    port: u16,
}

impl Drop for Kith {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts kith on `data_dir` with extra environment variables.
fn start(data_dir: &Path, env: &[(&str, &str)]) -> Kith {
    start_command(kith(data_dir), env)
}

/// Runs `kith … serve` from `command` (which names the database).
fn start_command(mut command: Command, env: &[(&str, &str)]) -> Kith {
    let port = free_port();
    command
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_LISTEN")
        .env("KITH_LOG", "warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start kith");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "kith exited at start");
        assert!(Instant::now() < deadline, "kith did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Kith { child, port }
}

/// Creates a workspace with the CLI and returns its write key.
fn create_workspace(data_dir: &Path, name: &str) -> String {
    write_key_of(kith(data_dir).args(["workspaces", "create", name]))
}

/// Creates a workspace on a PostgreSQL database and returns its write key.
fn create_workspace_on(database_url: &str, name: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.env_remove("KITH_CONFIG").args(["--database-url", database_url, "workspaces", "create", name]);
    write_key_of(&mut command)
}

fn write_key_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("kith_wk_"))
        .unwrap_or_else(|| panic!("no write key in {stdout}"))
        .to_owned()
}

/// One request on its own connection: the status and the body.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (401) and close before the whole body is sent.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 497 KB batch of 2,500 small events under a large top-level `context`, with a made-up key.
fn hostile_batch() -> Vec<u8> {
    let item = r#"{"type":"track","userId":"u1","event":"E"}"#;
    let items = vec![item; 2_500].join(",");
    let frame = format!(r#"{{"writeKey":"kith_wk_made_up","batch":[{items}],"context":{{"pad":""}}}}"#);
    let pad = "x".repeat(497 * 1024 - frame.len());
    let body = format!(r#"{{"writeKey":"kith_wk_made_up","batch":[{items}],"context":{{"pad":"{pad}"}}}}"#);
    assert_eq!(body.len(), 497 * 1024);
    body.into_bytes()
}

#[test]
fn fake_keyed_batches_are_refused_before_they_cost_memory_or_time() {
    let dir = tempfile::tempdir().unwrap();
    let kith = start(dir.path(), &[]);
    let port = kith.port;
    let body = Arc::new(hostile_batch());
    let barrier = Arc::new(Barrier::new(9));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (body, barrier) = (body.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                request(port, "POST", "/v1/batch", &[("Content-Type", "application/json")], &body)
            })
        })
        .collect();
    barrier.wait();
    // /healthz is asked again and again while the batches are being refused.
    let mut slowest = Duration::ZERO;
    while !senders.iter().all(|sender| sender.is_finished()) {
        let started = Instant::now();
        let (status, _) = request(port, "GET", "/healthz", &[], b"");
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    for sender in senders {
        let (status, body) = sender.join().unwrap();
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("unauthorized"), "{body}");
    }
    let peak_mb = peak_rss_kb(kith.child.id()) / 1024;
    assert!(peak_mb < 150, "peak RSS {peak_mb} MB under 8 hostile batches");
    assert!(slowest < Duration::from_secs(1), "/healthz took {slowest:?} meanwhile");
}

/// Reads until the server closes the connection; fails if it is still open after `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {within:?}; received {received:?}")
            }
            // A reset is a close too.
            Err(_) => return String::from_utf8_lossy(&received).into_owned(),
        }
    }
}

#[test]
fn slow_and_idle_connections_are_closed_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let kith = start(
        dir.path(),
        &[
            ("KITH_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("KITH_HTTP_BODY_TIMEOUT_SECS", "1"),
            ("KITH_HTTP_MAX_CONNECTIONS", "16"),
        ],
    );
    let connect = || TcpStream::connect(("127.0.0.1", kith.port)).unwrap();
    // At the cap, the next client waits for a connection to close (here, by its deadline).
    let holding: Vec<TcpStream> = (0..16).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, _) = request(kith.port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(500), "served at once: no cap ({:?})", started.elapsed());
    drop(holding);

    // More than the cap: those past it wait to be accepted, then get the same deadlines.
    let mut silent: Vec<TcpStream> = (0..10).map(|_| connect()).collect();
    let mut unfinished_headers: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = connect();
            stream.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl").unwrap();
            stream
        })
        .collect();
    let mut half_bodies: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect();
            stream
                .write_all(b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"batch\":[")
                .unwrap();
            stream
        })
        .collect();
    let mut kept_alive = connect();
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();

    let within = Duration::from_secs(8);
    for stream in silent.iter_mut().chain(&mut unfinished_headers) {
        closed_by_server(stream, within);
    }
    for stream in &mut half_bodies {
        let answer = closed_by_server(stream, within);
        assert!(answer.starts_with("HTTP/1.1 408"), "a half-sent body is answered 408: {answer}");
    }
    let answer = closed_by_server(&mut kept_alive, within);
    assert!(answer.starts_with("HTTP/1.1 200"), "answered, then closed when idle: {answer}");

    let started = Instant::now();
    let (status, _) = request(kith.port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// An identify with its own messageId.
fn identify(message_id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"identify","messageId":"{message_id}","userId":"{message_id}","traits":{{"email":"{message_id}@example.com"}},"timestamp":"2024-06-01T10:00:00Z"}}"#
    )
    .into_bytes()
}

#[test]
fn readyz_reports_a_writer_whose_writes_all_fail() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_workspace(dir.path(), "Acme");
    let kith = start(dir.path(), &[]);
    let auth = bearer(&key);
    let send = |id: &str| request(kith.port, "POST", "/v1/identify", &[("Authorization", &auth)], &identify(id)).0;
    assert_eq!(send("before"), 200);
    assert_eq!(request(kith.port, "GET", "/readyz", &[], b"").0, 200);

    // A full disk, as the databases see it (the main file and any beside it, such as the
    // event log): every insert and update fails.
    let databases: Vec<rusqlite::Connection> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("kith.db") && !["-wal", "-shm", "-journal"].iter().any(|end| name.ends_with(end))
        })
        .map(|path| rusqlite::Connection::open(path).unwrap())
        .collect();
    let tables_of = |database: &rusqlite::Connection| -> Vec<String> {
        database
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for database in &databases {
        for table in tables_of(database) {
            for (when, name) in [("INSERT", "full_i"), ("UPDATE", "full_u")] {
                database
                    .execute_batch(&format!(
                        "CREATE TRIGGER {name}_{table} BEFORE {when} ON {table} \
                         BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
                    ))
                    .unwrap();
            }
        }
    }
    for attempt in 0..3 {
        assert_eq!(send(&format!("failing-{attempt}")), 503);
    }
    let (status, body) = request(kith.port, "GET", "/readyz", &[], b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("writes failing"), "{body}");

    for database in &databases {
        for table in tables_of(database) {
            database.execute_batch(&format!("DROP TRIGGER full_i_{table}; DROP TRIGGER full_u_{table};")).unwrap();
        }
    }
    assert_eq!(send("after"), 200);
    assert_eq!(request(kith.port, "GET", "/readyz", &[], b"").0, 200);
}

fn batch_of(tag: &str, count: usize) -> Vec<u8> {
    let items: Vec<String> = (0..count)
        .map(|n| format!(r#"{{"type":"track","userId":"{tag}","event":"E","messageId":"{tag}-{n}","timestamp":"2024-06-01T10:00:00Z"}}"#))
        .collect();
    format!(r#"{{"batch":[{}]}}"#, items.join(",")).into_bytes()
}

fn queued_events(port: u16) -> u64 {
    let (_, metrics) = request(port, "GET", "/metrics", &[], b"");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("kith_ingest_queue_events "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs when `KITH_TEST_DATABASE_URL` names a PostgreSQL server, where a test can hold every
/// table's write lock so that whatever is submitted waits in the queue (says why it skipped
/// otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_flooding_the_queue_is_throttled_while_another_is_served() {
    let Some(server) = std::env::var("KITH_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
        eprintln!("skipped: set KITH_TEST_DATABASE_URL=postgres://… to run the queue-share test");
        return;
    };
    let name = format!("kith_test_share_{}", std::process::id());
    let url = kith_store::postgres::create_database(&server, &name).await.expect("create database");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);

    let started = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let flooder = create_workspace_on(&url, "Flood");
            let quiet = create_workspace_on(&url, "Quiet");
            let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
            command.args(["--database-url", &url]);
            (
                flooder,
                quiet,
                start_command(command, &[("KITH_QUEUE_EVENTS", "100"), ("KITH_WORKSPACE_QUEUE_EVENTS", "20")]),
            )
        })
    };
    let (flooder, quiet, kith) = started.await.unwrap();
    let port = kith.port;

    // Every table locked against writes (reads, such as key lookups, go on): whatever is
    // submitted waits in the queue until the lock is released.
    let tables: Vec<String> = client
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    client.batch_execute(&format!("BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE", tables.join(", "))).await.unwrap();

    let outcome = tokio::task::spawn_blocking(move || {
        let send_in_background = |auth: &str, body: Vec<u8>| {
            let auth = bearer(auth);
            std::thread::spawn(move || request(port, "POST", "/v1/batch", &[("Authorization", &auth)], &body))
        };
        let wait_for_queue = |events: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while queued_events(port) < events {
                assert!(Instant::now() < deadline, "{events} events never reached the queue");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let first = send_in_background(&flooder, batch_of("flood-a", 15));
        wait_for_queue(15);
        let over =
            request(port, "POST", "/v1/batch", &[("Authorization", &bearer(&flooder))], &batch_of("flood-b", 15));
        let quiet = send_in_background(&quiet, batch_of("quiet", 15));
        wait_for_queue(30);
        (first, over, quiet)
    })
    .await
    .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    let (first, (status, body), quiet) = outcome;
    let answers = tokio::task::spawn_blocking(move || (first.join().unwrap(), quiet.join().unwrap())).await.unwrap();
    drop(kith);
    drop(client);
    kith_store::postgres::drop_database(&server, &name).await.expect("drop database");

    assert_eq!(status, 429, "over its share: {body}");
    assert!(body.contains("rate_limited"), "{body}");
    assert_eq!(answers.0 .0, 200, "the flooder's first batch: {}", answers.0 .1);
    assert_eq!(answers.1 .0, 200, "the other workspace: {}", answers.1 .1);
}

#[test]
fn metrics_can_take_a_token_and_a_listen_address_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let kith = start(dir.path(), &[("KITH_METRICS_TOKEN", "sesame"), ("KITH_METRICS_LISTEN", &metrics_listen)]);
    assert_eq!(request(kith.port, "GET", "/metrics", &[("Authorization", "Bearer sesame")], b"").0, 404);
    assert_eq!(request(metrics_port, "GET", "/metrics", &[], b"").0, 401);
    assert_eq!(request(metrics_port, "GET", "/metrics", &[("Authorization", "Bearer sesame!")], b"").0, 401);
    let (status, body) = request(metrics_port, "GET", "/metrics", &[("Authorization", "Bearer sesame")], b"");
    assert_eq!(status, 200);
    assert!(body.contains("kith_ingest_queue_events"), "{body}");
    assert_eq!(request(metrics_port, "GET", "/healthz", &[], b"").0, 404, "only /metrics there");

    // With a token alone, /metrics stays beside the other routes.
    drop(kith);
    let kith = start(dir.path(), &[("KITH_METRICS_TOKEN", "sesame")]);
    assert_eq!(request(kith.port, "GET", "/metrics", &[], b"").0, 401);
    assert_eq!(request(kith.port, "GET", "/metrics", &[("Authorization", "Bearer sesame")], b"").0, 200);
}
