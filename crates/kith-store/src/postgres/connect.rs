//! Connections to PostgreSQL: the database URL read the way libpq reads `sslmode`,
//! `sslrootcert` and `connect_timeout`, TLS through rustls, pooled by deadpool, and every wait
//! on the database bounded so that a frozen or unreachable server costs a request a known time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType};
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::time::{error::Elapsed, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// How long connecting may take when the URL sets no `connect_timeout`. libpq would wait for
/// ever; a node that waits for ever on its database cannot answer 503 to anyone.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// After how many database timeouts of silence the server ends a session kith left idle in
/// a transaction, or a projection connection at all (releasing what it held); also how many
/// a projection step may take.
pub const SILENCE_TIMEOUTS: u32 = 3;

/// How the connection is protected: libpq's `sslmode`, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked. libpq's
    /// default, and so kith's.
    Prefer,
    /// TLS or no connection. The certificate is checked against `sslrootcert` when one is
    /// given (as `verify-ca`), otherwise not at all.
    Require,
    /// TLS, with a certificate that leads to a trusted root; its host name is not checked.
    VerifyCa,
    /// TLS, with a certificate that leads to a trusted root and names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(invalid_url(format!(
                "sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
            ))),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Where trusted roots come from when the certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The platform's store (`sslrootcert=system`, or no `sslrootcert` at all).
    System,
    /// A PEM file of root certificates.
    File(String),
}

/// A database URL, read.
struct Target {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    roots: Option<Roots>,
    connect_timeout: Duration,
}

fn invalid_url(why: impl fmt::Display) -> StoreError {
    StoreError::unavailable(format!("invalid database URL: {why}"))
}

impl Target {
    /// Reads `url`. tokio-postgres knows neither the `verify-*` modes nor `sslrootcert`, so
    /// those are taken out of the query string here and everything else is left to it.
    fn parse(url: &str) -> Result<Target> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl_mode = SslMode::Prefer;
        let mut roots = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || percent_decode_str(value).decode_utf8().map_err(invalid_url);
            match key {
                "sslmode" => ssl_mode = SslMode::parse(&decoded()?)?,
                "sslrootcert" => {
                    roots = Some(match &*decoded()? {
                        "system" => Roots::System,
                        path => Roots::File(path.to_owned()),
                    })
                }
                // Kept as written: tokio-postgres decodes its own parameters.
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| invalid_url(crate::error_chain(&e)))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        // tokio-postgres applies `connect_timeout` to the TCP connect only; the pool applies it
        // to the whole of connecting (TLS and authentication too), see `Connections::open`.
        let connect_timeout = config.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        config.connect_timeout(connect_timeout);
        Ok(Target { config, ssl_mode, roots, connect_timeout })
    }

    /// The TLS client for this URL's mode. Built once, so a missing `sslrootcert` file is an
    /// error at start rather than at the first connection.
    fn tls(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.ssl_mode, &self.roots) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(EncryptOnly(provider.clone()))
            }
            (SslMode::Require | SslMode::VerifyCa, roots) => Arc::new(AnyName(self.webpki(roots, &provider)?)),
            (SslMode::VerifyFull, roots) => self.webpki(roots, &provider)?,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::caused("cannot set up TLS", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn webpki(&self, roots: &Option<Roots>, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
        let mut store = RootCertStore::empty();
        match roots.as_ref().unwrap_or(&Roots::System) {
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err(invalid_url(format!(
                        "sslmode={} needs trusted roots and this machine's store has none; give sslrootcert=PATH",
                        self.ssl_mode
                    )));
                }
            }
            Roots::File(path) => {
                let unreadable = |e: &dyn fmt::Display| invalid_url(format!("cannot read sslrootcert {path}: {e}"));
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                    store.add(cert.map_err(|e| unreadable(&e))?).map_err(|e| unreadable(&e))?;
                }
                if store.is_empty() {
                    return Err(unreadable(&"no PEM certificate in it"));
                }
            }
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| StoreError::caused("cannot set up TLS", e))
    }
}

