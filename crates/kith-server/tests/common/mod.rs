//! The test harness: a real kith on 127.0.0.1:0 with a fresh database, driven over HTTP.
//!
//! Every test runs on both backends: `backend_tests!` turns each listed test into
//! `sqlite::name` and `postgres::name`. The PostgreSQL twin runs when `KITH_TEST_DATABASE_URL`
//! names a server (each test gets a fresh, randomly named database, dropped afterwards);
//! without it the twin is compiled as ignored (see the crate's build.rs), so the run lists it
//! as `ignored` with the reason and counts it in the summary, never as a pass.
#![allow(dead_code)]

pub mod browser;
pub mod outbound;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use kith_server::{App, AppConfig, AppState, Clock};
use kith_store::postgres::{PostgresOptions, PostgresStore};
use kith_store::sqlite::{Durability, SqliteOptions, SqliteStore};
use kith_store::Store;
use reqwest::StatusCode;
use serde_json::Value;

/// A running kith and the keys of its workspace.
pub struct TestServer {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// A write key.
    pub write_key: String,
    /// A secret key.
    pub secret_key: String,
    /// The workspace.
    pub workspace: i64,
    /// The server's state (store, clock, pipeline).
    pub state: AppState,
    /// An HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    database: Option<TestDatabase>,
}

/// The database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the server of `KITH_TEST_DATABASE_URL`.
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// The server named by `KITH_TEST_DATABASE_URL`, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("KITH_TEST_DATABASE_URL").ok().filter(|url| !url.trim().is_empty())
}

/// Runs a test on `backend`. A PostgreSQL twin run without a server (`--include-ignored`
/// without `KITH_TEST_DATABASE_URL`) fails: it must not pass without having run.
pub async fn run_on<F: std::future::Future<Output = ()>>(backend: Backend, name: &str, test: F) {
    if backend == Backend::Postgres && postgres_url().is_none() {
        panic!("postgres::{name} needs KITH_TEST_DATABASE_URL=postgres://… naming a PostgreSQL server");
    }
    BACKEND.scope(backend, test).await
}

/// Declares each async test function as a test on both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::common::run_on($crate::common::Backend::Sqlite, stringify!($name), super::$name()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(kith_test_postgres), ignore = "PostgreSQL twin: set KITH_TEST_DATABASE_URL to run it")]
                async fn $name() {
                    $crate::common::run_on($crate::common::Backend::Postgres, stringify!($name), super::$name()).await
                }
            )*
        }
    };
}

/// A test's database, removed when dropped.
pub enum TestDatabase {
    /// The directory of the SQLite file.
    Sqlite(tempfile::TempDir),
    /// A PostgreSQL database created for the test.
    Postgres {
        /// The server the test was given.
        server_url: String,
        /// The database's name.
        name: String,
        /// The database's URL.
        url: String,
    },
}

impl TestDatabase {
    /// A fresh, empty database on the current test's backend.
    pub async fn create() -> TestDatabase {
        match BACKEND.try_with(|backend| *backend).unwrap_or(Backend::Sqlite) {
            Backend::Sqlite => TestDatabase::Sqlite(tempfile::tempdir().expect("temp dir")),
            Backend::Postgres => {
                let server_url = postgres_url().expect("KITH_TEST_DATABASE_URL");
                let name = format!("kith_test_{}_{:016x}", std::process::id(), rand_suffix());
                let url = kith_store::postgres::create_database(&server_url, &name)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create database {name} on KITH_TEST_DATABASE_URL: {e}"));
                TestDatabase::Postgres { server_url, name, url }
            }
        }
    }

    /// Opens (and migrates) the store on this database, on `clock`.
    pub async fn open(&self, clock: Clock) -> Arc<dyn Store> {
        match self {
            TestDatabase::Sqlite(dir) => {
                let mut options = SqliteOptions::new(dir.path().join("kith.db"));
                options.durability = Durability::Normal;
                options.clock = clock;
                Arc::new(SqliteStore::open(&options).expect("open store"))
            }
            TestDatabase::Postgres { url, .. } => {
                let mut options = PostgresOptions::new(url.clone());
                options.clock = clock;
                Arc::new(PostgresStore::open(&options).await.expect("open store"))
            }
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { server_url, name, .. } = self {
            let (server_url, name) = (server_url.clone(), name.clone());
            // Dropping runs inside the test's runtime, which cannot block on itself.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(kith_store::postgres::drop_database(&server_url, &name))
            })
            .join();
            if let Ok(Err(error)) = dropped {
                eprintln!("could not drop a test database: {error}");
            }
        }
    }
}

