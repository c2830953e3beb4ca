//! A real SMTP server in the test process: it counts, keeps messages on request, and fails on cue.
//!
//! It speaks enough SMTP for lettre's plain `smtp://host:port?tls=none` client: EHLO/HELO, MAIL
//! FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT, pipelined commands, any number of
//! connections at once. It advertises no AUTH and no STARTTLS.
//!
//! It keeps counts: the total, the count per `X-Herald-Delivery` header value (the delivery's
//! dedup key, which Herald puts on every email) and per recipient, so 10,000+ messages cost a few
//! hash map entries. [`SmtpSink::recording`] also keeps every accepted message whole (envelope,
//! headers and body). A message is counted when the server accepts it, just before its `250`
//! after the data.
//!
//! Failures on cue: a [`SmtpSink::script`] of replies to the DATA of given recipients (`451 …`,
//! `550 …`, or `close`: the connection closed after the data, without a reply); a reply to every `MAIL FROM` for a while ([`SmtpSink::refuse_with`]); a wait before
//! each `250` (a slow server, [`SmtpSink::set_delay`]); and going away and coming back on the same
//! port ([`SmtpSink::stop`], [`SmtpSink::resume`]).
//!
//! The server runs on its own thread and Tokio runtime, so a test that blocks its own runtime
//! (waiting for a `herald` process that is sending to this server, say) cannot stall it.

#![allow(dead_code)]

#[path = "smtp_sink_actions.rs"]
mod actions;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::oneshot,
    task::JoinSet,
};

