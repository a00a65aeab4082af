//! `kith-bench`: kith's benchmark harness; targets, figures and commands are in BENCHMARKS.md.
//!
//! - `suite`: everything in one run against fresh data directories, with the reference server
//!   measured in the same run, printed as a table;
//! - `load`: drive a running server with one workload;
//! - `gen`: write a workload's bodies, one JSON body per line, for other tools;
//! - `parse`: read a workload's bodies as kith's ingest does, in process, beside a syntax-only
//!   read of the same bytes;
//! - `reference`: the bare axum server kith is compared with.
//!
//! Every workload is seeded: the same seed and sizes give the same bytes on any machine.
#![forbid(unsafe_code)]

mod http;
mod load;
mod parse;
mod procfs;
mod reference;
mod rng;
mod suite;
mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::workload::{ProductShape, Workload};

/// kith's benchmark harness.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The workload sizes shared by `gen`, `load` and `suite`.
#[derive(clap::Args, Clone)]
struct Sizes {
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct users of product traffic and single identifies.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Events of product traffic (a user's anonymous first page view comes on top).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Zipf exponent of per-user activity in product traffic.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Identifies of the Engage first sync (one per distinct user).
    #[arg(long, default_value_t = 1_000_000)]
    engage_users: usize,
}

impl Sizes {
    fn product(&self) -> ProductShape {
        ProductShape { users: self.users, events: self.events, zipf: self.zipf, batch: self.batch, days: 30 }
    }

    fn workload(&self, kind: Kind, single_count: usize) -> Workload {
        match kind {
            Kind::Product => workload::product(self.seed, self.product()),
            Kind::Engage => workload::engage(self.seed, self.engage_users, self.batch),
            Kind::Identify => workload::identifies(self.seed, self.users, single_count),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Product traffic in batches.
    Product,
    /// An Engage first sync in batches.
    Engage,
    /// Single identifies to /v1/identify.
    Identify,
}

#[derive(Subcommand)]
enum Command {
    /// Run every benchmark against fresh servers and print a table.
    Suite {
        /// The kith binary.
        #[arg(long, default_value = "target/release/kith")]
        kith: PathBuf,
        /// Folder for the servers' data (must be on a disk, not tmpfs).
        #[arg(long, default_value = "target/bench-data")]
        work_dir: PathBuf,
        /// `full` or `normal`: kith's KITH_DURABILITY.
        #[arg(long, default_value = "full")]
        durability: String,
        /// Run kith on PostgreSQL: a fresh database per part on this server (e.g.
        /// postgres://postgres@127.0.0.1:5432/postgres).
        #[arg(long)]
        database_url: Option<String>,
        /// kith nodes on that database (with --database-url), the load spread over them.
        #[arg(long, default_value_t = 1, requires = "database_url")]
        nodes: usize,
        /// Connections posting batches.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Connections posting single identifies flat out.
        #[arg(long, default_value_t = 64)]
        identify_connections: usize,
        /// Seconds of each timed phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Single identifies per second in the latency phase.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Parts to run (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<suite::Part>,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// Drive a running server with one workload and print what it measured.
    Load {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A write key.
        #[arg(long, env = "KITH_BENCH_KEY")]
        key: Option<String>,
        /// The workload.
        #[arg(long, value_enum)]
        workload: Kind,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Requests per second (default: as fast as answers come).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds to send for, cycling through the requests (default: each request once).
        #[arg(long)]
        seconds: Option<u64>,
        /// Single identifies to prepare.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// A server pid whose memory, writes and CPU to report.
        #[arg(long)]
        pid: Option<u32>,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// Write a workload's request bodies to stdout, one per line.
    Gen {
        /// The workload.
        #[arg(long, value_enum)]
        workload: Kind,
        /// Single identifies to write.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// Read a workload's bodies as kith's ingest does (no server, no disk) beside a
    /// syntax-only read of the same bytes, and print the median time per event.
    Parse {
        /// The workload.
        #[arg(long, value_enum)]
        workload: Kind,
        /// Readings of the whole workload; the median is printed.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// Serve the reference: every POST answered `{"success":true}`.
    Reference {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// What to do with the body.
        #[arg(long, value_enum, default_value_t = reference::Mode::Bare)]
        mode: reference::Mode,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Suite {
            kith,
            work_dir,
            durability,
            database_url,
            nodes,
            connections,
            identify_connections,
            seconds,
            rate,
            only,
            sizes,
        } => {
            let parts = if only.is_empty() {
                vec![suite::Part::Identify, suite::Part::Product, suite::Part::Engage]
            } else {
                only
            };
            suite::run(suite::Settings {
                kith,
                work_dir,
                seed: sizes.seed,
                durability,
                database_url,
                nodes,
                batch_connections: connections,
                identify_connections,
                duration: Duration::from_secs(seconds),
                rate,
                product: sizes.product(),
                engage_users: sizes.engage_users,
                parts,
            })
            .await
        }
        Command::Load { url, key, workload, connections, rate, seconds, requests, pid, sizes } => {
            let workload = sizes.workload(workload, requests);
            eprintln!("{}: {} requests, {} B/event", workload.name, workload.bodies.len(), workload.bytes_per_event());
            let target = http::Target::new(&url, key).await?;
            let prepared = Arc::new(load::prepare(&target, &workload));
            drop(workload);
            let before = pid.and_then(procfs::read);
            let peak = pid.map(procfs::PeakRss::start);
            let options = load::Options {
                connections,
                rate,
                duration: seconds.map(Duration::from_secs),
                retry_shed: rate.is_none(),
            };
            let report = load::run(&target, prepared, options).await;
            println!("{}", report.summary());
            if let (Some(before), Some(after)) = (before, pid.and_then(procfs::read)) {
                println!(
                    "server: RSS {} MiB (peak in run {} MiB, since start {} MiB), {:.0} B written/event, {:.2} CPU s",
                    after.rss_kib / 1024,
                    peak.map_or(0, |p| p.peak_kib()) / 1024,
                    after.hwm_kib / 1024,
                    after.write_bytes.saturating_sub(before.write_bytes) as f64 / report.events.max(1) as f64,
                    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / 100.0
                );
            }
            Ok(())
        }
        Command::Gen { workload, requests, sizes } => {
            let workload = sizes.workload(workload, requests);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for body in &workload.bodies {
                out.write_all(body.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(())
        }
        Command::Parse { workload, rounds, sizes } => parse::run(&sizes.workload(workload, 100_000), rounds),
        Command::Reference { listen, mode } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            reference::serve(listener, mode).await?;
            Ok(())
        }
    }
}
