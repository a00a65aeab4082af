//! Every connection kith opens to somewhere else — webhooks, digests, the outbound Segment
//! host, the SMTP server — goes through this module, so one address policy covers them all.
//!
//! The URLs come from workspace settings and rules, which anyone with a secret key or a web
//! account can write; without a policy they would let such a user make kith call its own
//! network (a cloud metadata endpoint, an admin port, a database). So:
//! - names are resolved here and every address is checked; the connection goes to an address
//!   that passed, never to a second lookup a rebinding DNS server could answer differently;
//! - loopback, private, link-local, unique-local, site-local, CGNAT, multicast, broadcast,
//!   unspecified and reserved addresses are refused, including IPv4 written inside IPv6;
//! - redirects are not followed, no proxy from the environment is used;
//! - answers are never decompressed and at most [`MAX_RESPONSE_BYTES`] of one is read;
//! - every call has a connect and a total timeout.
//!
//! Operators who need an internal receiver list its range in `outbound_allow`.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use ipnet::IpNet;
use kith_store::error_chain;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use serde_json::Value;

use crate::jobs::delivery::SmtpConfig;

/// How long connecting (name lookup included) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one HTTP request may take, answer included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sending one email may take, every SMTP exchange included.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer kith reads; the rest is dropped with the connection.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Which addresses kith may connect to.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<IpNet>,
}

/// Why an address or a URL is refused; the message says how to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

impl Policy {
    /// A policy that also permits the listed ranges.
    pub fn new(allow: Vec<IpNet>) -> Policy {
        Policy { allow }
    }

    /// Parses `outbound_allow`: comma-separated CIDR ranges; a bare address is that address.
    pub fn parse_allow(list: &str) -> Result<Vec<IpNet>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is not a CIDR range like 10.0.0.0/8 or fd00::/8"))
            })
            .collect()
    }

    /// Whether kith may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        self.forbidden(ip).map_or(Ok(()), |class| {
            Err(Refused(format!(
                "{ip} is {class}; kith does not connect to internal addresses unless outbound_allow \
                 (KITH_OUTBOUND_ALLOW) lists its range, e.g. outbound_allow = \"{}\"",
                suggested_range(ip)
            )))
        })
    }

    /// The kind of internal address `ip` is, unless the allow list lets it through.
    fn forbidden(&self, ip: IpAddr) -> Option<&'static str> {
        let class = forbidden_class(ip)?;
        // An IPv4 address written inside IPv6 is allowed by its IPv4 range too.
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let allowed = self.allow.iter().any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)));
        (!allowed).then_some(class)
    }

    /// Checks a URL when it is saved: an http(s) scheme, and a host that is not a forbidden
    /// address written literally (or `localhost`). Names are checked again, resolved, at
    /// every connection.
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let parsed = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Refused(format!("{url:?} is not an http:// or https:// URL")))?;
        self.check_host(&parsed)
    }

    /// Checks an outbound Segment host (`api.segment.io`, or a URL) when it is saved.
    pub fn check_segment_host(&self, host: &str) -> Result<(), Refused> {
        self.check_url(&segment_batch_url(host))
    }

    fn check_host(&self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                // Hosts of non-http schemes (smtp://) are not parsed into addresses.
                if let Ok(ip) = name.parse::<IpAddr>() {
                    self.check(ip)
                } else if name == "localhost" || name.ends_with(".localhost") {
                    self.check(IpAddr::V4(Ipv4Addr::LOCALHOST))
                } else {
                    Ok(())
                }
            }
            None => Err(Refused(format!("{url} names no host"))),
        }
    }

    /// Resolves `host` and keeps the addresses the policy permits; refuses when none is left.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let found: Vec<SocketAddr> =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(error)) => return Err(Refused(format!("cannot resolve {host}: {error}"))),
                Err(_) => return Err(Refused(format!("resolving {host} timed out"))),
            };
        let mut refusal = None;
        let permitted: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| match self.forbidden(addr.ip()) {
                None => true,
                Some(class) => {
                    refusal.get_or_insert(class);
                    false
                }
            })
            .collect();
        // The address itself is not repeated: it would tell a user what internal names
        // resolve to.
        match (permitted.is_empty(), refusal) {
            (false, _) => Ok(permitted),
            (true, Some(class)) => Err(Refused(format!(
                "{host} resolves to {class}; kith does not connect to internal addresses unless \
                 outbound_allow (KITH_OUTBOUND_ALLOW) lists its range"
            ))),
            (true, None) => Err(Refused(format!("{host} has no address"))),
        }
    }
}

