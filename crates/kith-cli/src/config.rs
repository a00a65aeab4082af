//! Settings: defaults, then a TOML file, then `KITH_*` environment variables, then flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kith_store::sqlite::Durability;
use serde::Deserialize;

/// Everything `kith` can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Folder of the SQLite database (`kith.db`).
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    pub database_url: Option<Secret>,
    /// PostgreSQL connections this node keeps open at most.
    pub max_connections: usize,
    /// Seconds a PostgreSQL statement may run (its `statement_timeout`) and kith waits on the
    /// database for one operation; past it the request is answered 503 with Retry-After.
    pub database_timeout_secs: u64,
    /// `full` (fsync every commit) or `normal` (survives a killed process, not a power cut).
    pub durability: Durability,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Events that may wait for the writer before kith answers 503.
    pub queue_events: usize,
    /// The most events one transaction applies.
    pub max_batch_events: usize,
    /// Events of one workspace that may wait for the writer before kith answers it 429
    /// (default: half of `queue_events`), so one workspace cannot fill the queue for all.
    pub workspace_queue_events: Option<usize>,
    /// Client connections open at once; more wait to be accepted.
    pub http_max_connections: usize,
    /// Seconds a client has to send a request's headers, from when it connects or its
    /// previous answer was sent (so also how long a kept-alive connection may sit idle).
    pub http_header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are in.
    pub http_body_timeout_secs: u64,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// When set, `/metrics` is served on this address only, not on `listen`.
    pub metrics_listen: Option<String>,
    /// The SMTP server nudges and digests are emailed through, e.g. `smtp://user:pw@host:587`.
    pub smtp_url: Option<Secret>,
    /// The From address of those emails.
    pub smtp_from: Option<String>,
    /// The address people open kith at, e.g. `https://kith.example.com`; when it is https,
    /// cookies are marked `Secure`.
    pub public_url: Option<String>,
    /// Internal address ranges (CIDR, comma-separated) webhooks, digests, the outbound Segment
    /// host and the SMTP server may be on; none by default.
    pub outbound_allow: String,
    /// The region this node serves, e.g. `eu`: new workspaces and keys belong to it, and keys
    /// of other regions are answered 421. None: no region checks.
    pub region: Option<String>,
    /// The public URL of each region, e.g. `{ us = "https://us.kith.example.com" }`; a key of
    /// another region is told its region's URL.
    pub region_endpoints: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("kith-data"),
            database_url: None,
            max_connections: 16,
            database_timeout_secs: kith_store::postgres::DEFAULT_TIMEOUT.as_secs(),
            durability: Durability::Full,
            log_format: "text".into(),
            queue_events: 50_000,
            max_batch_events: 10_000,
            workspace_queue_events: None,
            http_max_connections: 512,
            http_header_timeout_secs: 10,
            http_body_timeout_secs: 30,
            metrics_token: None,
            metrics_listen: None,
            smtp_url: None,
            smtp_from: None,
            public_url: None,
            outbound_allow: String::new(),
            region: None,
            region_endpoints: BTreeMap::new(),
        }
    }
}

