//! What kith promises about acknowledged events when the process is stopped or overloaded (200 only
//! after a durable commit, 503 when shedding load): the real binary, real HTTP, the SQLite file
//! read back afterwards.
//!
//! - SIGKILL under load: every messageId answered 200 is in the database after a restart, and
//!   replaying everything stores nothing twice.
//! - SIGTERM under load: every request in flight gets an answer, every 200 is stored.
//! - Load shedding: what is answered 503 has stored nothing and succeeds when retried.
//! - Crash points (`KITH_CRASH_POINT`): killed right after an event-log commit, or inside a
//!   projection batch before or after its commit, kith restarts with every acknowledged
//!   event, and after a replay its derived tables equal those of a run that never crashed.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `kith serve`.
struct Kith {
    child: Child,
    port: u16,
}

/// Starts kith on `data_dir`; on the first start, returns the write key it prints.
fn start(data_dir: &Path, env: &[(&str, &str)]) -> (Kith, Option<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_DATABASE_URL")
        .env_remove("KITH_LISTEN")
        .env("KITH_DURABILITY", "full")
        .env("KITH_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let served = common::serve(command);
    // Only the first start prints a banner with the keys.
    let key = served.banner.iter().find(|line| line.contains("write key"));
    let key = key.and_then(|line| line.split_whitespace().last()).map(str::to_owned);
    (Kith { child: served.child, port: served.port }, key)
}

impl Kith {
    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        common::wait(&mut self.child, within)
    }

    /// A graceful stop that must succeed.
    fn stop(mut self) {
        self.signal("TERM");
        assert!(self.wait(Duration::from_secs(30)).success(), "graceful shutdown exits 0");
    }
}

/// One request of the load: a path, its body and the messageIds it carries.
#[derive(Clone)]
struct Request {
    path: &'static str,
    body: String,
    message_ids: Vec<String>,
}

/// `count` requests: single identifies and batches of an identify followed by that user's
/// tracks and pages, every event with its own messageId, users spread over a few days.
fn workload(tag: &str, count: usize, batch: usize) -> Vec<Request> {
    (0..count)
        .map(|n| {
            let user = n % 97;
            let day = 1 + n % 5;
            let event = |i: usize, kind: &str| {
                let id = format!("{tag}-{n}-{i}");
                let mut event = json!({"type": kind, "messageId": id, "userId": format!("user-{user}"),
                    "timestamp": format!("2024-06-0{day}T1{}:00:00Z", i % 10)});
                match kind {
                    "identify" => event["traits"] = json!({"email": format!("user{user}@example.com"), "plan": "pro"}),
                    "track" => event["event"] = json!("Report Viewed"),
                    _ => event["properties"] = json!({"url": "https://app.example.com/reports"}),
                }
                (id, event)
            };
            if n % 3 == 0 {
                let (id, event) = event(0, "identify");
                Request { path: "/v1/identify", body: event.to_string(), message_ids: vec![id] }
            } else {
                let (ids, events): (Vec<_>, Vec<_>) =
                    (0..batch).map(|i| event(i, ["identify", "track", "page"][i % 3])).unzip();
                Request { path: "/v1/batch", body: json!({"batch": events}).to_string(), message_ids: ids }
            }
        })
        .collect()
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Status {
        code: u16,
        retry_after: bool,
        body: Value,
    },
    /// No answer: the connection failed or closed first.
    None,
}

/// Sends one request on a fresh connection, reading the whole answer.
fn send(port: u16, key: &str, request: &Request) -> Answer {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return Answer::None };
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = head(port, key, request.path, request.body.len());
    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(request.body.as_bytes())).is_err() {
        return Answer::None;
    }
    read_answer(stream)
}

fn head(port: u16, key: &str, path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

fn read_answer(mut stream: TcpStream) -> Answer {
    let mut raw = Vec::new();
    if stream.read_to_end(&mut raw).is_err() && raw.is_empty() {
        return Answer::None;
    }
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return Answer::None };
    let Some(code) = head.split(' ').nth(1).and_then(|code| code.parse().ok()) else { return Answer::None };
    let retry_after = head.lines().any(|line| line.to_ascii_lowercase().starts_with("retry-after:"));
    Answer::Status { code, retry_after, body: serde_json::from_str(body).unwrap_or(Value::Null) }
}