/// What kind of internal address `ip` is, or `None` for a public one.
fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            let [first, ..] = v6.segments();
            if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_loopback() {
                Some("a loopback address")
            } else if let Some(v4) = embedded_ipv4(ip) {
                // IPv4-mapped, NAT64 and 6to4 forms reach the IPv4 address inside; the
                // long-deprecated IPv4-compatible form (::a.b.c.d) is refused whatever it holds.
                match forbidden_v4(v4) {
                    Some(class) => Some(class),
                    None if v6.segments()[..6] == [0; 6] => Some("an IPv4-compatible address (::/96)"),
                    None => None,
                }
            } else if first & 0xfe00 == 0xfc00 {
                Some("a unique-local address (fc00::/7)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address (fe80::/10)")
            } else if first & 0xffc0 == 0xfec0 {
                Some("a site-local address (fec0::/10)")
            } else if first & 0xff00 == 0xff00 {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address (RFC 1918)")
    } else if ip.is_link_local() {
        Some("a link-local address (169.254.0.0/16, cloud metadata lives there)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared CGNAT address (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if a >= 240 {
        Some("a reserved address (240.0.0.0/4)")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("an IETF protocol address (192.0.0.0/24)")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`) address.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            Some(low(hi, lo))
        }
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// The narrowest usual range around `ip`, for the refusal message.
fn suggested_range(ip: IpAddr) -> String {
    match embedded_ipv4(ip).map(IpAddr::V4).unwrap_or(ip) {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// `{host}/v1/batch`, with https assumed when the host names no scheme.
pub fn segment_batch_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        format!("{host}/v1/batch")
    } else {
        format!("https://{host}/v1/batch")
    }
}

/// reqwest's name lookups, through the policy.
struct PolicyResolver(Arc<Policy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            // reqwest puts the URL's port on the addresses itself.
            let permitted = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// An HTTP answer: its status and `Retry-After`, never its body (it may come from anywhere,
/// and it is not shown to users).
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: reqwest::StatusCode,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

/// The clients every outbound connection goes through.
pub struct Outbound {
    policy: Arc<Policy>,
    http: reqwest::Client,
    smtp: Option<Smtp>,
}

struct Smtp {
    url: Url,
    from: Mailbox,
}

impl Outbound {
    /// Builds the clients; an unusable SMTP setting, or an SMTP host that is a forbidden
    /// address, is an error at start rather than at the first send.
    pub fn new(policy: Policy, smtp: Option<&SmtpConfig>) -> anyhow::Result<Outbound> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .no_gzip()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("kith/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let smtp = match smtp {
            None => None,
            Some(config) => {
                // lettre's own parser validates the URL the way it will be used.
                AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
                    .map_err(|e| anyhow::anyhow!("smtp_url is not usable: {e}"))?;
                let url = Url::parse(&config.url)?;
                policy.check_host(&url).map_err(|refused| anyhow::anyhow!("smtp_url: {refused}"))?;
                let from: Mailbox = config
                    .from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("smtp_from {:?} is not an address: {e}", config.from))?;
                Some(Smtp { url, from })
            }
        };
        Ok(Outbound { policy, http, smtp })
    }

    /// The address policy, for checks when settings are saved.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// POSTs JSON; the answer's body is read (at most [`MAX_RESPONSE_BYTES`], never
    /// decompressed) only so that the connection can be reused, then dropped.
    pub async fn post_json(&self, url: &str, body: &Value, basic_key: Option<&str>) -> Result<Answer, String> {
        let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        // Literal addresses never reach the resolver, so they are checked here.
        self.policy.check_host(&parsed).map_err(|refused| refused.0)?;
        let mut request = self.http.post(parsed).json(body);
        if let Some(key) = basic_key {
            request = request.basic_auth(key, Some(""));
        }
        let mut response = request.send().await.map_err(|error| error_chain(&error))?;
        let answer = Answer {
            status: response.status(),
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        };
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(answer)
    }

    /// The configured From address.
    pub fn smtp_from(&self) -> Option<&Mailbox> {
        self.smtp.as_ref().map(|smtp| &smtp.from)
    }

    /// Sends an email through the configured server, connecting to an address the policy
    /// permits; TLS still verifies the server's name.
    pub async fn send_mail(&self, message: Message) -> Result<(), MailError> {
        let Some(smtp) = &self.smtp else { return Err(MailError::NotConfigured) };
        let transport = self.smtp_transport(smtp).await?;
        match tokio::time::timeout(SMTP_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.is_permanent() => {
                let reply = error_chain(&error);
                let code = error.status().and_then(|code| code.to_string().parse().ok());
                if code.is_some_and(|code| is_hard_bounce(code, &reply)) {
                    Err(MailError::Bounced(reply))
                } else {
                    Err(MailError::Permanent(reply))
                }
            }
            Ok(Err(error)) => Err(MailError::Transient(error_chain(&error))),
            Err(_) => Err(MailError::Transient(format!("the SMTP exchange took over {}s", SMTP_TIMEOUT.as_secs()))),
        }
    }

    /// lettre's `from_url`, but with the server given as the checked address.
    async fn smtp_transport(&self, smtp: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let url = &smtp.url;
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let (port, tls) = match (url.scheme(), tls.as_deref()) {
            ("smtps", _) => (465, Some(Tls::Wrapper as fn(TlsParameters) -> Tls)),
            (_, Some("required")) => (587, Some(Tls::Required as fn(TlsParameters) -> Tls)),
            (_, Some("opportunistic")) => (587, Some(Tls::Opportunistic as fn(TlsParameters) -> Tls)),
            _ => (25, None),
        };
        let port = url.port().unwrap_or(port);
        let address = match host.parse::<IpAddr>() {
            Ok(ip) => {
                self.policy.check(ip).map_err(|refused| MailError::Transient(refused.0))?;
                SocketAddr::new(ip, port)
            }
            Err(_) => self.policy.resolve(&host, port).await.map_err(|refused| MailError::Transient(refused.0))?[0],
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(port)
            .timeout(Some(HTTP_TIMEOUT));
        if let Some(tls) = tls {
            let parameters = TlsParameters::new(host.clone()).map_err(|e| MailError::Permanent(error_chain(&e)))?;
            builder = builder.tls(tls(parameters));
        }
        if url.path().len() > 1 {
            builder = builder.hello_name(ClientId::Domain(url.path().trim_matches('/').to_owned()));
        }
        if let Some(password) = url.password() {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            builder = builder.credentials(Credentials::new(decode(url.username()), decode(password)));
        }
        Ok(builder.build())
    }
}

/// Why an email was not sent.
#[derive(Debug)]
pub enum MailError {
    /// No SMTP server is configured.
    NotConfigured,
    /// The server refused for good, for a reason that is not the recipient's address (kith's
    /// own account, the server's policy, a command it did not take).
    Permanent(String),
    /// The server refused the recipient's address for good: a hard bounce.
    Bounced(String),
    /// It may work later.
    Transient(String),
}

/// Whether a permanent SMTP reply refuses the recipient's address (a hard bounce): 550 to 554
/// (mailbox unavailable, not local, full, name not allowed, transaction failed). Not when its
/// enhanced status is 5.7.x (security or policy: relaying denied, authentication, a sender the
/// server will not take), nor other 5xx codes (a command the server did not understand,
/// authentication required or failed): those say something about kith's account or setup, and
/// suppressing every contact they hit would be wrong.
fn is_hard_bounce(code: u16, reply: &str) -> bool {
    let policy = reply.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')').any(|word| {
        word.strip_prefix("5.7.").is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    });
    (550..=554).contains(&code) && !policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_bounces_are_refusals_of_the_address() {
        assert!(is_hard_bounce(550, "permanent error (550): 5.1.1 <ada@example.com>: mailbox unavailable"));
        assert!(is_hard_bounce(553, "permanent error (553): mailbox name not allowed"));
        assert!(!is_hard_bounce(550, "permanent error (550): 5.7.1 relaying denied"));
        assert!(!is_hard_bounce(535, "permanent error (535): 5.7.8 authentication credentials invalid"));
        assert!(!is_hard_bounce(530, "permanent error (530): authentication required"));
        assert!(!is_hard_bounce(500, "permanent error (500): command not recognized"));
    }

    fn refused(ip: &str) -> bool {
        Policy::default().check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(refused(ip), "{ip} is refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert!(!refused(ip), "{ip} is allowed");
        }
    }

    #[test]
    fn the_allow_list_opens_ranges_in_both_notations() {
        let policy = Policy::new(Policy::parse_allow(" 127.0.0.0/8, fd00::/8,10.0.0.7").unwrap());
        for ip in ["127.0.0.1", "::ffff:127.0.0.1", "fd00::1", "10.0.0.7"] {
            assert_eq!(policy.check(ip.parse().unwrap()), Ok(()), "{ip}");
        }
        assert!(policy.check("10.0.0.8".parse().unwrap()).is_err());
        assert!(Policy::parse_allow("10.0.0.0/33").is_err());
        assert_eq!(Policy::parse_allow("").unwrap(), vec![]);
    }

    #[test]
    fn urls_are_checked_when_saved() {
        let policy = Policy::default();
        for url in [
            "http://169.254.169.254/latest",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "https://localhost/x",
            "ftp://example.com/",
        ] {
            assert!(policy.check_url(url).is_err(), "{url}");
        }
        assert_eq!(policy.check_url("https://hooks.slack.com/services/x"), Ok(()));
        assert!(policy.check_segment_host("10.0.0.1:8080").is_err());
        assert_eq!(policy.check_segment_host("api.segment.io"), Ok(()));
    }

    #[test]
    fn an_internal_smtp_server_must_be_listed() {
        for url in
            ["smtp://127.0.0.1:25", "smtp://localhost:25", "smtps://user:pw@[::1]", "smtp://10.0.0.2:587?tls=required"]
        {
            let config = SmtpConfig { url: url.into(), from: "kith <kith@example.com>".into() };
            let error =
                Outbound::new(Policy::default(), Some(&config)).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("outbound_allow"), "{url}: {error}");
            let allowed = Policy::new(Policy::parse_allow("127.0.0.0/8, ::1, 10.0.0.0/8").unwrap());
            assert!(Outbound::new(allowed, Some(&config)).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_once_resolved() {
        let refused = Policy::default().resolve("localhost", 25).await.unwrap_err();
        assert!(refused.0.contains("loopback") && refused.0.contains("outbound_allow"), "{refused}");
        let allowed = Policy::new(Policy::parse_allow("127.0.0.0/8, ::1").unwrap());
        assert!(allowed.resolve("localhost", 25).await.unwrap().iter().all(|a| a.ip().is_loopback() && a.port() == 25));
    }

    #[test]
    fn hosts_get_a_scheme_and_the_batch_path() {
        assert_eq!(segment_batch_url("api.segment.io"), "https://api.segment.io/v1/batch");
        assert_eq!(segment_batch_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/v1/batch");
    }
}
