//! A minimal HTTP/1.1 keep-alive client over a raw TCP stream.
//!
//! The load driver shares two cores with the server it measures, so each request costs it one
//! `write` of bytes prepared in advance and a scan for the status line and `Content-Length`:
//! no header maps, no body decoding. Only what kith and the reference server answer is
//! understood (a `Content-Length` body, or a body up to the connection's end).

use std::io;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// More servers taking the same requests (several kith nodes on one database): the load
    /// spreads its connections over `addr` and these, round robin.
    pub peers: Vec<SocketAddr>,
    /// `host:port` for the `Host` header.
    pub host: String,
    /// The key sent as `Authorization: Bearer`.
    pub key: Option<String>,
}

impl Target {
    /// Parses `http://host:port` (no TLS: benchmarks run on one machine).
    pub async fn new(url: &str, key: Option<String>) -> anyhow::Result<Target> {
        let Some(host) = url.strip_prefix("http://") else { bail!("the url must start with http://, got {url}") };
        let host = host.trim_end_matches('/').to_owned();
        let addr = tokio::net::lookup_host(&host)
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target { addr, peers: Vec::new(), host, key })
    }

    /// The address of connection number `n`.
    pub fn addr_for(&self, n: usize) -> SocketAddr {
        match n % (1 + self.peers.len()) {
            0 => self.addr,
            peer => self.peers[peer - 1],
        }
    }

    /// A complete GET request, with the key if there is one, ready to write.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(key) = &self.key {
            request.push_str("Authorization: Bearer ");
            request.push_str(key);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.into_bytes()
    }

    /// A complete POST request with a JSON body, ready to write.
    pub fn post(&self, path: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(key) = &self.key {
            request.push_str("Authorization: Bearer ");
            request.push_str(key);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// One keep-alive connection, opened on first use and again after a failure or a
/// `Connection: close`.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    /// A connection to `addr`, not yet open.
    pub fn new(addr: SocketAddr) -> Connection {
        Connection { addr, stream: None, buffer: Vec::with_capacity(16 * 1024) }
    }

    /// Sends one request and reads its answer. After an error the connection is closed and
    /// the next call opens a new one.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("opened above");
        stream.write_all(request).await?;
        self.buffer.clear();
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if read_more(stream, &mut self.buffer).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed before an answer"));
            }
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the answer's head is not text"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
        let mut length = None;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                close = true;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "chunked answers are not expected"));
            }
        }
        match length {
            Some(length) => {
                while self.buffer.len() < head_end + length {
                    if read_more(stream, &mut self.buffer).await? == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the answer was cut short"));
                    }
                }
            }
            None => {
                close = true;
                while read_more(stream, &mut self.buffer).await? > 0 {}
            }
        }
        let body = self.buffer[head_end..].to_vec();
        if close {
            self.stream = None;
        }
        Ok(Answer { status, body })
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    buffer.reserve(8 * 1024);
    stream.read_buf(buffer).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
