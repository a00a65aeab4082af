//! The whole benchmark in one run (targets in BENCHMARKS.md): the reference server and kith, each
//! started fresh, driven with the same seeded workloads, read from `/proc`, and a table of figures,
//! ratios and targets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::http::{Connection, Target};
use crate::load::{self, Options, Report, Requests};
use crate::procfs::{self, PeakRss, Reading};
use crate::reference::Mode;
use crate::workload::{self, ProductShape, Workload};

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `kith` binary.
    pub kith: PathBuf,
    /// Where each kith gets its fresh data directory (on a real disk: `write_bytes` is not
    /// counted on tmpfs).
    pub work_dir: PathBuf,
    /// Seed of every workload.
    pub seed: u64,
    /// `full` or `normal` (`KITH_DURABILITY`).
    pub durability: String,
    /// A PostgreSQL server: each kith then runs on a fresh database there instead of SQLite
    /// (bytes written are then the database server's, not counted by this suite).
    pub database_url: Option<String>,
    /// kith processes on that one database, each taking a share of the connections.
    pub nodes: usize,
    /// Connections posting batches.
    pub batch_connections: usize,
    /// Connections posting single identifies.
    pub identify_connections: usize,
    /// Length of each timed phase.
    pub duration: Duration,
    /// Single identifies per second for the latency phase.
    pub rate: f64,
    /// Product traffic.
    pub product: ProductShape,
    /// Users of the Engage first sync.
    pub engage_users: usize,
    /// Which parts to run.
    pub parts: Vec<Part>,
}

/// A part of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Single identifies: throughput and latency at a fixed rate.
    Identify,
    /// Product traffic in batches of 100.
    Product,
    /// The Engage first sync.
    Engage,
}

/// A server process under test.
struct Server {
    child: Child,
    url: String,
    write_key: Option<String>,
    secret_key: Option<String>,
    /// Further kith nodes on the same database (their memory and CPU are not in the figures).
    peers: Vec<(Child, String)>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn reading(&self) -> Reading {
        procfs::read(self.pid()).unwrap_or_default()
    }

