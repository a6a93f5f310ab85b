//! [`http_get`]: one plain HTTP/1.0 GET to a daemon's metrics and health port on 127.0.0.1, with
//! its status code and body, bounded in time.
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};

/// How long one request may take: a stopped daemon accepts the connection and never answers.
const REQUEST_LIMIT: Duration = Duration::from_secs(3);

/// `GET path` on 127.0.0.1:`port`: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_LIMIT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(REQUEST_LIMIT))?;
    s.set_write_timeout(Some(REQUEST_LIMIT))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}
