//! A counting SMTP server inside the test process (tokio): enough SMTP for lettre's plain
//! `smtp://host:port?tls=none` client (EHLO/HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT), any number of connections at once.
//!
//! It keeps counts, not messages: the total, the count per `X-Herald-Delivery` header value (the
//! delivery's dedup key, which Herald puts on every email) and per recipient, so 10,000+ messages
//! cost a few hash map entries. A message is counted when the server accepts it (just before its
//! `250` after the data). It can be stopped and started again on the same port (a mail server
//! outage), answer a 4xx to every `MAIL FROM` for a while, and wait before each `250` (a slow
//! provider, so a test can act mid-send).

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// What the server has accepted so far.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub total: u64,
    /// Messages per `X-Herald-Delivery` value; messages without the header count only in `total`.
    pub per_delivery: HashMap<String, u32>,
    /// Messages per recipient (lowercased), one per `RCPT TO`.
    pub per_recipient: HashMap<String, u32>,
}

impl Counts {
    /// Copies: messages whose `X-Herald-Delivery` was seen before (the sum of count − 1).
    pub fn duplicates(&self) -> u64 {
        self.per_delivery
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// How many times this delivery arrived.
    pub fn delivery(&self, key: &str) -> u32 {
        self.per_delivery.get(key).copied().unwrap_or(0)
    }

    pub fn recipient(&self, address: &str) -> u32 {
        self.per_recipient
            .get(&address.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// How long to wait before accepting each message.
    delay: Mutex<Duration>,
    /// `Some(reply)`: answer every `MAIL FROM` with this (e.g. "451 4.3.0 Try again later").
    refuse: Mutex<Option<String>>,
}

/// The server. Dropping it stops it and closes every connection.
pub struct SmtpSink {
    pub port: u16,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts on a free port.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_on(0).await
    }

    /// Starts on this port (0: any free one).
    pub async fn start_on(port: u16) -> SmtpSink {
        let mut sink = SmtpSink {
            port,
            shared: Arc::new(Shared::default()),
            server: None,
        };
        sink.resume().await;
        sink
    }

    /// `smtp://127.0.0.1:PORT?tls=none`, the form Herald takes for a local server without TLS.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops listening and drops every open connection: the mail server is down (connections
    /// are refused). The counts are kept.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // Aborting the accept loop drops its JoinSet, which aborts every connection.
            server.abort();
        }
    }

    /// Listens again on the same port, with the same counts.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the SMTP sink is already running");
        let listener = bind(self.port).await;
        self.port = listener.local_addr().unwrap().port();
        let shared = self.shared.clone();
        self.server = Some(tokio::spawn(serve(listener, shared)));
    }

    /// Waits this long before accepting each message (`Duration::ZERO`: not at all).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Answers every `MAIL FROM` with `reply` (a 4xx, say) until called with `None`.
    pub fn refuse_with(&self, reply: Option<&str>) {
        *self.shared.refuse.lock().unwrap() = reply.map(str::to_owned);
    }

    /// A copy of the counts.
    pub fn counts(&self) -> Counts {
        self.shared.counts.lock().unwrap().clone()
    }

    pub fn total(&self) -> u64 {
        self.shared.counts.lock().unwrap().total
    }

    pub fn duplicates(&self) -> u64 {
        self.shared.counts.lock().unwrap().duplicates()
    }

    /// How many of `keys` arrived at least once.
    pub fn arrived<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> usize {
        let counts = self.shared.counts.lock().unwrap();
        keys.into_iter()
            .filter(|k| counts.per_delivery.contains_key(k.as_str()))
            .count()
    }

    /// Waits until `total` reaches `n` (the bound only stops a hung test).
    pub async fn wait_for_total(&self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.total() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages arrived",
                self.total()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds with SO_REUSEADDR so a restart can take the port back at once.
async fn bind(port: u16) -> TcpListener {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut last = None;
    // A port just released may take a moment to be free again.
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return listener,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the SMTP sink cannot listen on {addr}: {last:?}");
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        // A client that goes away mid-session is not an error of the server.
                        let _ = session(stream, shared).await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished sessions so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One SMTP session.
async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 sink.test ESMTP counting sink\r\n")
        .await?;
    let mut line = Vec::new();
    let mut recipients: Vec<String> = Vec::new();
    let mut in_transaction = false;
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-sink.test\r\n250-8BITMIME\r\n250 SIZE 0".into(),
            "HELO" => "250 sink.test".into(),
            "MAIL" => {
                recipients.clear();
                let refuse = shared.refuse.lock().unwrap().clone();
                match refuse {
                    Some(reply) => {
                        in_transaction = false;
                        reply
                    }
                    None => {
                        in_transaction = true;
                        "250 2.1.0 OK".into()
                    }
                }
            }
            "RCPT" if in_transaction => {
                recipients.push(address(text).to_ascii_lowercase());
                "250 2.1.5 OK".into()
            }
            "RCPT" => "503 5.5.1 MAIL first".into(),
            "DATA" if in_transaction && !recipients.is_empty() => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let key = read_data(&mut read).await?;
                let delay = *shared.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                {
                    let mut counts = shared.counts.lock().unwrap();
                    counts.total += 1;
                    if let Some(key) = key {
                        *counts.per_delivery.entry(key).or_default() += 1;
                    }
                    for r in recipients.drain(..) {
                        *counts.per_recipient.entry(r).or_default() += 1;
                    }
                }
                in_transaction = false;
                "250 2.0.0 OK queued".into()
            }
            "DATA" => "503 5.5.1 RCPT first".into(),
            "RSET" => {
                recipients.clear();
                in_transaction = false;
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized".into(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}

/// The address inside `<…>` of a `MAIL FROM:` or `RCPT TO:` line.
fn address(line: &str) -> &str {
    match (line.find('<'), line.rfind('>')) {
        (Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => line.split_once(':').map_or("", |(_, r)| r.trim()),
    }
}

/// Reads the message up to the lone dot, undoing dot-stuffing, and returns its
/// `X-Herald-Delivery` header (folded lines unfolded). Only the header is looked at.
async fn read_data<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut in_header = true;
    let mut current: Option<String> = None;
    let mut key = None;
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw == b"." {
            if let Some(value) = current.take().and_then(delivery_value) {
                key = Some(value);
            }
            return Ok(key);
        }
        if !in_header {
            continue;
        }
        // Dot-unstuffing: a line that starts with a dot was sent with one more.
        let raw = raw.strip_prefix(b".").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        if text.is_empty() {
            in_header = false;
            if let Some(value) = current.take().and_then(delivery_value) {
                key = Some(value);
            }
        } else if text.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(text.trim());
            }
        } else {
            if let Some(value) = current.take().and_then(delivery_value) {
                key = Some(value);
            }
            current = Some(text.into_owned());
        }
    }
}

