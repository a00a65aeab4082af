//! `kith`: serve, migrate, manage keys, workspaces and users of the web app.
#![forbid(unsafe_code)]

mod config;

/// mimalloc instead of the system allocator: the writer allocates and frees many small
/// values per event, and glibc's allocator spent a fifth of the CPU on it and fragmented memory.
/// Built as mimalloc 2 (`v2`) without transparent huge pages (`no_thp`), both in Cargo.toml:
/// a 2 MiB page is resident as soon as one byte of it is touched (peak RSS under product
/// traffic 410 instead of 250 MiB), and mimalloc 3 keeps freed memory for a second before
/// giving it back (peak RSS over a full benchmark run 352–380 instead of 224–296 MiB). Neither
/// changed the speed measurably.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use kith_server::auth::generate_key_in;
use kith_server::service::users::{create_user, generate_password, remove_user, set_user_password};
use kith_server::web::WebConfig;
use kith_server::{App, AppConfig};
use kith_store::postgres::PostgresStore;
use kith_store::sqlite::{SqliteOptions, SqliteStore};
use kith_store::{KeyKind, Store, WorkspaceId, WorkspacePatch};

use crate::config::Settings;

/// kith: a relationship CRM that listens to your product's Segment events.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (default: ./kith.toml if it exists).
    #[arg(long, global = true, env = "KITH_CONFIG")]
    config: Option<PathBuf>,
    /// Folder of the SQLite database.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `postgres://user:password@host:port/database` to use PostgreSQL instead of the
    /// embedded SQLite (also `KITH_DATABASE_URL`).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080; with port 0 the system picks a free port, and
        /// the address bound is printed ("kith is listening on http://…").
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Import Segment events from a file of JSON lines (gzipped or not); events keep their
    /// own times and replays are recognised by messageId.
    Import {
        /// The file, one event (or batch) per line; `-` for standard input.
        file: PathBuf,
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// Rebuild history from the stored events: every contact's days (counted in the workspace's
    /// time zone, first description, hits) and closeness. The server does this by itself after
    /// a time zone change; this runs it now and waits for the end.
    Reproject {
        /// Workspace id (default: every workspace).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// Export contacts as CSV, closest first.
    Export {
        /// Where to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// Manage workspaces.
    Workspaces {
        #[command(subcommand)]
        command: Option<WorkspacesCommand>,
    },
    /// Manage the people who sign in to the web app.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user who signs in with an email and a password (generated and printed once
    /// when not given).
    Create {
        /// The email they sign in with.
        #[arg(long)]
        email: String,
        /// Their password (at least 8 characters); prefer letting kith generate one, as a
        /// password on the command line stays in the shell's history.
        #[arg(long, env = "KITH_USER_PASSWORD")]
        password: Option<String>,
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// Set a user's password (generated and printed once when not given); it signs them out
    /// everywhere.
    Passwd {
        /// The email they sign in with.
        #[arg(long)]
        email: String,
        /// The new password (at least 8 characters).
        #[arg(long, env = "KITH_USER_PASSWORD")]
        password: Option<String>,
    },
    /// Remove a user; their sessions end at once.
    Remove {
        /// The email they sign in with.
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown once).
    Create {
        /// `write` (ingest only, safe in a web page) or `secret` (ingest and the read API).
        #[arg(long, default_value = "write")]
        kind: String,
        /// A label.
        #[arg(long)]
        name: Option<String>,
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// List keys.
    List {
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke {
        /// The key's id (see `kith keys list`).
        id: i64,
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    /// List workspaces.
    List,
    /// Create a workspace with a secret and a write key.
    Create {
        /// Its name.
        name: String,
    },
    /// Change a workspace's settings.
    Set {
        /// Workspace id (default: the first).
        #[arg(long)]
        workspace: Option<WorkspaceId>,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// IANA time zone in which days are counted, e.g. Europe/Paris.
        #[arg(long)]
        time_zone: Option<String>,
        /// Closeness half-life in days.
        #[arg(long)]
        half_life_days: Option<f64>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    if let Some(url) = cli.database_url {
        settings.database_url = Some(config::Secret(url));
    }
    if let Command::Serve { listen: Some(listen) } = &cli.command {
        settings.listen = listen.clone();
    }
    init_logging(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command, settings))
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KITH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if settings.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The PostgreSQL URL, when one is configured.
fn postgres_url(settings: &Settings) -> anyhow::Result<Option<&str>> {
    match &settings.database_url {
        Some(url) if url.0.starts_with("postgres://") || url.0.starts_with("postgresql://") => Ok(Some(&url.0)),
        Some(_) => bail!("database_url must be a postgres:// URL; leave it unset for the embedded SQLite"),
        None => Ok(None),
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = postgres_url(settings)? {
        let store =
            PostgresStore::open(&settings.postgres(url)).await.context("cannot open the PostgreSQL database")?;
        return Ok(Arc::new(store));
    }
    let path = settings.database_path();
    let mut options = SqliteOptions::new(&path);
    options.durability = settings.durability;
    let store = SqliteStore::open(&options).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Arc::new(store))
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve(settings).await,
        Command::Migrate => {
            if let Some(url) = postgres_url(&settings)? {
                let applied = PostgresStore::migrate(url).await.context("cannot migrate the PostgreSQL database")?;
                match applied.as_slice() {
                    [] => println!("the PostgreSQL database is up to date"),
                    versions => println!("applied migrations {versions:?} to the PostgreSQL database"),
                }
                return Ok(());
            }
            let path = settings.database_path();
            let applied = SqliteStore::migrate(&path).with_context(|| format!("cannot migrate {}", path.display()))?;
            match applied.as_slice() {
                [] => println!("{} is up to date", path.display()),
                versions => println!("applied migrations {versions:?} to {}", path.display()),
            }
            Ok(())
        }
        Command::Keys { command } => {
            keys(open_store(&settings).await?.as_ref(), settings.regions()?.own.as_deref(), command).await
        }
        Command::Workspaces { command } => {
            workspaces(open_store(&settings).await?.as_ref(), settings.regions()?.own.as_deref(), command).await
        }
        Command::Import { file, workspace } => import(open_store(&settings).await?.as_ref(), &file, workspace).await,
        Command::Reproject { workspace } => reproject(open_store(&settings).await?.as_ref(), workspace).await,
        Command::Export { output, workspace } => export(open_store(&settings).await?.as_ref(), output, workspace).await,
        Command::Users { command } => users(open_store(&settings).await?.as_ref(), command).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let regions = settings.regions()?;
    let store = open_store(&settings).await?;
    let keys = if store.workspaces().await?.is_empty() {
        Some(create_workspace(store.as_ref(), regions.own.as_deref(), "Default").await?)
    } else {
        None
    };
    // Also on a database made before the web app existed: there must be someone to sign in.
    let first_user = match store.user_count().await? {
        0 => Some(create_first_user(store.as_ref()).await?),
        _ => None,
    };
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    // The address actually bound: with port 0 the system picks one, and this is where to find it.
    let address = listener.local_addr()?.to_string();
    if let Some((write, secret)) = &keys {
        print_first_start(&address, write, secret, first_user.as_ref());
    } else if let Some(user) = &first_user {
        print_first_user(&address, user);
    }
    announce(format_args!("kith is listening on http://{address}"));
    let config = AppConfig {
        pipeline: settings.pipeline(),
        smtp: settings.smtp(),
        manual_jobs: false,
        web: WebConfig { public_url: settings.public_url.clone(), ..WebConfig::default() },
        outbound_allow: settings.outbound_allow()?,
        jobs_stale_after: None,
        connections: settings.connections(),
        metrics_token: settings.metrics_token.as_ref().map(|token| token.0.clone()),
        regions,
    };
    let mut app = App::new(store, config)?;
    if let Some(address) = &settings.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for metrics"))?;
        app = app.with_metrics_listener(metrics);
    }
    tracing::info!(listen = %address, data_dir = %settings.data_dir.display(), "kith is listening");
    app.serve(listener, shutdown).await?;
    tracing::info!("kith stopped; everything acknowledged is committed");
    Ok(())
}

/// Registers the stop signals at once, so that a SIGTERM arriving as soon as kith says it is
/// listening is a graceful stop rather than the default kill; resolves when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            // A signal that could not be registered never arrives; the other still stops kith.
            let wait = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: answering requests in flight, then committing the queue");
    }
}

/// A workspace of this node's region, with its keys.
async fn create_workspace(store: &dyn Store, region: Option<&str>, name: &str) -> anyhow::Result<(String, String)> {
    let (_, write, secret) = kith_server::service::settings::create_workspace(store, region, name).await?;
    Ok((write, secret))
}

/// The first user: `admin@localhost` and a generated password.
async fn create_first_user(store: &dyn Store) -> anyhow::Result<(String, String)> {
    let workspace = workspace_id(store, None).await?;
    let email = "admin@localhost".to_owned();
    let password = generate_password();
    create_user(store, workspace, &email, &password).await?;
    Ok((email, password))
}

fn print_first_user(listen: &str, (email, password): &(String, String)) {
    let host = listen.replace("0.0.0.0", "127.0.0.1");
    announce(format_args!(
        "\nSign in to the web app at http://{host}/ as {email}; the password is shown once:\n\n  \
         password: {password}"
    ));
}

fn print_first_start(listen: &str, write: &str, secret: &str, user: Option<&(String, String)>) {
    let host = listen.replace("0.0.0.0", "127.0.0.1");
    announce(format_args!(
        "\nkith created its database and a workspace. These keys are shown once:\n\n  \
         write key  (ingest only, safe in a web page): {write}\n  \
         secret key (ingest and the read API):        {secret}"
    ));
    if let Some(user) = user {
        print_first_user(listen, user);
    }
    announce(format_args!(
        "\nSend your first event:\n\n  \
         curl -u '{write}:' http://{host}/v1/identify \\\n    \
         -d '{{\"userId\":\"u1\",\"traits\":{{\"email\":\"ada@example.com\",\"name\":\"Ada\"}},\"timestamp\":\"'$(date -u +%Y-%m-%dT%H:%M:%SZ)'\"}}'\n\n\
         and see the contact:\n\n  \
         curl -H 'Authorization: Bearer {secret}' http://{host}/api/contacts\n"
    ));
}

/// Prints a line of `kith serve`'s start-up output. A server keeps serving when nobody reads
/// its standard output any more (a supervisor that read the banner and closed the pipe), so a
/// failed write is ignored rather than a panic.
fn announce(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
}

async fn workspace_id(store: &dyn Store, given: Option<WorkspaceId>) -> anyhow::Result<WorkspaceId> {
    match given {
        Some(id) => {
            store.workspace(id).await?.with_context(|| format!("there is no workspace {id}"))?;
            Ok(id)
        }
        None => store
            .workspaces()
            .await?
            .first()
            .map(|workspace| workspace.id)
            .context("there is no workspace yet: run `kith serve` once or `kith workspaces create NAME`"),
    }
}

/// `kith keys`; a new key carries its workspace's region, else this node's (`region`).
async fn keys(store: &dyn Store, region: Option<&str>, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { kind, name, workspace } => {
            let kind = KeyKind::parse(&kind).context("--kind is `write` or `secret`")?;
            let workspace = workspace_id(store, workspace).await?;
            let workspace_region = store.workspace(workspace).await?.and_then(|found| found.region);
            let text = generate_key_in(kind, workspace_region.as_deref().or(region));
            let name = name.unwrap_or_else(|| format!("{} key", kind.as_str()));
            let key = store.create_key(workspace, kind, &name, &text).await?;
            println!("created {} key {} ({name}); it is shown once:\n{text}", kind.as_str(), key.id);
        }
        KeysCommand::List { workspace } => {
            let workspace = workspace_id(store, workspace).await?;
            println!("{:>4}  {:<6}  {:<14}  {:<25}  {:<25}  name", "id", "kind", "prefix", "created", "revoked");
            for key in store.keys(workspace).await? {
                println!(
                    "{:>4}  {:<6}  {:<14}  {:<25}  {:<25}  {}",
                    key.id,
                    key.kind.as_str(),
                    format!("{}…", key.prefix),
                    key.created_at.to_string(),
                    key.revoked_at.map_or_else(|| "-".to_owned(), |t| t.to_string()),
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id, workspace } => {
            let workspace = workspace_id(store, workspace).await?;
            if !store.revoke_key(workspace, id).await? {
                bail!("there is no key {id} in workspace {workspace}");
            }
            println!("revoked key {id}");
        }
    }
    Ok(())
}

async fn users(store: &dyn Store, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { email, password, workspace } => {
            let workspace = workspace_id(store, workspace).await?;
            let (password, generated) = match password {
                Some(password) => (password, false),
                None => (generate_password(), true),
            };
            let user = create_user(store, workspace, &email, &password).await?;
            println!("created user {} in workspace {workspace}; they sign in at /login", user.email);
            if generated {
                println!("password (shown once): {password}");
            }
        }
        UsersCommand::Passwd { email, password } => {
            let (password, generated) = match password {
                Some(password) => (password, false),
                None => (generate_password(), true),
            };
            let user = set_user_password(store, &email, &password).await?;
            println!("changed the password of {}; their sessions have ended", user.email);
            if generated {
                println!("password (shown once): {password}");
            }
        }
        UsersCommand::Remove { email } => {
            let user = remove_user(store, &email).await?;
            println!("removed user {} of workspace {}; their sessions have ended", user.email, user.workspace_id);
        }
    }
    Ok(())
}

/// `kith workspaces`; a new workspace belongs to this node's region (`region`).
async fn workspaces(store: &dyn Store, region: Option<&str>, command: Option<WorkspacesCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(WorkspacesCommand::List) {
        WorkspacesCommand::List => {
            println!("{:>4}  {:<24}  {:<20}  {:<8}  half-life", "id", "name", "time zone", "region");
            for workspace in store.workspaces().await? {
                let region = workspace.region.as_deref().or(region).unwrap_or("-");
                println!(
                    "{:>4}  {:<24}  {:<20}  {:<8}  {} days",
                    workspace.id, workspace.name, workspace.time_zone, region, workspace.half_life_days
                );
            }
        }
        WorkspacesCommand::Create { name } => {
            let (write, secret) = create_workspace(store, region, &name).await?;
            println!(
                "created workspace {name:?}; these keys are shown once:\nwrite key:  {write}\nsecret key: {secret}"
            );
        }
        WorkspacesCommand::Set { workspace, name, time_zone, half_life_days } => {
            let id = workspace_id(store, workspace).await?;
            if let Some(zone) = &time_zone {
                if kith_core::time::time_zone(zone).is_none() {
                    bail!("{zone:?} is not an IANA time zone; use a name like Europe/Paris");
                }
            }
            if let Some(days) = half_life_days {
                if !(1.0..=3650.0).contains(&days) {
                    bail!("the half-life is 1 to 3650 days");
                }
            }
            let patch = WorkspacePatch { name, time_zone, half_life_days, ..WorkspacePatch::default() };
            let workspace = store.update_workspace(id, patch).await?;
            println!(
                "workspace {} {:?}: time zone {}, half-life {} days",
                workspace.id, workspace.name, workspace.time_zone, workspace.half_life_days
            );
        }
    }
    Ok(())
}

async fn import(store: &dyn Store, file: &std::path::Path, workspace: Option<WorkspaceId>) -> anyhow::Result<()> {
    let workspace = workspace_id(store, workspace).await?;
    let (reader, total): (Box<dyn std::io::Read>, u64) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let opened = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(opened), size)
    };
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let lines = kith_server::transfer::maybe_gunzip(bar.wrap_read(reader))?;
    let report = kith_server::transfer::import(store, workspace, lines, store.clock().now(), |lines| {
        bar.set_message(format!("{lines} lines"));
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "{} lines: {} events stored, {} already there, {} skipped, {} refused",
        report.lines, report.stored, report.duplicates, report.skipped, report.rejected
    );
    for (line, why) in &report.errors {
        println!("  line {line}: {why}");
    }
    Ok(())
}

async fn reproject(store: &dyn Store, workspace: Option<WorkspaceId>) -> anyhow::Result<()> {
    let workspaces = match workspace {
        Some(id) => vec![workspace_id(store, Some(id)).await?],
        None => store.workspaces().await?.iter().map(|workspace| workspace.id).collect(),
    };
    let mut total = 0;
    for workspace in &workspaces {
        total += kith_server::service::history::request(store, *workspace).await?.contacts_total;
    }
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} contacts {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (started, mut events) = (std::time::Instant::now(), 0);
    let contacts = kith_server::service::history::run(store, None, |step| {
        events += step.events;
        bar.inc(step.contacts);
        bar.set_message(format!("{events} events"));
    })
    .await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rebuilt {contacts} contacts from {events} events in {} workspace(s), in {seconds:.1} s ({:.0} events/s)",
        workspaces.len(),
        events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

async fn export(store: &dyn Store, output: Option<PathBuf>, workspace: Option<WorkspaceId>) -> anyhow::Result<()> {
    use std::io::Write;
    let workspace = workspace_id(store, workspace).await?;
    let workspace = store.workspace(workspace).await?.context("the workspace disappeared")?;
    let mut out: Box<dyn Write> = match &output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let now = store.clock().now();
    let (mut cursor, mut first) = (None, true);
    loop {
        let (bytes, next) = kith_server::transfer::export_page(store, &workspace, now, cursor, first).await?;
        out.write_all(&bytes)?;
        first = false;
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}
