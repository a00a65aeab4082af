//! PostgreSQL connections: a database that freezes or goes away is answered 503 with
//! Retry-After within the database timeout, and kith recovers by itself when it is back; TLS is
//! used and checked as `sslmode` asks. The database is reached through a proxy the test
//! controls, never by stopping the shared server.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, Options, TestDatabase, TestServer};
use kith_store::postgres::{PostgresOptions, PostgresStore};
use kith_store::Store;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The database timeout the proxied servers run with.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What "within the timeout" is held to: an ingest may wait for the batch before its own to
/// fail, then for its own, each bounded by `TIMEOUT`.
const BOUND: Duration = Duration::from_secs(10);

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards both ways.
    Pass,
    /// Accepts connections and keeps them open but forwards nothing, either way: a frozen
    /// server or a network that drops packets.
    Blackhole,
    /// Closes every connection and refuses new ones: a server that is down.
    Cut,
}

/// A TCP proxy to the test's PostgreSQL server.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Client connections open through the proxy.
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Mode::Pass);
        let open = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept(listener, upstream, watching, open.clone()));
        Proxy { addr, mode, open, task }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every forwarding task.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mut mode: watch::Receiver<Mode>, open: Arc<AtomicUsize>) {
    let addr = listener.local_addr().unwrap();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        // Refusing means no listening socket at all (connection refused, as from a stopped
        // server); it is opened again on the same port when traffic may pass.
        let current = *mode.borrow_and_update();
        match (current, listener.is_some()) {
            (Mode::Cut, true) => listener = None,
            (Mode::Pass | Mode::Blackhole, false) => {
                listener = Some(TcpListener::bind(addr).await.expect("the proxy's port is free again"))
            }
            _ => {}
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = async { listener.as_ref().expect("listening").accept().await }, if listener.is_some() => {
                if let Ok((client, _)) = accepted {
                    connections.spawn(forward(client, upstream, mode.clone(), Counted::new(&open)));
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

/// One open connection, counted until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::SeqCst);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>, open: Counted) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // When either side closes, or the proxy cuts, both sockets close...
    tokio::select! {
        _ = pump(&mut client_read, &mut server_write, mode.clone()) => {}
        _ = pump(&mut server_read, &mut client_write, mode.clone()) => {}
    }
    drop((client_read, client_write, open));
    // ...except that a network dropping packets drops the client's close too: the server
    // hears nothing and keeps its side open until the proxy passes or cuts again.
    while *mode.borrow_and_update() == Mode::Blackhole {
        if mode.changed().await.is_err() {
            break;
        }
    }
}

/// Copies bytes one way while the proxy passes. While it blackholes, what arrives is held,
/// not delivered (reading on only to notice a side that closes); it is delivered if the proxy
/// passes again. Returns once the proxy cuts or either side closes.
async fn pump(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0; 16 * 1024];
    let mut held = Vec::new();
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Cut => return,
            Mode::Pass if !held.is_empty() => {
                if to.write_all(&held).await.is_err() {
                    return;
                }
                held.clear();
            }
            Mode::Pass | Mode::Blackhole => {}
        }
        tokio::select! {
            read = from.read(&mut buffer) => {
                let Ok(read @ 1..) = read else { return };
                held.extend_from_slice(&buffer[..read]);
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The address of the test's PostgreSQL server.
async fn upstream(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.parse().expect("KITH_TEST_DATABASE_URL is a database URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => panic!("these tests reach PostgreSQL over TCP; KITH_TEST_DATABASE_URL names no TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut addresses = tokio::net::lookup_host((host.as_str(), port)).await.unwrap();
    addresses.next().expect("the host resolves")
}

/// `url` pointed at `host` (a `host:port`), with `parameters` added to its query.
fn via(url: &str, host: &str, parameters: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    let query: Vec<&str> = [query, parameters].into_iter().filter(|part| !part.is_empty()).collect();
    format!("{scheme}://{user}{host}/{path}?{}", query.join("&"))
}

/// A kith server on a fresh database reached through a proxy, with a short database timeout;
/// and the database's URL without the proxy.
async fn behind_proxy() -> (TestServer, Proxy, String) {
    let database = TestDatabase::create().await;
    let TestDatabase::Postgres { url, .. } = &database else { panic!("a PostgreSQL database") };
    let direct = url.clone();
    let proxy = Proxy::start(upstream(url).await).await;
    let proxied = via(url, &proxy.addr.to_string(), "connect_timeout=1");
    let options = PostgresOptions { timeout: TIMEOUT, max_connections: 4, ..PostgresOptions::new(proxied) };
    let store = PostgresStore::open(&options).await.expect("open the store through the proxy");
    (TestServer::start_on(database, Arc::new(store), Options::default()).await, proxy, direct)
}

fn identify(email: &str) -> Value {
    json!({"type": "identify", "userId": email, "traits": {"email": email}, "timestamp": "2024-06-01T10:00:00Z"})
}

/// A request's status, Retry-After, body and how long it took.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    // A request that hangs fails the test here rather than holding it for ever.
    let response = request.timeout(BOUND * 2).send().await.expect("kith answers");
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).map(|value| value.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, retry_after, body, took: started.elapsed() }
}

async fn ingest(server: &TestServer, email: &str) -> Answer {
    answer(
        server
            .client
            .post(format!("{}/v1/identify", server.url))
            .header("authorization", server.basic())
            .body(identify(email).to_string()),
    )
    .await
}

async fn read(server: &TestServer, email: &str) -> Answer {
    answer(server.client.get(format!("{}/api/contacts/{email}", server.url)).bearer_auth(&server.secret_key)).await
}

async fn readyz(server: &TestServer) -> Answer {
    answer(server.client.get(format!("{}/readyz", server.url))).await
}

/// Asserts the answer a client gets while the database cannot be had: 503 with Retry-After and
/// the error body, within the bound.
fn assert_unavailable(what: &str, answer: &Answer) {
    eprintln!("{what}: {} in {:?}", answer.status, answer.took);
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", answer.body);
    assert!(answer.took < BOUND, "{what} took {:?}", answer.took);
    assert!(answer.retry_after.is_some(), "{what}: a Retry-After");
    assert!(answer.body["code"].is_string() && answer.body["message"].is_string(), "{what}: {}", answer.body);
}

/// The database was lost in `mode`: requests and the readiness probe answer in time, and
/// once the proxy passes again the same kith serves and stores as before.
async fn outage_and_recovery(mode: Mode) {
    let (server, proxy, _) = behind_proxy().await;
    assert_eq!(ingest(&server, "before@example.com").await.status, StatusCode::OK);
    assert_eq!(read(&server, "before@example.com").await.status, StatusCode::OK);
    assert_eq!(readyz(&server).await.status, StatusCode::OK);

    let open = proxy.open();
    proxy.set(mode);
    let probe = readyz(&server).await;
    eprintln!("{mode:?} /readyz: {} in {:?}", probe.status, probe.took);
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE, "{}", probe.body);
    assert_eq!(probe.body["status"], "database unavailable");
    assert!(probe.took < BOUND, "/readyz took {:?}", probe.took);
    if mode == Mode::Blackhole {
        // The probe's connection stopped answering mid-conversation: kith closed it rather
        // than leave it in the pool for the next request to wait on.
        let deadline = Instant::now() + Duration::from_secs(2);
        while proxy.open() >= open && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(proxy.open(), open - 1, "the frozen connection was closed");
    }
    assert_unavailable(&format!("{mode:?} ingest"), &ingest(&server, "during@example.com").await);
    assert_unavailable(&format!("{mode:?} read"), &read(&server, "before@example.com").await);

    proxy.set(Mode::Pass);
    let after = ingest(&server, "after@example.com").await;
    eprintln!("{mode:?} then pass, ingest: {} in {:?}", after.status, after.took);
    assert_eq!(after.status, StatusCode::OK, "the first request after the outage is served: {}", after.body);
    assert_eq!(read(&server, "after@example.com").await.status, StatusCode::OK);
    assert_eq!(read(&server, "before@example.com").await.status, StatusCode::OK, "nothing stored was lost");
    assert_eq!(read(&server, "during@example.com").await.status, StatusCode::NOT_FOUND, "a 503 stored nothing");
    assert_eq!(readyz(&server).await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_frozen_database_is_answered_503_in_time_and_kith_recovers() {
    common::run_on(Backend::Postgres, "frozen", outage_and_recovery(Mode::Blackhole)).await
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_database_that_went_away_is_answered_503_and_kith_reconnects() {
    common::run_on(Backend::Postgres, "cut", outage_and_recovery(Mode::Cut)).await
}

/// Whether `store` applies the event log, waiting up to `within` for it to say `expected`.
async fn leads_within(store: &dyn Store, expected: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let leads = store.log_position().is_some_and(|position| position.leases == 1);
        if leads == expected || Instant::now() >= deadline {
            return leads;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node cut off from the database cannot release its projection lease (its session stays
/// open on the server, which hears nothing more): the server ends the silent session after
/// three database timeouts, and another node takes the lease over. Until then the lease is
/// the cut-off node's alone.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_node_cut_off_from_the_database_loses_its_lease_to_another() {
    common::run_on(Backend::Postgres, "lease", async {
        let (server, proxy, direct) = behind_proxy().await;
        assert_eq!(ingest(&server, "before@example.com").await.status, StatusCode::OK);
        assert_eq!(read(&server, "before@example.com").await.status, StatusCode::OK);
        assert!(leads_within(server.state.store.as_ref(), true, TIMEOUT).await, "the only node applies the log");

        proxy.set(Mode::Blackhole);
        let other = PostgresStore::open(&PostgresOptions::new(direct)).await.expect("a second node");
        let cut_at = Instant::now();
        assert!(!leads_within(&other, true, TIMEOUT).await, "the lease is not taken while its session lives");
        assert!(leads_within(&other, true, TIMEOUT * 3 + BOUND).await, "the lease is taken over");
        eprintln!("lease taken over {:?} after the cut", cut_at.elapsed());
        assert!(!leads_within(server.state.store.as_ref(), false, TIMEOUT).await, "the cut-off node knows");
        other.settle().await.expect("the new holder applies the log");

        proxy.set(Mode::Pass);
        assert_eq!(ingest(&server, "after@example.com").await.status, StatusCode::OK);
        assert_eq!(read(&server, "after@example.com").await.status, StatusCode::OK, "applied by the other node");
        assert!(!leads_within(server.state.store.as_ref(), true, Duration::from_secs(1)).await, "one holder only");
        server.stop().await;
    })
    .await
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn connecting_is_bounded_by_connect_timeout() {
    common::run_on(Backend::Postgres, "connect_timeout", async {
        let database = TestDatabase::create().await;
        let TestDatabase::Postgres { url, .. } = &database else { panic!("a PostgreSQL database") };
        let proxy = Proxy::start(upstream(url).await).await;
        proxy.set(Mode::Blackhole);
        // The database timeout is long: what ends the wait is connect_timeout, since the TCP
        // connection is accepted and only the startup conversation hangs.
        let options = PostgresOptions {
            timeout: Duration::from_secs(60),
            ..PostgresOptions::new(via(url, &proxy.addr.to_string(), "connect_timeout=1"))
        };
        let started = Instant::now();
        let error = PostgresStore::open(&options).await.err().expect("no database to open").to_string();
        eprintln!("connect_timeout=1 under a blackhole: {error} after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(error.contains("connect_timeout"), "{error}");
    })
    .await
}

/// A PostgreSQL server with a TLS certificate the test made: it answers the client's
/// SSLRequest, completes the handshake and carries the decrypted conversation to the real
/// server. Without a certificate it answers as a server without TLS does.
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `SSLRequest`: length 8, then the code 1234.5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl TlsFront {
    async fn start(upstream: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> TlsFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(TlsFront::serve(client, upstream, tls.clone(), counted.clone()));
            }
        });
        TlsFront { addr, handshakes, task }
    }

    async fn serve(
        mut client: TcpStream,
        upstream: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshakes: Arc<AtomicUsize>,
    ) {
        let Ok(mut server) = TcpStream::connect(upstream).await else { return };
        let mut first = [0; 8];
        if client.read_exact(&mut first).await.is_err() {
            return;
        }
        if first != SSL_REQUEST {
            // sslmode=disable: the startup message itself, for the real server.
            if server.write_all(&first).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
            return;
        }
        match tls {
            None => {
                if client.write_all(b"N").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            }
            Some(config) => {
                if client.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut client) = tokio_rustls::TlsAcceptor::from(config).accept(client).await else { return };
                handshakes.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
    }
}

/// A certificate authority made for the test.
struct Authority {
    name: &'static str,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Authority {
    fn new(name: &'static str) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Authority { name, cert: params.self_signed(&key).unwrap(), key }
    }

    /// A server's TLS configuration with a certificate for `localhost` only.
    fn server(&self) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Arc::new(config)
    }

    /// The authority's certificate as a PEM file in `dir`, for `sslrootcert`.
    fn root_file(&self, dir: &std::path::Path) -> String {
        let path = dir.join(format!("{}.pem", self.name.replace(' ', "-")));
        std::fs::write(&path, self.cert.pem()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// Opens a store on `url` and reads from it: what connecting with these settings gives.
async fn connect(url: String) -> Result<(), String> {
    let store = PostgresStore::open(&PostgresOptions::new(url)).await.map_err(|e| e.to_string())?;
    store.workspaces().await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn tls_is_used_and_checked_as_sslmode_asks() {
    common::run_on(Backend::Postgres, "tls", async {
        let database = TestDatabase::create().await;
        let TestDatabase::Postgres { url, .. } = &database else { panic!("a PostgreSQL database") };
        let authority = Authority::new("kith test CA");
        let front = TlsFront::start(upstream(url).await, Some(authority.server())).await;
        let dir = tempfile::tempdir().unwrap();
        let root = authority.root_file(dir.path());
        let other_root = Authority::new("another CA").root_file(dir.path());
        let by_ip = front.addr.to_string();
        let by_name = format!("localhost:{}", front.addr.port());

        let cases = [
            // (host, parameters, None if it connects, else what the refusal says)
            (&by_ip, "sslmode=require".to_owned(), None),
            (&by_ip, format!("sslmode=verify-ca&sslrootcert={root}"), None),
            (&by_name, format!("sslmode=verify-full&sslrootcert={root}"), None),
            (&by_ip, format!("sslmode=verify-full&sslrootcert={root}"), Some("not valid for name")),
            // The platform's roots do not include the test's authority (or there are none).
            (&by_name, "sslmode=verify-full".to_owned(), Some("UnknownIssuer|trusted roots")),
            (&by_ip, format!("sslmode=verify-ca&sslrootcert={other_root}"), Some("UnknownIssuer")),
            // As libpq: `require` with a root certificate checks the chain as verify-ca does.
            (&by_ip, format!("sslmode=require&sslrootcert={other_root}"), Some("UnknownIssuer")),
        ];
        for (host, parameters, refusal) in cases {
            let before = front.handshakes.load(Ordering::SeqCst);
            let outcome = connect(via(url, host, &parameters)).await;
            match refusal {
                None => {
                    assert_eq!(outcome, Ok(()), "{host} {parameters}");
                    assert!(front.handshakes.load(Ordering::SeqCst) > before, "{parameters}: over TLS");
                }
                Some(reason) => {
                    let error = outcome.expect_err(&format!("{host} {parameters} is refused"));
                    let mode = parameters.split('&').next().unwrap();
                    let explained = reason.split('|').any(|reason| error.contains(reason));
                    assert!(error.contains(mode) && explained, "{host} {parameters}: {error}");
                }
            }
        }
    })
    .await
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn sslmode_require_refuses_a_server_without_tls() {
    common::run_on(Backend::Postgres, "no_tls", async {
        let database = TestDatabase::create().await;
        let TestDatabase::Postgres { url, .. } = &database else { panic!("a PostgreSQL database") };
        let front = TlsFront::start(upstream(url).await, None).await;
        let host = front.addr.to_string();
        let error = connect(via(url, &host, "sslmode=require")).await.expect_err("no TLS, no connection");
        assert!(error.contains("sslmode=require") && error.contains("TLS"), "{error}");
        assert_eq!(connect(via(url, &host, "sslmode=prefer")).await, Ok(()), "prefer falls back to plain");
        assert_eq!(connect(via(url, &host, "sslmode=disable")).await, Ok(()));
    })
    .await
}

/// Counts the connections to `database` on the real server that are encrypted and that are not.
async fn encrypted_connections(server_url: &str, database: &str) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    drop(client);
    let _ = connection.await;
    (row.get(0), row.get(1))
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn sslmode_on_the_real_server() {
    common::run_on(Backend::Postgres, "real_server_tls", async {
        let database = TestDatabase::create().await;
        let TestDatabase::Postgres { url, name, server_url } = &database else { panic!("a PostgreSQL database") };
        let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        drop(client);
        let _ = connection.await;

        let with = |parameters: &str| format!("{url}{}{parameters}", if url.contains('?') { '&' } else { '?' });
        let plain = PostgresStore::open(&PostgresOptions::new(with("sslmode=disable"))).await.unwrap();
        plain.workspaces().await.unwrap();
        // The store's connections: one for requests, one of the projection's own.
        let (encrypted, plain_connections) = encrypted_connections(server_url, name).await;
        assert_eq!(encrypted, 0, "sslmode=disable: no connection encrypted");
        assert!(plain_connections >= 1, "sslmode=disable: kith's connections are plain");
        drop(plain);
        let required = PostgresStore::open(&PostgresOptions::new(with("sslmode=require"))).await;
        if ssl == "on" {
            let required = required.expect("the server has TLS on");
            required.workspaces().await.unwrap();
            let (encrypted, _) = encrypted_connections(server_url, name).await;
            assert!(encrypted >= 1, "sslmode=require: kith's connection is encrypted");
        } else {
            let error = required.err().expect("the server has TLS off").to_string();
            assert!(error.contains("sslmode=require"), "{error}");
        }
    })
    .await
}

/// No lock is shared by every append: a lane whose lock is held (here by the test, as by an
/// append that stalled before its commit) holds up neither the appends, which take another
/// lane, nor the reads after them.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_held_lane_holds_up_neither_appends_nor_reads() {
    common::run_on(Backend::Postgres, "lanes", async {
        let database = TestDatabase::create().await;
        let TestDatabase::Postgres { url, .. } = &database else { panic!("a PostgreSQL database") };
        let (holder, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let store = database.open(kith_server::Clock::system()).await;
        let server = Arc::new(TestServer::start_on(database, store, Options::default()).await);

        let stalled_lane: i64 = 3;
        holder.batch_execute("BEGIN").await.unwrap();
        holder
            .execute("SELECT pg_advisory_xact_lock($1)", &[&(kith_store::postgres::LANE_LOCKS + stalled_lane)])
            .await
            .unwrap();
        let mut sent = JoinSet::new();
        for i in 0..24 {
            let server = server.clone();
            sent.spawn(async move { (i, ingest(&server, &format!("lane{i}@example.com")).await) });
        }
        // Appends take another lane: every one is answered while the lane is held.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(done)) = tokio::time::timeout_at(until, sent.join_next()).await {
            let (_, answer) = done.unwrap();
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        }
        assert!(sent.is_empty(), "{} of 24 appends waited for the held lane", sent.len());
        for i in 0..24 {
            let read = read(&server, &format!("lane{i}@example.com")).await;
            assert_eq!(read.status, StatusCode::OK, "{}", read.body);
            assert!(read.took < Duration::from_secs(2), "a read took {:?}", read.took);
        }
        let held: i64 = holder
            .query_one("SELECT entries FROM log_lanes WHERE lane = $1", &[&(stalled_lane as i32)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(held, 0, "nothing was appended to the held lane");
        holder.batch_execute("COMMIT").await.unwrap();
        drop(holder);
        let _ = connection.await;
        Arc::into_inner(server).expect("no request left").stop().await;
    })
    .await
}