/// What the server has accepted so far.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub total: u64,
    /// Messages per `X-Herald-Delivery` value; messages without the header count only in `total`.
    pub per_delivery: HashMap<String, u32>,
    /// Messages per recipient (lowercased), one per `RCPT TO`.
    pub per_recipient: HashMap<String, u32>,
    /// When the last message was accepted (a benchmark times up to it).
    pub last_arrival: Option<SystemTime>,
    /// Messages whose DATA arrived, accepted or refused by a scripted reply, per first
    /// recipient (lowercased): every copy Herald sent, never deduplicated.
    pub offered: HashMap<String, u32>,
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

    /// How many messages to this address reached DATA, accepted or refused.
    pub fn offered(&self, address: &str) -> u32 {
        self.offered
            .get(&address.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub fn recipient(&self, address: &str) -> u32 {
        self.per_recipient
            .get(&address.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

/// One message as the server accepted it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope's recipients (`RCPT TO`), as sent.
    pub rcpt_tos: Vec<String>,
    /// The message as received in DATA: CRLF line endings, dot-stuffing removed.
    pub raw: String,
    /// When the server accepted it.
    pub at: SystemTime,
}

impl Received {
    /// The first envelope recipient.
    pub fn to(&self) -> &str {
        &self.rcpt_tos[0]
    }

    /// The value of the first header `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.raw, name)
    }

    /// The decoded subject, or an empty string when there is none.
    pub fn subject(&self) -> String {
        mail_parser::MessageParser::default()
            .parse(self.raw.as_bytes())
            .and_then(|m| m.subject().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The decoded body of the part with this content type (`text/plain` or `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        let message = mail_parser::MessageParser::default().parse(self.raw.as_bytes())?;
        match content_type {
            "text/plain" => message.body_text(0).map(|s| s.into_owned()),
            "text/html" => message.body_html(0).map(|s| s.into_owned()),
            _ => None,
        }
    }
}

/// What the server has seen, under one lock so the counts and the kept messages agree.
#[derive(Default)]
struct Book {
    counts: Counts,
    /// `Some` when the server keeps messages ([`SmtpSink::recording`]).
    kept: Option<Vec<Received>>,
}

#[derive(Default)]
struct Shared {
    book: Mutex<Book>,
    /// How long to wait before accepting each message.
    delay: Mutex<Duration>,
    /// `Some(reply)`: answer every `MAIL FROM` with this (e.g. "451 4.3.0 Try again later").
    refuse: Mutex<Option<String>>,
    /// Replies to give to DATA, in order, per first recipient (lowercased) or `*`.
    script: Mutex<HashMap<String, VecDeque<String>>>,
}

impl Shared {
    /// The next scripted reply for a message to `rcpt` (its list, else `*`'s), or `None` to
    /// accept it.
    fn scripted_reply(&self, rcpt: &str) -> Option<String> {
        let mut script = self.script.lock().unwrap();
        let key = [rcpt.to_ascii_lowercase(), "*".to_owned()]
            .into_iter()
            .find(|k| script.get(k).is_some_and(|r| !r.is_empty()))?;
        let reply = script.get_mut(&key)?.pop_front()?;
        (!reply.eq_ignore_ascii_case("accept")).then_some(reply)
    }

    fn accept(&self, rcpt_tos: Vec<String>, raw: Vec<u8>) {
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let at = SystemTime::now();
        let mut book = self.book.lock().unwrap();
        let counts = &mut book.counts;
        counts.total += 1;
        counts.last_arrival = Some(at);
        if let Some(key) = header(&raw, "X-Herald-Delivery") {
            *counts.per_delivery.entry(key).or_default() += 1;
        }
        for r in &rcpt_tos {
            *counts
                .per_recipient
                .entry(r.to_ascii_lowercase())
                .or_default() += 1;
        }
        if let Some(kept) = book.kept.as_mut() {
            kept.push(Received { rcpt_tos, raw, at });
        }
    }
}

/// The server's thread while it listens.
struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The server. Dropping it stops it and closes every connection.
pub struct SmtpSink {
    pub port: u16,
    shared: Arc<Shared>,
    server: Option<Running>,
}

impl SmtpSink {
    /// Starts on a free port; keeps counts only.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_on(0).await
    }

    /// Starts on this port (0: any free one); keeps counts only.
    pub async fn start_on(port: u16) -> SmtpSink {
        SmtpSink::launch(port, Book::default()).await
    }

    /// Starts on a free port and keeps every message it accepts ([`SmtpSink::messages`]).
    pub async fn recording() -> SmtpSink {
        SmtpSink::recording_on(0).await
    }

    /// Starts on this port (0: any free one) and keeps every message it accepts.
    pub async fn recording_on(port: u16) -> SmtpSink {
        let book = Book {
            kept: Some(Vec::new()),
            ..Book::default()
        };
        SmtpSink::launch(port, book).await
    }

    async fn launch(port: u16, book: Book) -> SmtpSink {
        let shared = Shared {
            book: Mutex::new(book),
            ..Shared::default()
        };
        let mut sink = SmtpSink {
            port,
            shared: Arc::new(shared),
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
    /// are refused). Returns once the port is closed. The counts, messages and script are kept.
    pub fn stop(&mut self) {
        if let Some(running) = self.server.take() {
            let _ = running.stop.send(());
            // The thread drops its runtime, and with it the listener and every connection.
            let _ = running.thread.join();
        }
    }

    /// Listens again on the same port, with the same counts.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the SMTP sink is already running");
        let (listening_tx, listening) = oneshot::channel();
        let (stop, stopped) = oneshot::channel();
        let (port, shared) = (self.port, self.shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("smtp-sink-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a Tokio runtime for the SMTP sink");
                runtime.block_on(async move {
                    let listener = match bind(port).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = listening_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = listening_tx.send(Ok(listener.local_addr().unwrap().port()));
                    serve(listener, shared, stopped).await;
                });
            })
            .expect("a thread for the SMTP sink");
        match listening.await {
            Ok(Ok(port)) => self.port = port,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the SMTP sink's thread ended before listening"),
        }
        self.server = Some(Running { stop, thread });
    }

    /// Waits this long before accepting each message (`Duration::ZERO`: not at all).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Answers every `MAIL FROM` with `reply` (a 4xx, say) until called with `None`.
    pub fn refuse_with(&self, reply: Option<&str>) {
        *self.shared.refuse.lock().unwrap() = reply.map(str::to_owned);
    }

    /// Replaces the script: the replies to give, in order, to the DATA of messages whose first
    /// recipient is the key (any case; `*` for every recipient without a list of its own, or
    /// whose list is used up). `"accept"` accepts the message; anything else is a reply line
    /// such as `451 4.7.1 Try again later`, sent as it is, and the message is not accepted;
    /// `"close"` closes the connection after the data without a reply ([`actions::CLOSE`]).
    /// Once a list is used up, messages are accepted.
    pub fn script(&self, replies: &[(&str, &[&str])]) {
        let script = replies
            .iter()
            .map(|(rcpt, list)| {
                for reply in *list {
                    assert!(
                        reply.eq_ignore_ascii_case("accept")
                            || actions::is_close(reply)
                            || is_reply(reply),
                        "SMTP sink script for {rcpt}: {reply:?} is neither \"accept\", \"close\" \
                         nor a reply such as \"451 4.7.1 Try again later\" (a code from 200 to \
                         599, then text)"
                    );
                }
                (
                    rcpt.to_ascii_lowercase(),
                    list.iter().map(|r| (*r).to_owned()).collect(),
                )
            })
            .collect();
        *self.shared.script.lock().unwrap() = script;
    }

    /// A copy of the counts.
    pub fn counts(&self) -> Counts {
        self.shared.book.lock().unwrap().counts.clone()
    }

    pub fn total(&self) -> u64 {
        self.shared.book.lock().unwrap().counts.total
    }

    /// How many messages were accepted.
    pub fn count(&self) -> usize {
        self.total() as usize
    }

    pub fn duplicates(&self) -> u64 {
        self.shared.book.lock().unwrap().counts.duplicates()
    }

    /// How many of `keys` arrived at least once.
    pub fn arrived<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> usize {
        let book = self.shared.book.lock().unwrap();
        keys.into_iter()
            .filter(|k| book.counts.per_delivery.contains_key(k.as_str()))
            .count()
    }

    /// How many times each of `keys` arrived, in order.
    pub fn delivery_counts(&self, keys: &[String]) -> Vec<u32> {
        let book = self.shared.book.lock().unwrap();
        keys.iter().map(|k| book.counts.delivery(k)).collect()
    }

    /// Every accepted message, in the order accepted. Only for a server started with
    /// [`SmtpSink::recording`].
    pub fn messages(&self) -> Vec<Received> {
        self.shared
            .book
            .lock()
            .unwrap()
            .kept
            .clone()
            .expect("this SMTP sink keeps counts only: start it with SmtpSink::recording()")
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

    /// Waits until at least `n` messages arrived (the bound only stops a hung test); returns
    /// every message kept so far.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        self.wait_for_total(n as u64, within).await;
        self.messages()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A reply line: a code from 200 to 599, then nothing, or a space or dash and text.
fn is_reply(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ' | b'-'))
}

/// Binds with SO_REUSEADDR so a restart can take the port back at once.
async fn bind(port: u16) -> Result<TcpListener, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut last = None;
    // A port just released may take a moment to be free again.
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the SMTP sink cannot listen on {addr}: {last:?}"))
}

/// Accepts connections until `stop` fires (or its sender is dropped).
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => return,
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
        .write_all(b"220 sink.test ESMTP Herald test server\r\n")
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
            "EHLO" => {
                "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 0"
                    .into()
            }
            "HELO" => "250 sink.test".into(),
            "MAIL" => {
                recipients.clear();
                let refuse = shared.refuse.lock().unwrap().clone();
                in_transaction = refuse.is_none();
                refuse.unwrap_or_else(|| "250 2.1.0 OK".into())
            }
            "RCPT" if in_transaction => {
                recipients.push(address(text).to_owned());
                "250 2.1.5 OK".into()
            }
            "RCPT" => "503 5.5.1 MAIL first".into(),
            "DATA" if in_transaction && !recipients.is_empty() => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let raw = read_data(&mut read).await?;
                in_transaction = false;
                let recipients = std::mem::take(&mut recipients);
                *shared
                    .book
                    .lock()
                    .unwrap()
                    .counts
                    .offered
                    .entry(recipients[0].to_ascii_lowercase())
                    .or_default() += 1;
                match shared.scripted_reply(&recipients[0]) {
                    // A reset after the data: the client cannot tell what became of it.
                    Some(reply) if actions::is_close(&reply) => return Ok(()),
                    Some(reply) => reply,
                    None => {
                        let delay = *shared.delay.lock().unwrap();
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        shared.accept(recipients, raw);
                        "250 2.0.0 OK queued".into()
                    }
                }
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

/// Reads the message up to the lone dot and returns it with dot-stuffing undone (every line
/// keeps its line ending; the final `.` line is left out).
async fn read_data<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"." {
            return Ok(message);
        }
        // Dot-unstuffing: a line that starts with a dot was sent with one more.
        message.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
    }
}

/// The value of the first header `name` (any case) in a message's header section, with folded
/// lines joined by a space.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in raw.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if found.is_some() {
            break;
        } else if let Some((n, value)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
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
    async fn a_recording_server_keeps_each_message_whole_with_its_envelope() {
        let sink = SmtpSink::recording().await;
        let t = transport(&sink);
        let body = "line one\r\n.\r\n..two dots\r\nlast line";
        let first = message("Ada@example.com", "k:1", body);
        let formatted = String::from_utf8(first.formatted()).unwrap();
        t.send(first).await.unwrap();
        t.send(message("bob@example.com", "k:2", "second"))
            .await
            .unwrap();
        let mail = sink.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(mail.len(), 2);
        assert_eq!(sink.count(), 2);
        assert_eq!(mail[0].rcpt_tos, ["Ada@example.com"]);
        assert_eq!(mail[0].to(), "Ada@example.com");
        assert_eq!(mail[1].to(), "bob@example.com");
        assert_eq!(mail[0].header("subject").as_deref(), Some("hello"));
        assert_eq!(mail[0].header("X-Herald-Delivery").as_deref(), Some("k:1"));
        assert_eq!(mail[0].header("X-Missing"), None);
        // The message as lettre formatted it, dot-stuffing undone, and the CRLF lettre ends
        // every message with before the final dot.
        assert_eq!(mail[0].raw, format!("{formatted}\r\n"));
        let text = mail[0].part("text/plain").unwrap();
        assert_eq!(text.trim_end(), body);
        assert!(mail[0].at <= mail[1].at);
        assert_eq!(sink.counts().last_arrival, Some(mail[1].at));
    }

    #[tokio::test]
    #[should_panic(expected = "start it with SmtpSink::recording()")]
    async fn a_counting_server_says_it_keeps_no_messages() {
        SmtpSink::start().await.messages();
    }

    #[tokio::test]
    async fn scripted_replies_go_to_their_recipient_in_order_then_it_accepts() {
        let sink = SmtpSink::recording().await;
        sink.script(&[
            (
                "Flaky@example.com",
                &[
                    "451 4.7.1 Try again later",
                    "accept",
                    "550 5.1.1 No such user",
                ],
            ),
            ("*", &["421 4.3.2 Busy"]),
        ]);
        let t = transport(&sink);
        let code = |r: Result<_, lettre::transport::smtp::Error>| {
            r.map(|_| 250)
                .unwrap_or_else(|e| e.status().map_or(0, u16::from))
        };
        let flaky = || message("flaky@example.com", "k:f", "x");
        let other = || message("other@example.com", "k:o", "x");
        let mut codes = Vec::new();
        for m in [flaky(), other(), flaky(), flaky(), other(), flaky()] {
            codes.push(code(t.send(m).await));
        }
        // flaky@ takes its own list in order; other@ takes `*`'s; used-up lists accept.
        assert_eq!(codes, [451, 421, 250, 550, 250, 250]);
        let to: Vec<_> = sink.messages().iter().map(|m| m.to().to_owned()).collect();
        assert_eq!(
            to,
            [
                "flaky@example.com",
                "other@example.com",
                "flaky@example.com"
            ]
        );
    }

    #[tokio::test]
    #[should_panic(expected = "is neither \"accept\", \"close\" nor a reply")]
    async fn a_script_entry_that_is_not_a_reply_is_refused() {
        SmtpSink::start()
            .await
            .script(&[("a@example.com", &["try later"])]);
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

    /// The server has its own thread: a test runtime that is blocked does not stall it.
    #[tokio::test]
    async fn answers_while_the_tests_runtime_is_blocked() {
        let sink = SmtpSink::start().await;
        let port = sink.port;
        // A blocking SMTP client on this (single-threaded) runtime's only thread.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut greeting = [0u8; 3];
        std::io::Read::read_exact(&mut s, &mut greeting).unwrap();
        assert_eq!(&greeting, b"220");
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
