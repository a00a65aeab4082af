//! Receivers for what kith sends: a webhook endpoint that records requests and answers with
//! scripted statuses, and a minimal SMTP server that records messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path, without its query.
    pub path: String,
    pub headers: HeaderMap,
    /// Body as JSON (Null if not JSON).
    pub json: serde_json::Value,
}

#[derive(Default)]
struct Script {
    /// Answers to give, in order; then 200.
    answers: VecDeque<(u16, Option<&'static str>)>,
    received: Vec<Received>,
}

/// An HTTP endpoint that records every POST.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:port`.
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 to everything.
    pub async fn start() -> Receiver {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new().fallback(record).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, script }
    }

    /// The next answers: statuses with an optional Retry-After; afterwards 200 again.
    pub fn answer(&self, answers: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().answers.extend(answers.iter().copied());
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

async fn record(
    State(script): State<Arc<Mutex<Script>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut script = script.lock().unwrap();
    script.received.push(Received {
        path: uri.path().to_owned(),
        headers,
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let (status, retry_after) = script.answers.pop_front().unwrap_or((200, None));
    let mut response = (StatusCode::from_u16(status).unwrap(), "{}").into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", seconds.parse().unwrap());
    }
    response
}

/// A message the SMTP server got.
#[derive(Debug, Clone)]
pub struct Mail {
    /// MAIL FROM.
    pub from: String,
    /// RCPT TO.
    pub to: Vec<String>,
    /// The DATA, headers and body.
    pub data: String,
}

/// A plain SMTP server on 127.0.0.1 that accepts every message, but for recipients it is told
/// to refuse.
#[derive(Clone)]
pub struct SmtpSink {
    /// `smtp://127.0.0.1:port` (plain), for kith's smtp_url.
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
    refusals: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmtpSink {
    /// Starts the server.
    pub async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let mails = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let (store, refused) = (mails.clone(), refusals.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (store, refused) = (store.clone(), refused.clone());
                tokio::spawn(async move {
                    let _ = session(socket, store, refused).await;
                });
            }
        });
        SmtpSink { url, mails, refusals }
    }

    /// Answers `RCPT TO` naming `address` with `reply` (e.g. `550 5.1.1 no such mailbox`) from
    /// now on; an empty reply accepts it again.
    pub fn refuse(&self, address: &str, reply: &str) {
        let mut refusals = self.refusals.lock().unwrap();
        refusals.retain(|(refused, _)| refused != address);
        if !reply.is_empty() {
            refusals.push((address.to_owned(), reply.to_owned()));
        }
    }

    /// Messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    refusals: Arc<Mutex<Vec<(String, String)>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut mail = Mail { from: String::new(), to: Vec::new(), data: String::new() };
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_owned();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let to = line[8..].trim().to_owned();
            let refusal = refusals.lock().unwrap().iter().find(|(address, _)| to.contains(address.as_str())).cloned();
            match refusal {
                Some((_, reply)) => write.write_all(format!("{reply}\r\n").as_bytes()).await?,
                None => {
                    mail.to.push(to);
                    write.write_all(b"250 OK\r\n").await?;
                }
            }
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            while let Some(data) = lines.next_line().await? {
                if data == "." {
                    break;
                }
                mail.data.push_str(&data);
                mail.data.push('\n');
            }
            mails
                .lock()
                .unwrap()
                .push(std::mem::replace(&mut mail, Mail { from: String::new(), to: Vec::new(), data: String::new() }));
            write.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            break;
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
    Ok(())
}