/// A secret setting: never printed by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Settings {
    /// Loads the file (the one given, else `./kith.toml` if present), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let default_file = Path::new("kith.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("{} is not valid kith configuration", path.display()))?
            }
            None => Settings::default(),
        };
        settings.apply_env(|name| std::env::var(name).ok())?;
        Ok(settings)
    }

    /// Overrides from `KITH_*` variables.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(listen) = var("KITH_LISTEN") {
            self.listen = listen;
        }
        if let Some(dir) = var("KITH_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(url) = var("KITH_DATABASE_URL").filter(|url| !url.is_empty()) {
            self.database_url = Some(Secret(url));
        }
        if let Some(durability) = var("KITH_DURABILITY") {
            self.durability = match durability.as_str() {
                "full" => Durability::Full,
                "normal" => Durability::Normal,
                other => anyhow::bail!("KITH_DURABILITY is {other:?}; use full or normal"),
            };
        }
        if let Some(url) = var("KITH_SMTP_URL").filter(|url| !url.is_empty()) {
            self.smtp_url = Some(Secret(url));
        }
        if let Some(from) = var("KITH_SMTP_FROM") {
            self.smtp_from = Some(from);
        }
        if let Some(url) = var("KITH_PUBLIC_URL").filter(|url| !url.is_empty()) {
            self.public_url = Some(url);
        }
        if let Some(url) = &self.public_url {
            let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                anyhow::bail!(
                    "public_url is {url:?}; give the address people open kith at, e.g. https://kith.example.com"
                );
            }
        }
        if let Some(allow) = var("KITH_OUTBOUND_ALLOW") {
            self.outbound_allow = allow;
        }
        if let Some(region) = var("KITH_REGION") {
            self.region = Some(region.trim().to_owned()).filter(|region| !region.is_empty());
        }
        if let Some(list) = var("KITH_REGION_ENDPOINTS") {
            self.region_endpoints = parse_endpoints(&list)?;
        }
        if let Some(format) = var("KITH_LOG_FORMAT") {
            self.log_format = format;
        }
        if let Some(token) = var("KITH_METRICS_TOKEN").filter(|token| !token.is_empty()) {
            self.metrics_token = Some(Secret(token));
        }
        if let Some(listen) = var("KITH_METRICS_LISTEN").filter(|listen| !listen.is_empty()) {
            self.metrics_listen = Some(listen);
        }
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            var(name).map(|value| value.parse().with_context(|| format!("{name} must be a whole number"))).transpose()
        };
        for (name, field) in [
            ("KITH_QUEUE_EVENTS", &mut self.queue_events),
            ("KITH_MAX_BATCH_EVENTS", &mut self.max_batch_events),
            ("KITH_MAX_CONNECTIONS", &mut self.max_connections),
            ("KITH_HTTP_MAX_CONNECTIONS", &mut self.http_max_connections),
        ] {
            if let Some(value) = number(name)? {
                *field = value as usize;
            }
        }
        if let Some(value) = number("KITH_WORKSPACE_QUEUE_EVENTS")? {
            self.workspace_queue_events = Some(value as usize);
        }
        for (name, field) in [
            ("KITH_HTTP_HEADER_TIMEOUT_SECS", &mut self.http_header_timeout_secs),
            ("KITH_HTTP_BODY_TIMEOUT_SECS", &mut self.http_body_timeout_secs),
            ("KITH_DATABASE_TIMEOUT_SECS", &mut self.database_timeout_secs),
        ] {
            if let Some(value) = number(name)? {
                *field = value;
            }
        }
        Ok(())
    }

    /// The ingest pipeline's limits.
    pub fn pipeline(&self) -> kith_store::pipeline::PipelineConfig {
        kith_store::pipeline::PipelineConfig {
            queue_events: self.queue_events,
            max_batch_events: self.max_batch_events,
            workspace_queue_events: self.workspace_queue_events.unwrap_or(self.queue_events / 2),
        }
    }

    /// The bounds on client connections.
    pub fn connections(&self) -> kith_server::conn::ConnectionLimits {
        kith_server::conn::ConnectionLimits {
            max_connections: self.http_max_connections,
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs.max(1)),
            body_timeout: std::time::Duration::from_secs(self.http_body_timeout_secs.max(1)),
        }
    }

    /// How kith connects to the PostgreSQL database at `url`.
    pub fn postgres(&self, url: &str) -> kith_store::postgres::PostgresOptions {
        kith_store::postgres::PostgresOptions {
            max_connections: self.max_connections,
            timeout: std::time::Duration::from_secs(self.database_timeout_secs.max(1)),
            ..kith_store::postgres::PostgresOptions::new(url)
        }
    }

    /// The SMTP settings, when a server is configured.
    pub fn smtp(&self) -> Option<kith_server::jobs::delivery::SmtpConfig> {
        let url = self.smtp_url.as_ref()?;
        Some(kith_server::jobs::delivery::SmtpConfig {
            url: url.0.clone(),
            from: self.smtp_from.clone().unwrap_or_else(|| "kith <kith@localhost>".into()),
        })
    }

    /// The parsed `outbound_allow`.
    pub fn outbound_allow(&self) -> anyhow::Result<Vec<kith_server::outbound::IpNet>> {
        kith_server::outbound::Policy::parse_allow(&self.outbound_allow)
            .map_err(|error| anyhow::anyhow!("outbound_allow (KITH_OUTBOUND_ALLOW): {error}"))
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("kith.db")
    }

    /// The region this node serves and the regions' addresses, checked.
    pub fn regions(&self) -> anyhow::Result<kith_server::region::Regions> {
        kith_server::region::Regions::new(self.region.clone(), self.region_endpoints.clone())
            .map_err(|error| anyhow::anyhow!("region settings (KITH_REGION, KITH_REGION_ENDPOINTS): {error}"))
    }
}