/// `prefer`, and `require` without a root certificate: encrypted, whoever answers, as libpq
/// does. The handshake's signatures are still checked, so the keys really are shared with the
/// holder of the certificate presented.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root, whatever host the certificate names.
/// The WebPKI verifier checks the name only once the chain is good, so a name error means
/// everything else passed.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The pool of one store and the time limits around it.
#[derive(Clone)]
pub struct Connections {
    pool: Pool,
    ssl_mode: SslMode,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Connections {
    /// At most `max` connections to `url`. `timeout` bounds each statement on the server
    /// (`statement_timeout`) and each operation here, see [`Connections::finish`].
    pub fn open(url: &str, max: usize, timeout: Duration) -> Result<Connections> {
        let mut target = Target::parse(url)?;
        let millis = timeout.as_millis().max(1);
        // A node cut off from the database mid-transaction cannot end it, and the server
        // would hold its locks (an event-log lane's among them) until TCP gave up:
        // no transaction of kith's idles that long while its node can still talk.
        let idle = millis * u128::from(SILENCE_TIMEOUTS);
        // No JIT: kith's statements are short, and a multi-row one the planner over-estimates
        // (a table not analysed yet) would spend a hundred milliseconds compiling.
        let session = format!("-c statement_timeout={millis} -c idle_in_transaction_session_timeout={idle} -c jit=off");
        let options = match target.config.get_options() {
            Some(options) => format!("{options} {session}"),
            None => session,
        };
        target.config.options(&options);
        let tls = target.tls()?;
        // Fast recycling only checks that the connection is open, as the hand-written pool did:
        // a round trip per checkout would tax every request, and a connection that stopped
        // answering is caught by the operation's deadline and discarded.
        let manager =
            Manager::from_config(target.config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(target.connect_timeout))
            .build()
            .map_err(|e| StoreError::caused("cannot create the connection pool", e))?;
        Ok(Connections { pool, ssl_mode: target.ssl_mode, connect_timeout: target.connect_timeout, timeout })
    }

    /// How long one operation may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadline of an operation starting now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// The deadline of a readiness probe starting now: `SELECT 1` needs no long statement
    /// timeout, and a load balancer waits for its answer only a few seconds.
    pub fn ping_deadline(&self) -> Instant {
        Instant::now() + self.timeout.min(self.connect_timeout)
    }

    /// A connection, by `deadline`: waiting for a free one and connecting count.
    pub async fn get(&self, deadline: Instant) -> Result<Object> {
        match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(PoolError::Timeout(TimeoutType::Create))) => Err(StoreError::unavailable(format!(
                "PostgreSQL did not accept a connection within {} s (connect_timeout in the database URL)",
                self.connect_timeout.as_secs_f32()
            ))),
            Ok(Err(PoolError::Backend(error))) => {
                Err(StoreError::caused(format!("cannot connect to PostgreSQL (sslmode={})", self.ssl_mode), error))
            }
            Ok(Err(error)) => Err(StoreError::caused("no PostgreSQL connection", error)),
            Err(_) => Err(StoreError::unavailable(format!(
                "no PostgreSQL connection became free or could be opened within {} s",
                self.timeout.as_secs_f32()
            ))),
        }
    }

    /// The result of an operation run on `connection` under a deadline. One that ran out of
    /// time left its connection mid-conversation with a server that stopped answering: it is
    /// closed rather than handed to the next request, which would wait on it in turn.
    pub fn finish<T>(&self, connection: Object, answer: Result<Result<T>, Elapsed>) -> Result<T> {
        match answer {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(connection));
                Err(StoreError::unavailable(format!(
                    "PostgreSQL did not answer within {} s (the database timeout)",
                    self.timeout.as_secs_f32()
                )))
            }
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut renamed = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        renamed.push('?');
        renamed.push_str(query);
    }
    renamed
}

/// Runs one statement on a connection of its own to `url`.
async fn execute_once(url: &str, sql: &str) -> Result<()> {
    let connections = Connections::open(url, 1, super::DEFAULT_TIMEOUT)?;
    let deadline = connections.deadline();
    let connection = connections.get(deadline).await?;
    let answer = tokio::time::timeout_at(deadline, async { Ok(connection.batch_execute(sql).await?) }).await;
    connections.finish(connection, answer)
}

/// Creates database `name` on the server of `url` (tests give each run its own); returns
/// the URL of the new database.
pub async fn create_database(url: &str, name: &str) -> Result<String> {
    execute_once(url, &format!("CREATE DATABASE {}", quote_identifier(name))).await?;
    Ok(with_database_name(url, name))
}

/// Drops database `name` on the server of `url`, closing its connections.
pub async fn drop_database(url: &str, name: &str) -> Result<()> {
    execute_once(url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(name))).await
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database_name("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database_name("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database_name("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn reads_the_libpq_parameters_and_leaves_the_rest_to_tokio_postgres() {
        let target = Target::parse(
            "postgres://u@h:5433/db?sslmode=verify-full&application_name=a%20b&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(target.ssl_mode, SslMode::VerifyFull);
        assert_eq!(target.roots, Some(Roots::File("/etc/ca.pem".into())));
        assert_eq!(target.connect_timeout, Duration::from_secs(3));
        assert_eq!(target.config.get_application_name(), Some("a b"), "other parameters are decoded once");
        assert_eq!(target.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);

        let target = Target::parse("postgres://u@h/db").unwrap();
        assert_eq!(target.ssl_mode, SslMode::Prefer, "libpq's default");
        assert_eq!(target.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(Target::parse("postgres://u@h/db?sslrootcert=system").unwrap().roots, Some(Roots::System));
        assert_eq!(Target::parse("postgres://u@h/db?sslmode=disable").unwrap().ssl_mode, SslMode::Disable);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let error = Target::parse("postgres://u@h/db?sslmode=allow").err().unwrap().to_string();
        assert!(error.contains("sslmode=allow is not supported"), "{error}");
        let error = Target::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .and_then(|target| target.tls())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("cannot read sslrootcert /nonexistent.pem"), "{error}");
    }
}
