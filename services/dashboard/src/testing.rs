//! Helpers for the integration tests and the benchmark (kept in the library so both share
//! one copy): a minimal server-sent-events reader over a raw TCP connection, the way a
//! browser tab holds `/events` open.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct SseClient {
    reader: BufReader<TcpStream>,
}

impl SseClient {
    /// Opens `GET /events` (with an optional `Cookie` header) and reads past the response head.
    pub async fn connect(addr: SocketAddr, cookie: Option<&str>) -> std::io::Result<SseClient> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
        let req = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{cookie}\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the head ended"));
            }
            if line == "\r\n" {
                break;
            }
        }
        Ok(SseClient { reader })
    }

    /// Waits for the next event named `name` and returns its data, or `None` on timeout/close.
    pub async fn next_named(&mut self, name: &str, timeout: Duration) -> Option<String> {
        let want = format!("event: {name}");
        let fut = async {
            let mut line = String::new();
            let mut in_event = false;
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                let l = line.trim_end();
                if l == want {
                    in_event = true;
                } else if in_event {
                    if let Some(data) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")) {
                        return Some(data.to_string());
                    }
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }
}