/// `KITH_REGION_ENDPOINTS`: `us=https://us.example.com,eu=https://eu.example.com`.
fn parse_endpoints(list: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut endpoints = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (region, url) = item.split_once('=').with_context(|| {
            format!("KITH_REGION_ENDPOINTS has {item:?}; write region=url pairs, e.g. eu=https://eu.kith.example.com")
        })?;
        endpoints.insert(region.trim().to_owned(), url.trim().to_owned());
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut settings: Settings = toml::from_str("listen = \"0.0.0.0:9000\"\ndata_dir = \"/var/lib/kith\"").unwrap();
        assert_eq!(settings.listen, "0.0.0.0:9000");
        settings.apply_env(|name| (name == "KITH_LISTEN").then(|| "127.0.0.1:7000".to_owned())).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:7000");
        assert_eq!(settings.database_path(), PathBuf::from("/var/lib/kith/kith.db"));
        assert!(toml::from_str::<Settings>("lisen = 1").is_err(), "typos are refused");
    }

    #[test]
    fn the_public_url_is_an_http_address() {
        let mut settings = Settings::default();
        settings.apply_env(|name| (name == "KITH_PUBLIC_URL").then(|| "https://kith.example.com".to_owned())).unwrap();
        assert_eq!(settings.public_url.as_deref(), Some("https://kith.example.com"));
        let mut settings: Settings = toml::from_str("public_url = \"kith.example.com\"").unwrap();
        assert!(settings.apply_env(|_| None).is_err(), "a scheme is required");
    }

    #[test]
    fn outbound_allow_is_a_list_of_ranges() {
        let mut settings: Settings = toml::from_str("outbound_allow = \"10.0.0.0/8, 127.0.0.1\"").unwrap();
        assert_eq!(settings.outbound_allow().unwrap().len(), 2);
        assert!(Settings::default().outbound_allow().unwrap().is_empty(), "nothing internal by default");
        settings.apply_env(|name| (name == "KITH_OUTBOUND_ALLOW").then(|| "fd00::/8".to_owned())).unwrap();
        assert_eq!(settings.outbound_allow().unwrap()[0].to_string(), "fd00::/8");
        settings.apply_env(|name| (name == "KITH_OUTBOUND_ALLOW").then(|| "intranet".to_owned())).unwrap();
        assert!(settings.outbound_allow().unwrap_err().to_string().contains("KITH_OUTBOUND_ALLOW"));
    }

    #[test]
    fn connection_queue_and_metrics_settings() {
        let mut settings: Settings =
            toml::from_str("queue_events = 1000\nhttp_max_connections = 64\nmetrics_listen = \"127.0.0.1:9100\"")
                .unwrap();
        assert_eq!(settings.pipeline().workspace_queue_events, 500, "half the queue by default");
        assert_eq!(settings.connections().max_connections, 64);
        let env = [
            ("KITH_WORKSPACE_QUEUE_EVENTS", "200"),
            ("KITH_HTTP_HEADER_TIMEOUT_SECS", "3"),
            ("KITH_HTTP_BODY_TIMEOUT_SECS", "4"),
            ("KITH_METRICS_TOKEN", "t0ken"),
        ];
        settings.apply_env(|name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap();
        assert_eq!(settings.pipeline().workspace_queue_events, 200);
        assert_eq!(settings.connections().header_timeout, std::time::Duration::from_secs(3));
        assert_eq!(settings.connections().body_timeout, std::time::Duration::from_secs(4));
        assert_eq!(settings.metrics_token.as_ref().map(|token| token.0.as_str()), Some("t0ken"));
        assert_eq!(settings.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
        assert!(settings.apply_env(|name| (name == "KITH_HTTP_BODY_TIMEOUT_SECS").then(|| "soon".into())).is_err());
    }

    #[test]
    fn database_timeout() {
        let mut settings = Settings::default();
        assert_eq!(settings.postgres("postgres://h/db").timeout, std::time::Duration::from_secs(10));
        settings.apply_env(|name| (name == "KITH_DATABASE_TIMEOUT_SECS").then(|| "3".to_owned())).unwrap();
        assert_eq!(settings.postgres("postgres://h/db").timeout, std::time::Duration::from_secs(3));
        let settings: Settings = toml::from_str("database_timeout_secs = 0\nmax_connections = 4").unwrap();
        let options = settings.postgres("postgres://h/db");
        assert_eq!(options.timeout, std::time::Duration::from_secs(1), "never zero: that would fail everything");
        assert_eq!(options.max_connections, 4);
    }

    #[test]
    fn region_and_endpoints_from_file_or_environment() {
        let mut settings: Settings =
            toml::from_str("region = \"eu\"\n[region_endpoints]\nus = \"https://us.example.com\"").unwrap();
        let regions = settings.regions().unwrap();
        assert_eq!(regions.own.as_deref(), Some("eu"));
        assert_eq!(regions.endpoints["us"], "https://us.example.com");
        let env =
            [("KITH_REGION", "us"), ("KITH_REGION_ENDPOINTS", "us=https://us.example.com, eu=https://eu.example.com")];
        settings.apply_env(|name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap();
        let regions = settings.regions().unwrap();
        assert_eq!(regions.own.as_deref(), Some("us"));
        assert_eq!(regions.endpoints["eu"], "https://eu.example.com");
        assert!(settings.apply_env(|name| (name == "KITH_REGION_ENDPOINTS").then(|| "eu".into())).is_err());
        settings.apply_env(|name| (name == "KITH_REGION").then(|| "Europe".into())).unwrap();
        assert!(settings.regions().is_err(), "region names are lowercase");
        assert!(Settings::default().regions().unwrap().own.is_none(), "no region by default");
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings { database_url: Some(Secret("postgres://u:pw@h/db".into())), ..Settings::default() };
        assert!(!format!("{settings:?}").contains("pw"));
    }
}