/// How a test server is set up.
#[derive(Clone, Default)]
pub struct Options {
    /// The clock the store is opened with (system by default).
    pub clock: Option<Clock>,
    /// SMTP settings.
    pub smtp: Option<kith_server::jobs::delivery::SmtpConfig>,
    /// The web app's settings.
    pub web: kith_server::web::WebConfig,
    /// `outbound_allow`; `None` allows 127.0.0.0/8, where the tests' receivers listen
    /// (kith refuses loopback otherwise).
    pub outbound_allow: Option<Vec<kith_server::outbound::IpNet>>,
    /// Run the background scheduler, as `kith serve` does, instead of jobs on demand.
    pub scheduled_jobs: bool,
    /// How long the scheduler may go without progress before `/readyz` says so.
    pub jobs_stale_after: Option<std::time::Duration>,
    /// The region the node serves and the regions' addresses (none by default).
    pub regions: kith_server::region::Regions,
}

/// A file of the repository's copy of the shared fixtures.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", full.display()))
}

/// A fixture as JSON.
pub fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap_or_else(|e| panic!("fixture {path} is not JSON: {e}"))
}

/// `tests/fixtures` at the repository root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

impl TestServer {
    /// A server on a fresh SQLite database with the system clock.
    pub async fn start() -> TestServer {
        TestServer::start_with_clock(Clock::system()).await
    }

    /// A server whose clock the test controls.
    pub async fn start_with_clock(clock: Clock) -> TestServer {
        TestServer::start_with(Options { clock: Some(clock), ..Options::default() }).await
    }

    /// A server on a fresh database with these options. Background jobs do not run on their
    /// own: tests run them with `kith_server::jobs::run_pending`.
    pub async fn start_with(options: Options) -> TestServer {
        let database = TestDatabase::create().await;
        let store = database.open(options.clock.clone().unwrap_or_default()).await;
        TestServer::start_on(database, store, options).await
    }

    /// A server on `store`, which the test opened on `database` its own way (e.g. through a
    /// proxy it controls), with a workspace and keys as [`TestServer::start_with`] gives.
    pub async fn start_on(database: TestDatabase, store: Arc<dyn Store>, options: Options) -> TestServer {
        // As `kith serve` makes its first workspace: of the node's region, with keys that say it.
        let (workspace, write_key, secret_key) =
            kith_server::service::settings::create_workspace(store.as_ref(), options.regions.own.as_deref(), "Test")
                .await
                .expect("workspace");
        let mut server = TestServer::serve(store, options).await;
        server.write_key = write_key;
        server.secret_key = secret_key;
        server.workspace = workspace.id;
        server.database = Some(database);
        server
    }

    /// Stops this server and starts another on the same database, as a restart would.
    pub async fn restart(mut self, options: Options) -> TestServer {
        let database = self.database.take().expect("a database");
        let (write_key, secret_key, workspace) = (self.write_key.clone(), self.secret_key.clone(), self.workspace);
        self.stop().await;
        let store = database.open(options.clock.clone().unwrap_or_default()).await;
        let mut server = TestServer::serve(store, options).await;
        server.write_key = write_key;
        server.secret_key = secret_key;
        server.workspace = workspace;
        server.database = Some(database);
        server
    }