    /// SIGTERM (kith then commits what it acknowledged), SIGKILL after a minute.
    fn stop(self) -> anyhow::Result<()> {
        for mut child in std::iter::once(self.child).chain(self.peers.into_iter().map(|(child, _)| child)) {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    bail!("the server did not stop within a minute of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Where load goes: this server and its peers.
    async fn target(&self, key: Option<String>) -> anyhow::Result<Target> {
        let mut target = Target::new(&self.url, key).await?;
        for (_, url) in &self.peers {
            target.peers.push(Target::new(url, None).await?.addr);
        }
        Ok(target)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited before listening: {status}");
        }
        if Instant::now() > deadline {
            bail!("the server did not listen on {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_reference(mode: Mode) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mode = match mode {
        Mode::Bare => "bare",
        Mode::Parse => "parse",
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(["reference", "--listen", &format!("127.0.0.1:{port}"), "--mode", mode])
        .spawn()
        .context("cannot start the reference server")?;
    wait_listening(&mut child, port)?;
    Ok(Server { child, url: format!("http://127.0.0.1:{port}"), write_key: None, secret_key: None, peers: Vec::new() })
}

async fn start_kith(settings: &Settings, name: &str) -> anyhow::Result<Server> {
    let dir = settings.work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    let database_url = match &settings.database_url {
        Some(server) => {
            let database = format!("kith_bench_{name}");
            kith_store::postgres::drop_database(server, &database).await?;
            Some(kith_store::postgres::create_database(server, &database).await?)
        }
        None => None,
    };
    let port = free_port()?;
    let mut child = kith_command(settings, &dir, database_url.as_deref(), port)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", settings.kith.display()))?;
    // The first start prints the keys and then a curl line naming /api/contacts.
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut write_key, mut secret_key) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.contains("write key") {
            write_key = line.split_whitespace().last().map(str::to_owned);
        }
        if line.contains("secret key") {
            secret_key = line.split_whitespace().last().map(str::to_owned);
        }
        if line.contains("/api/contacts") {
            break;
        }
    }
    let write_key = write_key.context("kith printed no write key on first start")?;
    wait_listening(&mut child, port)?;
    let mut peers = Vec::new();
    if let Some(url) = &database_url {
        for _ in 1..settings.nodes {
            let port = free_port()?;
            let mut peer = kith_command(settings, &dir, Some(url), port)
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", settings.kith.display()))?;
            wait_listening(&mut peer, port)?;
            peers.push((peer, format!("http://127.0.0.1:{port}")));
        }
    }
    Ok(Server { child, url: format!("http://127.0.0.1:{port}"), write_key: Some(write_key), secret_key, peers })
}

/// `kith serve` on `port`, on PostgreSQL when `database_url` is given, else in `dir`.
fn kith_command(settings: &Settings, dir: &Path, database_url: Option<&str>, port: u16) -> Command {
    let mut command = kith_cli(settings, dir, database_url);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    command
}

/// `kith` with the options every command of the suite shares; the subcommand comes after.
fn kith_cli(settings: &Settings, dir: &Path, database_url: Option<&str>) -> Command {
    let mut command = Command::new(&settings.kith);
    command.arg("--data-dir").arg(dir);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command
        .env("KITH_DURABILITY", &settings.durability)
        .env("KITH_LOG", "warn")
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_DATABASE_URL");
    command
}

/// `kith reproject` over what a stopped server of the suite stored in `dir` (SQLite): the
/// stored events it read and how long it took, as the command prints them.
fn reproject(settings: &Settings, dir: &Path) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let output = kith_cli(settings, dir, None).arg("reproject").stderr(Stdio::null()).output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("kith reproject failed: {stdout}");
    }
    // "rebuilt N contacts from M events in …"
    let events = stdout
        .split_whitespace()
        .skip_while(|word| *word != "from")
        .nth(1)
        .and_then(|word| word.parse().ok())
        .with_context(|| format!("kith reproject printed no event count: {stdout}"))?;
    Ok((events, elapsed))
}

/// One measured phase against one server.
struct Phase {
    report: Report,
    before: Reading,
    after: Reading,
    peak_rss_kib: u64,
    /// kith's writer over the phase, from `/metrics`.
    writer: Option<WriterStats>,
}

/// kith's ingest transactions, from its Prometheus counters.
#[derive(Debug, Clone, Copy, Default)]
struct WriterStats {
    commits: f64,
    events: f64,
    seconds: f64,
}

impl WriterStats {
    async fn read(target: &Target) -> Option<WriterStats> {
        let answer = Connection::new(target.addr).send(&target.get("/metrics")).await.ok()?;
        let text = String::from_utf8(answer.body).ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Some(WriterStats {
            commits: value("kith_commits_total"),
            events: value("kith_committed_events_total"),
            seconds: value("kith_commit_seconds_sum"),
        })
    }

    fn since(self, before: WriterStats) -> WriterStats {
        WriterStats {
            commits: self.commits - before.commits,
            events: self.events - before.events,
            seconds: self.seconds - before.seconds,
        }
    }
}

impl Phase {
    fn written_per_event(&self) -> f64 {
        self.after.write_bytes.saturating_sub(self.before.write_bytes) as f64 / self.report.events.max(1) as f64
    }

    fn cpu_seconds(&self) -> f64 {
        self.after.cpu_ticks.saturating_sub(self.before.cpu_ticks) as f64 / 100.0
    }
}

async fn measure(server: &Server, requests: &Arc<Requests>, options: Options, label: &str) -> anyhow::Result<Phase> {
    let target = server.target(server.write_key.clone()).await?;
    let is_kith = server.write_key.is_some();
    let writer_before = if is_kith { WriterStats::read(&target).await } else { None };
    let before = server.reading();
    let peak = PeakRss::start(server.pid());
    let mut report = load::run(&target, requests.clone(), options).await;
    if is_kith {
        // A phase ends when what it acknowledged can be read, not merely when it is in the log.
        report.elapsed += settle(server).await?;
    }
    let after = server.reading();
    let writer = match writer_before {
        Some(before) => WriterStats::read(&target).await.map(|now| now.since(before)),
        None => None,
    };
    let phase = Phase { report, before, after, peak_rss_kib: peak.peak_kib().max(after.rss_kib), writer };
    eprintln!(
        "  {label}: {}; server peak RSS {} MiB, {:.0} B written/event, {:.1} CPU s",
        phase.report.summary(),
        phase.peak_rss_kib / 1024,
        phase.written_per_event(),
        phase.cpu_seconds()
    );
    if let Some(writer) = phase.writer {
        // The share of wall time the single writer spent in transactions: near 100 % means
        // the writer, not HTTP or parsing, sets the pace.
        eprintln!(
            "  {label}: {:.0} commits, {:.0} events/commit, mean transaction {:.1} ms, writer busy {:.0} % of the time",
            writer.commits,
            writer.events / writer.commits.max(1.0),
            1000.0 * writer.seconds / writer.commits.max(1.0),
            100.0 * writer.seconds / phase.report.elapsed.as_secs_f64().max(1e-9)
        );
    }
    if phase.report.failed + phase.report.io_errors > 0 {
        eprintln!("  warning: {label} had failures; its figures are not comparable");
    }
    Ok(phase)
}

/// Waits until every event kith acknowledged is readable: a read waits for the event log's
/// projection, so one read after the load returns when the last event is applied.
async fn settle(server: &Server) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let read = reads(server, &["/api/contacts?limit=1".to_owned()]).await?;
    anyhow::ensure!(read.failed == 0, "the read after the load failed");
    Ok(started.elapsed())
}