/// The longest a load may run: a bound for a hung server, far above what a slow machine needs.
const LOAD_WITHIN: Duration = Duration::from_secs(300);

/// Sends the requests from `threads` threads until they run out, `stop` is set or the
/// server stops answering; counts the events acknowledged in `acked` as the answers come, and
/// returns each request's answer by index.
fn load(
    port: u16,
    key: &str,
    requests: &[Request],
    threads: usize,
    stop: &AtomicBool,
    acked: &AtomicUsize,
) -> HashMap<usize, Answer> {
    let next = AtomicUsize::new(0);
    let answers = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let deadline = Instant::now() + LOAD_WITHIN;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(index) else { break };
                    let answer = send(port, key, request);
                    let failed = answer == Answer::None;
                    if is_ok(&answer) {
                        acked.fetch_add(request.message_ids.len(), Ordering::Relaxed);
                    }
                    answers.lock().unwrap().insert(index, answer);
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    answers.into_inner().unwrap()
}

/// Waits at most `within` for `condition`; says whether it came true.
fn wait_for(within: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn is_ok(answer: &Answer) -> bool {
    matches!(answer, Answer::Status { code: 200, body, .. } if body["rejected"].as_array().is_none_or(Vec::is_empty))
}

/// Waits (at most 30 s) until the projection has applied the whole event log: the
/// watermark in the database equals the log's last sequence number.
fn wait_until_applied(data_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let log = rusqlite::Connection::open_with_flags(data_dir.join("kith.db.log"), flags).unwrap();
        let appended: i64 = log.query_row("SELECT COALESCE(MAX(seq), 0) FROM log", [], |row| row.get(0)).unwrap();
        let db = rusqlite::Connection::open_with_flags(data_dir.join("kith.db"), flags).unwrap();
        let applied: i64 = db.query_row("SELECT applied_seq FROM projection", [], |row| row.get(0)).unwrap();
        if applied >= appended {
            return;
        }
        assert!(Instant::now() < deadline, "the projection is stuck at {applied} of {appended}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The messageIds stored, with how often each is, read from the database file once the
/// projection has applied what the log holds.
fn stored(data_dir: &Path) -> HashMap<String, u32> {
    wait_until_applied(data_dir);
    let db =
        rusqlite::Connection::open_with_flags(data_dir.join("kith.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    let mut statement = db.prepare("SELECT message_id, COUNT(*) FROM events GROUP BY message_id").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// Activity hits over all interactions: each stored event counts once, whatever was replayed.
fn total_hits(data_dir: &Path) -> i64 {
    wait_until_applied(data_dir);
    let db =
        rusqlite::Connection::open_with_flags(data_dir.join("kith.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.query_row("SELECT COALESCE(SUM(hits), 0) FROM interactions WHERE kind = 'activity'", [], |row| row.get(0))
        .unwrap()
}

fn acknowledged(requests: &[Request], answers: &HashMap<usize, Answer>) -> HashSet<String> {
    answers
        .iter()
        .filter(|(_, answer)| is_ok(answer))
        .flat_map(|(index, _)| requests[*index].message_ids.iter().cloned())
        .collect()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event_and_a_replay_stores_nothing_twice() {
    sigkill_under_load("full");
}

/// `normal` skips the fsync of each commit: the README promises it survives a killed process
/// (the WAL is in the page cache), only not a power cut.
#[test]
fn sigkill_loses_nothing_acknowledged_with_normal_durability_either() {
    sigkill_under_load("normal");
}

fn sigkill_under_load(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut kith, key) = start(dir.path(), &[("KITH_DURABILITY", durability)]);
    let key = key.expect("first start prints a write key");
    let requests = workload("kill", 3_000, 12);
    let stop = AtomicBool::new(false);
    let acked_events = AtomicUsize::new(0);
    let port = kith.port;
    let answers = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load(port, &key, &requests, 6, &stop, &acked_events));
        // Kill once kith has acknowledged a good share of the load, with requests still in
        // flight: however fast or slow the machine, the kill lands at the same point.
        wait_for(LOAD_WITHIN, || acked_events.load(Ordering::Relaxed) >= 1_500 || loader.is_finished());
        kith.child.kill().unwrap();
        kith.wait(Duration::from_secs(30));
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap()
    });
    let acked = acknowledged(&requests, &answers);
    eprintln!(
        "{durability}: killed after {} of {} requests; {} events acknowledged, {} requests unanswered",
        answers.len(),
        requests.len(),
        acked.len(),
        answers.values().filter(|answer| **answer == Answer::None).count()
    );
    assert!(acked.len() >= 1_500, "the load was under way when kith was killed: {} acknowledged", acked.len());
    assert!(answers.len() < requests.len(), "kith was killed before the load ended");

    let (kith, _) = start(dir.path(), &[("KITH_DURABILITY", durability)]);
    let after_restart = stored(dir.path());
    let lost: Vec<_> = acked.iter().filter(|id| !after_restart.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);

    // Replay everything, acknowledged or not: each event is then stored exactly once.
    let replay = load(kith.port, &key, &requests, 4, &AtomicBool::new(false), &AtomicUsize::new(0));
    assert_eq!(replay.len(), requests.len());
    assert!(replay.values().all(is_ok), "every replayed request is acknowledged");
    kith.stop();
    let stored = stored(dir.path());
    let sent: HashSet<_> = requests.iter().flat_map(|r| r.message_ids.iter().cloned()).collect();
    assert_eq!(stored.len(), sent.len(), "every event is stored");
    assert!(stored.values().all(|&n| n == 1), "no messageId is stored twice");
    assert_eq!(total_hits(dir.path()), sent.len() as i64, "replays add no hits");
}

/// What the events derived, read from the database file: each contact's times and closeness
/// key, and each activity day's hits, first time and description, by email (row ids differ
/// between runs).
fn derived(data_dir: &Path) -> Vec<String> {
    wait_until_applied(data_dir);
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(data_dir.join("kith.db"), flags).unwrap();
    let mut rows: Vec<String> = Vec::new();
    let mut contacts = db
        .prepare("SELECT email, first_seen_at, last_seen_at, last_interaction_at, round(closeness_key, 9), traits FROM contacts")
        .unwrap();
    let found = contacts
        .query_map([], |row| {
            Ok(format!(
                "contact {} {} {} {:?} {:?} {}",
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, Option<f64>>(4)?,
                row.get::<_, String>(5)?
            ))
        })
        .unwrap();
    rows.extend(found.map(Result::unwrap));
    let mut days = db
        .prepare(
            "SELECT c.email, i.day, i.hits, i.occurred_at, i.description FROM interactions i
             JOIN contacts c ON c.id = i.contact_id WHERE i.kind = 'activity'",
        )
        .unwrap();
    let found = days
        .query_map([], |row| {
            Ok(format!(
                "day {} {} {} {} {}",
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?
            ))
        })
        .unwrap();
    rows.extend(found.map(Result::unwrap));
    rows.sort();
    rows
}

/// The crash-point workload: small, so that each run is quick and every crash lands inside it.
fn crash_workload() -> Vec<Request> {
    workload("crash", 400, 12)
}

/// Runs the crash-point workload on a fresh kith that aborts at `step`'s `n`-th pass, then
/// restarts it, checks nothing acknowledged was lost, replays everything and returns what
/// the events derived.
fn crash_at(step: &str, n: u32) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let point = format!("{step}:{n}");
    let (mut kith, key) = start(dir.path(), &[("KITH_CRASH_POINT", point.as_str())]);
    let key = key.expect("first start prints a write key");
    let requests = crash_workload();
    let answers = load(kith.port, &key, &requests, 4, &AtomicBool::new(false), &AtomicUsize::new(0));
    let status = kith.wait(Duration::from_secs(30));
    assert!(!status.success(), "{point}: kith died at the crash point ({status})");
    assert!(answers.len() < requests.len(), "{point}: the crash came before the load ended");
    let acked = acknowledged(&requests, &answers);

    let (kith, _) = start(dir.path(), &[]);
    let after_restart = stored(dir.path());
    let lost: Vec<_> = acked.iter().filter(|id| !after_restart.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{point}: {} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(after_restart.values().all(|&count| count == 1), "{point}: an event applied twice");
    let replay = load(kith.port, &key, &requests, 4, &AtomicBool::new(false), &AtomicUsize::new(0));
    assert!(replay.values().all(is_ok), "{point}: every replayed request is acknowledged");
    kith.stop();
    let stored = stored(dir.path());
    let sent: HashSet<_> = requests.iter().flat_map(|r| r.message_ids.iter().cloned()).collect();
    assert_eq!(stored.len(), sent.len(), "{point}: every event is stored");
    assert!(stored.values().all(|&count| count == 1), "{point}: no messageId is stored twice");
    derived(dir.path())
}

/// The same workload on a kith that never crashes.
fn without_a_crash() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (kith, key) = start(dir.path(), &[]);
    let requests = crash_workload();
    let answers = load(kith.port, &key.unwrap(), &requests, 4, &AtomicBool::new(false), &AtomicUsize::new(0));
    assert!(answers.values().all(is_ok));
    kith.stop();
    derived(dir.path())
}

#[test]
fn a_crash_at_any_step_of_the_log_or_the_projection_loses_nothing_and_counts_nothing_twice() {
    let expected = without_a_crash();
    assert!(expected.len() > 100, "the workload derives contacts and days: {}", expected.len());
    for (step, n) in [("log-after-commit", 40), ("projection-before-commit", 3), ("projection-after-commit", 3)] {
        let derived = crash_at(step, n);
        let differences: Vec<_> = derived.iter().zip(&expected).filter(|(got, want)| got != want).take(3).collect();
        assert_eq!(derived.len(), expected.len(), "{step}: as many contacts and days as without a crash");
        assert!(differences.is_empty(), "{step}: derived state differs from a run without a crash: {differences:?}");
    }
}

#[test]
fn sigterm_answers_every_request_in_flight_and_stores_every_200() {
    let dir = tempfile::tempdir().unwrap();
    let (mut kith, key) = start(dir.path(), &[]);
    let key = key.expect("first start prints a write key");
    let requests = workload("term", 2_000, 20);
    // Uploads still under way when SIGTERM arrives: their head and most of the body are sent.
    let slow = workload("slow", 8, 30);
    let mut uploads: Vec<_> = slow
        .iter()
        .map(|request| {
            let mut stream = TcpStream::connect(("127.0.0.1", kith.port)).unwrap();
            let cut = request.body.len() - 10;
            stream.write_all(head(kith.port, &key, "/v1/batch", request.body.len()).as_bytes()).unwrap();
            stream.write_all(&request.body.as_bytes()[..cut]).unwrap();
            (stream, cut)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let acked_events = AtomicUsize::new(0);
    let port = kith.port;
    let (answers, under_way, draining) = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load(port, &key, &requests, 6, &stop, &acked_events));
        // SIGTERM once kith has acknowledged part of the load, with more in flight.
        let under_way = wait_for(LOAD_WITHIN, || acked_events.load(Ordering::Relaxed) >= 200 || loader.is_finished());
        kith.signal("TERM");
        // The uploads finish once kith is draining, which it shows by closing its listener:
        // it must still answer them.
        let draining = wait_for(Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_err());
        let slow_answers: Vec<Answer> = uploads
            .drain(..)
            .zip(&slow)
            .map(|((mut stream, cut), request)| {
                stream.write_all(&request.body.as_bytes()[cut..]).unwrap();
                read_answer(stream)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        ((loader.join().unwrap(), slow_answers), under_way, draining)
    });
    let (answers, slow_answers) = answers;
    assert!(under_way, "the load was under way at SIGTERM");
    assert!(draining, "kith stopped accepting connections after SIGTERM");
    assert!(answers.len() < requests.len(), "SIGTERM came before the load ended");
    assert!(kith.wait(Duration::from_secs(30)).success(), "SIGTERM ends kith cleanly");
    for answer in &slow_answers {
        assert!(is_ok(answer), "a request in flight at SIGTERM is answered and stored: {answer:?}");
    }
    // Under load a request either got an answer or never reached kith (refused once the
    // listener closed); nothing got a 5xx other than 503.
    for answer in answers.values() {
        if let Answer::Status { code, .. } = answer {
            assert!(*code == 200 || *code == 503, "{answer:?}");
        }
    }
    let acked_under_load = acknowledged(&requests, &answers);
    eprintln!(
        "SIGTERM after {} requests; {} answered, {} events acknowledged",
        answers.len(),
        answers.values().filter(|answer| **answer != Answer::None).count(),
        acked_under_load.len()
    );
    assert!(!acked_under_load.is_empty(), "the load was under way at SIGTERM");
    let acked: HashSet<_> = acked_under_load
        .into_iter()
        .chain(slow.iter().flat_map(|request| request.message_ids.iter().cloned()))
        .collect();
    let stored = stored(dir.path());
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
}

#[test]
fn shed_requests_store_nothing_and_succeed_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    // A queue this short turns concurrent batches away.
    let (kith, key) = start(dir.path(), &[("KITH_QUEUE_EVENTS", "60")]);
    let key = key.expect("first start prints a write key");
    let requests: Vec<Request> =
        workload("shed", 600, 40).into_iter().filter(|request| request.path == "/v1/batch").collect();
    let answers = load(kith.port, &key, &requests, 8, &AtomicBool::new(false), &AtomicUsize::new(0));
    assert_eq!(answers.len(), requests.len());
    let shed: Vec<usize> = answers
        .iter()
        .filter(|(_, answer)| matches!(answer, Answer::Status { code: 429 | 503, .. }))
        .map(|(index, _)| *index)
        .collect();
    for answer in answers.values() {
        match answer {
            Answer::Status { code: 429 | 503, retry_after, body } => {
                assert!(retry_after, "a shed answer says when to retry");
                assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
            }
            answer => assert!(is_ok(answer), "only 200 or a retryable refusal: {answer:?}"),
        }
    }
    eprintln!("{} of {} batches shed", shed.len(), requests.len());
    assert!(!shed.is_empty(), "the short queue shed some requests");
    let before_retry = stored(dir.path());
    for index in &shed {
        let stored_part = requests[*index].message_ids.iter().filter(|id| before_retry.contains_key(*id)).count();
        assert_eq!(stored_part, 0, "a shed request stored nothing");
    }
    for id in acknowledged(&requests, &answers) {
        assert!(before_retry.contains_key(&id), "{id} was acknowledged and is stored");
    }
    // Retried one at a time, as a client would after Retry-After, every shed request succeeds.
    for index in &shed {
        let answer = send(kith.port, &key, &requests[*index]);
        assert!(is_ok(&answer), "{answer:?}");
    }
    kith.stop();
    let stored = stored(dir.path());
    let sent: HashSet<_> = requests.iter().flat_map(|r| r.message_ids.iter().cloned()).collect();
    assert_eq!(stored.len(), sent.len());
    assert!(stored.values().all(|&n| n == 1));
}

/// A batch larger than the whole queue must still get in: the pipeline caps a request's
/// permits at the queue size, so once the queue is free a retried batch is admitted, instead
/// of a 503 that no retry could cure.
#[test]
fn a_batch_larger_than_the_queue_is_eventually_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (kith, key) = start(dir.path(), &[("KITH_QUEUE_EVENTS", "60")]);
    let key = key.expect("first start prints a write key");
    let batch = workload("big", 2, 100).pop().expect("a batch");
    let answers: Vec<Answer> = (0..3).map(|_| send(kith.port, &key, &batch)).collect();
    kith.stop();
    assert!(answers.iter().any(is_ok), "a retried batch is accepted at last: {answers:?}");
}