    async fn serve(store: Arc<dyn Store>, options: Options) -> TestServer {
        let outbound_allow = options.outbound_allow.unwrap_or_else(|| vec!["127.0.0.0/8".parse().unwrap()]);
        let config = AppConfig {
            smtp: options.smtp,
            manual_jobs: !options.scheduled_jobs,
            outbound_allow,
            jobs_stale_after: options.jobs_stale_after,
            web: options.web,
            regions: options.regions,
            ..AppConfig::default()
        };
        let app = App::new(store, config).expect("app");
        let state = app.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = signal.await;
            })
            .await
            .expect("server");
        });
        TestServer {
            url,
            write_key: String::new(),
            secret_key: String::new(),
            workspace: 0,
            state,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            handle: Some(handle),
            database: None,
        }
    }

    /// Another node on this server's database, whose jobs a test runs on demand: on PostgreSQL
    /// with a store of its own, on SQLite with the same store (one writer per file).
    pub async fn second_node(&self) -> AppState {
        let store = self.another_store().await;
        let config = AppConfig {
            manual_jobs: true,
            outbound_allow: vec!["127.0.0.0/8".parse().unwrap()],
            ..AppConfig::default()
        };
        App::new(store, config).expect("app").state
    }

    /// Another node serving HTTP on this server's database, with the same workspace and keys:
    /// on PostgreSQL with a store of its own, on SQLite with the same store. Stop it before
    /// this server.
    pub async fn another_node(&self) -> TestServer {
        let mut node = TestServer::serve(self.another_store().await, Options::default()).await;
        node.write_key = self.write_key.clone();
        node.secret_key = self.secret_key.clone();
        node.workspace = self.workspace;
        node
    }

    /// A store of another node on this server's database (on SQLite, this one: one writer
    /// per file).
    async fn another_store(&self) -> Arc<dyn Store> {
        match self.database.as_ref() {
            Some(database @ TestDatabase::Postgres { .. }) => database.open(self.state.clock.clone()).await,
            _ => self.state.store.clone(),
        }
    }

    /// Runs every background job once, as of the server's clock.
    pub async fn run_jobs(&self) -> kith_server::jobs::Report {
        kith_server::jobs::run_pending(&self.state).await.expect("jobs")
    }

    /// Stops the server gracefully and waits until everything acknowledged is committed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }

    /// `Authorization: Basic base64(write_key:)`.
    pub fn basic(&self) -> String {
        basic(&self.write_key)
    }

    /// POSTs raw bytes to an ingest route with the write key in Basic auth.
    pub async fn send(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .header("authorization", self.basic())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    /// POSTs JSON to an ingest route with the write key.
    pub async fn send_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(path, body.to_string()).await
    }

    /// POSTs JSON and asserts a 200.
    pub async fn ingest(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.send_json(path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer
    }

    /// GETs a read-API path with the secret key.
    pub async fn api(&self, path: &str) -> (StatusCode, Value) {
        let response =
            self.client.get(format!("{}{path}", self.url)).bearer_auth(&self.secret_key).send().await.expect("request");
        read(response).await
    }

    /// GETs a read-API path and asserts a 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.api(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Sends a JSON body to the read API with the secret key.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.secret_key)
            .json(body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    /// The contact with this email, or panics.
    pub async fn contact(&self, email: &str) -> Value {
        self.get(&format!("/api/contacts/{email}")).await
    }

    /// A contact's timeline items.
    pub async fn timeline(&self, email: &str) -> Vec<Value> {
        let body = self.get(&format!("/api/contacts/{email}/timeline")).await;
        body["items"].as_array().unwrap().clone()
    }

    /// Every contact's email, most recently seen first.
    pub async fn emails(&self) -> Vec<String> {
        let body = self.get("/api/contacts?limit=1000").await;
        body["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap().to_owned()).collect()
    }

    /// Runs a `SELECT count(*) …` straight on the test's database, bypassing the API: how a
    /// test proves rows are really gone.
    pub async fn count_rows(&self, sql: &str) -> i64 {
        // Derived rows are written by the event log's projection: count once it caught up.
        self.state.store.settle().await.expect("the projection catches up");
        match self.database.as_ref().expect("a database") {
            TestDatabase::Sqlite(dir) => {
                let connection = rusqlite::Connection::open(dir.path().join("kith.db")).expect("open the SQLite file");
                connection.query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            TestDatabase::Postgres { url, .. } => {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the test database");
                let connection = tokio::spawn(connection);
                let count = client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0);
                drop(client);
                let _ = connection.await;
                count
            }
        }
    }

    /// A file beside the SQLite database (`kith.db`, `kith.db.log`); `None` on PostgreSQL.
    pub fn sqlite_file(&self, name: &str) -> Option<PathBuf> {
        match self.database.as_ref().expect("a database") {
            TestDatabase::Sqlite(dir) => Some(dir.path().join(name)),
            TestDatabase::Postgres { .. } => None,
        }
    }

    /// Sets the workspace's time zone through the API.
    pub async fn set_time_zone(&self, zone: &str) {
        let (status, body) =
            self.call(reqwest::Method::PATCH, "/api/workspace", &serde_json::json!({"time_zone": zone})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// `Basic base64(key:)`.
pub fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Gzips bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}