/// Latencies of read-API GETs sent one after another (a person's page views, not a load).
struct Reads {
    latencies_us: Vec<u32>,
    failed: u64,
}

impl Reads {
    fn percentile_ms(&self, q: f64) -> f64 {
        Report { latencies_us: self.latencies_us.clone(), ..Report::default() }.percentile_ms(q)
    }
}

async fn reads(server: &Server, paths: &[String]) -> anyhow::Result<Reads> {
    let target = Target::new(&server.url, server.secret_key.clone()).await?;
    let mut connection = Connection::new(target.addr);
    let mut reads = Reads { latencies_us: Vec::with_capacity(paths.len()), failed: 0 };
    for path in paths {
        let request = target.get(path);
        let started = Instant::now();
        match connection.send(&request).await {
            Ok(answer) if answer.status == 200 => {
                reads.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok(answer) => {
                reads.failed += 1;
                eprintln!("  GET {path}: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
            }
            Err(error) => {
                reads.failed += 1;
                eprintln!("  GET {path}: {error}");
            }
        }
    }
    reads.latencies_us.sort_unstable();
    Ok(reads)
}

/// The read paths BENCHMARKS.md sets targets for, on the database a load has just filled: the
/// closest 50 contacts, and the timelines of the most active users.
async fn read_paths(
    server: &Server,
    part: Part,
    events: u64,
    busiest: &[String],
    rows: &mut Vec<Row>,
) -> anyhow::Result<u64> {
    let closest: Vec<String> = (0..200).map(|_| "/api/contacts?sort=closeness&limit=50".to_owned()).collect();
    let reads_closest = reads(server, &closest).await?;
    let contacts = match part {
        Part::Product => "the product-traffic contacts".to_owned(),
        _ => format!("{} Engage contacts (no interactions yet)", thousands(events as f64)),
    };
    rows.push(row(
        &format!("closest 50 of {contacts}: p50 / p99"),
        format!("{:.2} / {:.2} ms", reads_closest.percentile_ms(0.5), reads_closest.percentile_ms(0.99)),
        "-".into(),
        "-".into(),
        "≤ 10 ms",
        Some(reads_closest.percentile_ms(0.99) <= 10.0),
    ));
    let mut failed = reads_closest.failed;
    if part == Part::Product && !busiest.is_empty() {
        // The busiest users have the longest timelines.
        let timelines: Vec<String> =
            busiest.iter().cycle().take(200).map(|email| format!("/api/contacts/{email}/timeline")).collect();
        let reads_timeline = reads(server, &timelines).await?;
        rows.push(row(
            "a busy contact's timeline page: p50 / p99",
            format!("{:.2} / {:.2} ms", reads_timeline.percentile_ms(0.5), reads_timeline.percentile_ms(0.99)),
            "-".into(),
            "-".into(),
            "≤ 10 ms",
            Some(reads_timeline.percentile_ms(0.99) <= 10.0),
        ));
        failed += reads_timeline.failed;
    }
    Ok(failed)
}

/// Phases whose requests failed: their figures mean nothing, and the run says so by failing.
fn failures(phases: &[&Phase]) -> u64 {
    phases.iter().map(|phase| phase.report.failed + phase.report.io_errors).sum()
}

fn prepare(server: &Server, workload: &Workload) -> Arc<Requests> {
    // The Host header does not matter to either server; the key does.
    let target = Target {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: Vec::new(),
        host: "127.0.0.1".into(),
        key: server.write_key.clone(),
    };
    Arc::new(load::prepare(&target, workload))
}

/// A row of the final table.
struct Row {
    measure: String,
    kith: String,
    reference: String,
    ratio: String,
    target: String,
    verdict: String,
}

fn row(measure: &str, kith: String, reference: String, ratio: String, target: &str, met: Option<bool>) -> Row {
    Row {
        measure: measure.to_owned(),
        kith,
        reference,
        ratio,
        target: target.to_owned(),
        verdict: match met {
            Some(true) => "met".into(),
            Some(false) => "NOT met".into(),
            None => "-".into(),
        },
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs the suite and prints the table (Markdown) to stdout; progress goes to stderr.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.work_dir)?;
    if !settings.kith.exists() {
        bail!("{} does not exist: build it with `cargo build --release -p kith-cli`", settings.kith.display());
    }
    let mut rows = Vec::new();
    let timed = |rate: Option<f64>, connections: usize| Options {
        connections,
        rate,
        duration: Some(settings.duration),
        retry_shed: false,
    };
    let once = Options { connections: settings.batch_connections, rate: None, duration: None, retry_shed: true };
    let secs = settings.duration.as_secs_f64();

    let mut idle_rss = None;
    let mut peak_rss = 0u64;
    let mut failed = 0;
    if settings.parts.contains(&Part::Identify) {
        eprintln!("single identifies ({} connections, {secs:.0} s phases)", settings.identify_connections);
        let at_rate = workload::identifies(settings.seed, settings.product.users, (settings.rate * secs) as usize + 1);
        let flat_out = workload::identifies(settings.seed + 1, settings.product.users, (30_000.0 * secs) as usize);

        let reference = start_reference(Mode::Bare)?;
        let ref_rate =
            measure(&reference, &prepare(&reference, &at_rate), timed(Some(settings.rate), 50), "reference at rate")
                .await?;
        let ref_max = measure(
            &reference,
            &prepare(&reference, &flat_out),
            timed(None, settings.identify_connections),
            "reference flat out",
        )
        .await?;
        reference.stop()?;

        let kith = start_kith(&settings, "identify").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle_rss = Some(kith.reading().rss_kib);
        let kith_rate =
            measure(&kith, &prepare(&kith, &at_rate), timed(Some(settings.rate), 50), "kith at rate").await?;
        let kith_max =
            measure(&kith, &prepare(&kith, &flat_out), timed(None, settings.identify_connections), "kith flat out")
                .await?;
        peak_rss = peak_rss.max(kith_rate.peak_rss_kib).max(kith_max.peak_rss_kib);
        failed += failures(&[&ref_rate, &ref_max, &kith_rate, &kith_max]);
        kith.stop()?;

        let rate = settings.rate;
        rows.push(row(
            &format!("single identify p50 / p99 at {rate:.0} req/s"),
            format!("{:.2} / {:.2} ms", kith_rate.report.percentile_ms(0.5), kith_rate.report.percentile_ms(0.99)),
            format!("{:.2} / {:.2} ms", ref_rate.report.percentile_ms(0.5), ref_rate.report.percentile_ms(0.99)),
            format!("{:.1}× (p99)", kith_rate.report.percentile_ms(0.99) / ref_rate.report.percentile_ms(0.99)),
            "p99 ≤ 5 ms",
            Some(kith_rate.report.percentile_ms(0.99) <= 5.0 && kith_rate.report.failed == 0),
        ));
        let ratio = kith_max.report.requests_per_sec() / ref_max.report.requests_per_sec();
        rows.push(row(
            &format!("single identify, flat out ({} connections)", settings.identify_connections),
            format!(
                "{} req/s (p99 {:.1} ms)",
                thousands(kith_max.report.requests_per_sec()),
                kith_max.report.percentile_ms(0.99)
            ),
            format!(
                "{} req/s (p99 {:.1} ms)",
                thousands(ref_max.report.requests_per_sec()),
                ref_max.report.percentile_ms(0.99)
            ),
            format!("{:.0} %", ratio * 100.0),
            "≥ 50 % of the reference",
            Some(ratio >= 0.5),
        ));
    }

    let on_postgres = settings.database_url.is_some();
    for (part, name) in [(Part::Product, "product"), (Part::Engage, "engage")] {
        if !settings.parts.contains(&part) {
            continue;
        }
        let workload: Workload = match part {
            Part::Product => workload::product(settings.seed, settings.product),
            _ => workload::engage(settings.seed, settings.engage_users, settings.product.batch),
        };
        eprintln!(
            "{} ({} requests, {} B/event, {} connections)",
            workload.name,
            workload.bodies.len(),
            workload.bytes_per_event(),
            settings.batch_connections
        );
        let reference = start_reference(Mode::Parse)?;
        let ref_phase =
            measure(&reference, &prepare(&reference, &workload), once, "reference (parse, discard)").await?;
        reference.stop()?;
        let kith = start_kith(&settings, name).await?;
        let requests = prepare(&kith, &workload);
        let busiest = workload.busiest.clone();
        drop(workload);
        let phase = measure(&kith, &requests, once, "kith").await?;
        peak_rss = peak_rss.max(phase.peak_rss_kib);
        failed += failures(&[&ref_phase, &phase]);
        let mut read_rows = Vec::new();
        failed += read_paths(&kith, part, phase.report.events, &busiest, &mut read_rows).await?;
        kith.stop()?;
        if part == Part::Product && !on_postgres {
            let (events, elapsed) = reproject(&settings, &settings.work_dir.join(name))?;
            let rate = events as f64 / elapsed.as_secs_f64().max(1e-9);
            rows.push(row(
                &format!("reprojection of the product history ({} events)", thousands(events as f64)),
                format!("{:.1} s = {} events/s", elapsed.as_secs_f64(), thousands(rate)),
                "-".into(),
                "-".into(),
                "≥ 100,000 events/s",
                Some(rate >= 100_000.0),
            ));
        }
        let events_per_sec = phase.report.events_per_sec();
        let ratio = format!("{:.1} %", 100.0 * events_per_sec / ref_phase.report.events_per_sec());
        let reference_rate = format!("{} events/s", thousands(ref_phase.report.events_per_sec()));
        let written = phase.written_per_event();
        match part {
            Part::Product => {
                rows.push(row(
                    "product traffic, batches of 100",
                    format!("{} events/s", thousands(events_per_sec)),
                    reference_rate,
                    ratio,
                    if on_postgres { "≥ 50,000 events/s (two nodes)" } else { "≥ 100,000 events/s" },
                    Some(events_per_sec >= if on_postgres { 50_000.0 } else { 100_000.0 }),
                ));
                // On PostgreSQL the database server does the writing, which /proc of kith does not see.
                if !on_postgres {
                    rows.push(row(
                        "product traffic: written per event",
                        format!(
                            "{:.0} B ({:.1} CPU µs/event)",
                            written,
                            1e6 * phase.cpu_seconds() / phase.report.events.max(1) as f64
                        ),
                        "-".into(),
                        "-".into(),
                        "naive SQLite 15–21 KB",
                        None,
                    ));
                }
            }
            _ => {
                let seconds = phase.report.elapsed.as_secs_f64();
                rows.push(row(
                    &format!("Engage first sync of {} identifies", thousands(phase.report.events as f64)),
                    format!("{seconds:.1} s = {} events/s", thousands(events_per_sec)),
                    reference_rate,
                    ratio,
                    "≥ 50,000 events/s (1 M in ≤ 20 s)",
                    Some(events_per_sec >= 50_000.0),
                ));
                if !on_postgres {
                    rows.push(row(
                        "Engage first sync: written per event",
                        format!("{:.0} B", written),
                        "-".into(),
                        "-".into(),
                        "≤ 5 KB",
                        Some(written <= 5_000.0),
                    ));
                }
            }
        }
        rows.extend(read_rows);
    }
    if let Some(idle) = idle_rss {
        rows.push(row(
            "RSS idle (2 s after start)",
            mib(idle),
            "-".into(),
            "-".into(),
            "≤ 50 MB",
            Some(idle <= 50_000),
        ));
    }
    if peak_rss > 0 {
        rows.push(row(
            "RSS peak under the loads above",
            mib(peak_rss),
            "-".into(),
            "-".into(),
            "≤ 300 MB",
            Some(peak_rss <= 300_000),
        ));
    }
    print_table(&settings, &rows);
    if failed > 0 {
        bail!("{failed} requests failed or got no answer: the figures above are not valid");
    }
    Ok(())
}

fn print_table(settings: &Settings, rows: &[Row]) {
    println!(
        "\nseed {}, {}, {} s timed phases, {} batch connections, kith {}\n",
        settings.seed,
        match &settings.database_url {
            Some(_) =>
                format!("on PostgreSQL, {} node(s), RSS and bytes written of the first node only", settings.nodes),
            None => format!("durability {}", settings.durability),
        },
        settings.duration.as_secs(),
        settings.batch_connections,
        display(&settings.kith)
    );
    println!("| measure | kith | reference (same run) | kith / reference | target | |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.measure, row.kith, row.reference, row.ratio, row.target, row.verdict
        );
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
    }
}