fn delivery_value(header: String) -> Option<String> {
    let (name, value) = header.split_once(':')?;
    name.trim()
        .eq_ignore_ascii_case("X-Herald-Delivery")
        .then(|| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use lettre::{
        AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
        message::header::{HeaderName, HeaderValue},
    };

    use super::*;

    fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
        // What Herald builds for `smtp://127.0.0.1:PORT?tls=none`: no TLS at all.
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port)
            .timeout(Some(Duration::from_secs(5)))
            .build()
    }

    fn message(to: &str, key: &str, body: &str) -> Message {
        let mut m = Message::builder()
            .from("Herald <herald@example.com>".parse().unwrap())
            .to(to.parse().unwrap())
            .subject("hello")
            .body(body.to_owned())
            .unwrap();
        m.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Herald-Delivery"),
            key.to_owned(),
        ));
        m
    }

    #[tokio::test]
    async fn counts_per_delivery_and_recipient_and_sees_copies() {
        let sink = SmtpSink::start().await;
        let t = transport(&sink);
        // A lone dot and a leading dot in the body are dot-stuffed by lettre, and undone here.
        let body = "line one\r\n.\r\n.leading dot\r\nX-Herald-Delivery: not-a-header\r\n";
        t.send(message("a@example.com", "k:1", body)).await.unwrap();
        t.send(message("B@example.com", "k:2", body)).await.unwrap();
        t.send(message("a@example.com", "k:1", "again"))
            .await
            .unwrap();
        let long = format!("overdue_summary:{}:2026-11-23", "9".repeat(90));
        t.send(message("c@example.com", &long, "folded"))
            .await
            .unwrap();
        let c = sink.counts();
        assert_eq!(c.total, 4);
        assert_eq!(c.delivery("k:1"), 2);
        assert_eq!(c.delivery("k:2"), 1);
        assert_eq!(c.delivery(&long), 1, "{:?}", c.per_delivery.keys());
        assert_eq!(c.recipient("a@example.com"), 2);
        assert_eq!(c.recipient("b@example.com"), 1);
        assert_eq!(c.duplicates(), 1);
    }

    #[tokio::test]
    async fn stops_restarts_on_the_same_port_and_refuses_for_a_while() {
        let mut sink = SmtpSink::start().await;
        let port = sink.port;
        let t = transport(&sink);
        t.send(message("a@example.com", "k:1", "x")).await.unwrap();
        sink.stop();
        let fresh = transport(&sink);
        assert!(
            fresh
                .send(message("a@example.com", "k:2", "x"))
                .await
                .is_err()
        );
        sink.resume().await;
        assert_eq!(sink.port, port);
        fresh
            .send(message("a@example.com", "k:2", "x"))
            .await
            .unwrap();

        sink.refuse_with(Some("451 4.3.0 Try again later"));
        let e = fresh
            .send(message("a@example.com", "k:3", "x"))
            .await
            .unwrap_err();
        assert_eq!(e.status().map(u16::from), Some(451), "{e}");
        sink.refuse_with(None);
        fresh
            .send(message("a@example.com", "k:3", "x"))
            .await
            .unwrap();
        assert_eq!(sink.total(), 3);
        assert_eq!(sink.duplicates(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takes_many_connections_at_once() {
        let sink = SmtpSink::start().await;
        sink.set_delay(Duration::from_millis(20));
        let mut sends = JoinSet::new();
        for i in 0..200 {
            let t = transport(&sink);
            sends.spawn(async move {
                t.send(message(
                    &format!("u{i}@example.com"),
                    &format!("k:{i}"),
                    "x",
                ))
                .await
            });
        }
        while let Some(r) = sends.join_next().await {
            r.unwrap().unwrap();
        }
        let c = sink.counts();
        assert_eq!(
            (c.total, c.per_delivery.len(), c.duplicates()),
            (200, 200, 0)
        );
    }
}
