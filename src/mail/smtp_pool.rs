//! SMTP connections kept open between sends, on lettre's connection type, with Nagle off.
//!
//! # Why not lettre's pooled transport
//!
//! lettre 0.11.23 never sets `TCP_NODELAY`. Its client writes a message's body, then the
//! closing `\r\n.\r\n` as a second small write; Nagle's algorithm holds that write until the
//! server acknowledges the body, and the server, which has nothing to say before the end of the
//! message, delays its ACK by 40 ms (Linux's minimum). Every message on a connection then takes
//! at least 40 ms, whatever the machine: measured here, 16 connections to a sink that answers at
//! once carried 352 emails a second, one every 45 ms per connection. lettre has merged the fix
//! (pull request 1159) but not released it.
//!
//! So Herald opens the TCP connection itself, sets `TCP_NODELAY`, and hands it to lettre's
//! [`AsyncSmtpConnection`], which speaks SMTP (EHLO, STARTTLS, AUTH, the message) as before.
//! Herald gives the transaction's commands itself (`transaction`), so that it knows whether a
//! failure came after the whole message was written: then the server may have it, and the
//! outcome is unknown.
//! The pool around it is small: idle connections on a stack, at most `mail.pool_size` of them;
//! the bound on sends at once is the provider's (see [`super::Provider`]). A connection goes back
//! only after a send that ended well; one idle for more than [`CHECK_AFTER`] is checked with a
//! NOOP before it is used again, and one idle for more than [`IDLE_TIMEOUT`] is closed.
//!
//! `tls=implicit` (SMTPS, port 465) still goes through lettre's own connect, which wraps the TLS
//! session around a socket Herald cannot reach, so Nagle stays on there; STARTTLS (port 587)
//! does not have the stall.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        authentication::{Credentials, DEFAULT_MECHANISMS},
        client::{AsyncSmtpConnection, TlsParameters},
        commands::{Data, Mail, Rcpt},
        extension::{ClientId, Extension, MailBodyParameter, MailParameter},
        response::Response,
    },
};

use super::{SendError, error::ErrorClass, smtp::classify};
use crate::config::{SmtpSettings, SmtpTls};

/// An idle connection older than this is checked with a NOOP before a send: the server may
/// have closed it meanwhile, and a send on a dead connection would cost an attempt.
pub const CHECK_AFTER: Duration = Duration::from_secs(2);

/// An idle connection older than this is closed (servers drop idle clients after a few minutes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Open SMTP connections to one server, shared by every send of the process.
#[derive(Clone)]
pub struct SmtpPool {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    /// Bounds the TCP connect (`mail.connect_timeout`, shorter than the whole send's
    /// `mail.timeout`, which the caller bounds): a server that does not let Herald connect in
    /// time is unreachable, not an unknown outcome.
    connect_timeout: Duration,
    hello: ClientId,
    max_idle: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpPool({}:{})", self.inner.host, self.inner.port)
    }
}

impl SmtpPool {
    pub fn new(
        s: &SmtpSettings,
        connect_timeout: Duration,
        pool_size: u32,
    ) -> anyhow::Result<SmtpPool> {
        if matches!(
            s.tls,
            SmtpTls::Implicit | SmtpTls::StartTls | SmtpTls::Opportunistic
        ) {
            // Checked once here, so that a bad host name for TLS is a start-up error.
            TlsParameters::new(s.host.clone())
                .map_err(|e| anyhow::anyhow!("cannot set up TLS for SMTP host {}: {e}", s.host))?;
        }
        Ok(SmtpPool {
            inner: Arc::new(Inner {
                host: s.host.clone(),
                port: s.port,
                tls: s.tls,
                credentials: s
                    .credentials
                    .as_ref()
                    .map(|(user, pass)| Credentials::new(user.clone(), pass.expose().to_owned())),
                connect_timeout,
                hello: ClientId::default(),
                max_idle: pool_size.max(1) as usize,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends one message on a pooled connection (or a new one), and puts the connection back
    /// if the send ended well. Not cancel-safe in the middle of a message: the caller runs it in
    /// a task of its own (see [`super::smtp::send`]).
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        let mut conn = self.checkout().await?;
        match transaction(&mut conn, envelope, message).await {
            Ok(response) if !conn.has_broken() => {
                self.checkin(conn);
                Ok(response)
            }
            Ok(response) => {
                conn.abort().await;
                Ok(response)
            }
            Err(e) => {
                conn.abort().await;
                Err(e)
            }
        }
    }

    /// Opens a connection, says EHLO (and STARTTLS and AUTH as configured) and a NOOP: what
    /// `herald check` and a provider probe ask.
    pub async fn test_connection(&self) -> Result<(), SendError> {
        let mut conn = self.connect().await?;
        let alive = conn.test_connected().await;
        conn.abort().await;
        if alive {
            Ok(())
        } else {
            Err(SendError::new(
                ErrorClass::Transient,
                None,
                "the SMTP server did not accept a NOOP".to_owned(),
            ))
        }
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let Some((mut conn, since)) = self.inner.idle.lock().expect("not poisoned").pop()
            else {
                return self.connect().await;
            };
            let idle = since.elapsed();
            if idle > IDLE_TIMEOUT {
                conn.abort().await;
                continue;
            }
            if idle <= CHECK_AFTER || conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.inner.idle.lock().expect("not poisoned");
        if idle.len() < self.inner.max_idle {
            idle.push((conn, Instant::now()));
        }
        // Beyond the pool's size the connection is dropped, which closes it.
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let i = &self.inner;
        let tls = || TlsParameters::new(i.host.clone()).map_err(|e| classify(&e));
        let mut conn = if i.tls == SmtpTls::Implicit {
            AsyncSmtpConnection::connect_tokio1(
                (i.host.as_str(), i.port),
                Some(i.connect_timeout),
                &i.hello,
                Some(tls()?),
                None,
            )
            .await
            .map_err(|e| classify(&e))?
        } else {
            let tcp = tokio::time::timeout(
                i.connect_timeout,
                tokio::net::TcpStream::connect((i.host.as_str(), i.port)),
            )
            .await
            .map_err(|_| {
                let within = humantime::format_duration(i.connect_timeout);
                unreachable(
                    i,
                    format!("no connection within {within} (mail.connect_timeout)"),
                )
            })?
            .map_err(|e| unreachable(i, e.to_string()))?;
            tcp.set_nodelay(true)
                .map_err(|e| unreachable(i, format!("cannot set TCP_NODELAY: {e}")))?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &i.hello)
                .await
                .map_err(|e| classify(&e))?;
            match i.tls {
                SmtpTls::StartTls if !conn.can_starttls() => {
                    conn.abort().await;
                    return Err(SendError::new(
                        ErrorClass::Configuration,
                        None,
                        format!(
                            "the SMTP server {}:{} does not offer STARTTLS, which SMTP_URL asks for \
                             (tls=starttls); use tls=opportunistic, or tls=none for a local catcher",
                            i.host, i.port
                        ),
                    ));
                }
                SmtpTls::StartTls | SmtpTls::Opportunistic if conn.can_starttls() => conn
                    .starttls(tls()?, &i.hello)
                    .await
                    .map_err(|e| classify(&e))?,
                _ => {}
            }
            conn
        };
        if let Some(credentials) = &i.credentials
            && let Err(e) = conn.auth(DEFAULT_MECHANISMS, credentials).await
        {
            conn.abort().await;
            return Err(classify(&e));
        }
        Ok(conn)
    }
}

/// A connection that could not be opened: transient, and the server counts as unreachable
/// (which opens its circuit), as with lettre's own connection errors.
fn unreachable(i: &Inner, why: String) -> SendError {
    SendError::new(
        ErrorClass::Transient,
        None,
        format!(
            "connection error: cannot connect to the SMTP server at {}:{}: {why} (is it running, and is SMTP_URL right?)",
            i.host, i.port
        ),
    )
    .unreachable()
}

/// One mail transaction on `conn`: MAIL FROM, RCPT TO, DATA, then the message, as lettre's
/// `AsyncSmtpConnection::send` does it, but knowing when the whole message has been written.
/// From then on the server may have taken it: a reset, a connection closed or an incomplete or
/// garbled reply after the final `.` is [`ErrorClass::Unknown`] (retried on this server only,
/// with the same Message-ID, never failed over), while the same failure before it is transient.
/// A reply with a code is the server's word either way and is classified by it.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Response, SendError> {
    let mut options = Vec::new();
    let mut addresses = envelope.from().into_iter().chain(envelope.to());
    if addresses.any(|a| !AsRef::<str>::as_ref(a).is_ascii()) {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(not_offered("an address that is not ASCII", "SMTPUTF8"));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(not_offered("a message that is not ASCII", "8BITMIME"));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let before = |e: lettre::transport::smtp::Error| classify(&e);
    conn.command(Mail::new(envelope.from().cloned(), options))
        .await
        .map_err(before)?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(before)?;
    }
    conn.command(Data).await.map_err(before)?;
    // lettre writes each part, asks for the next, then writes the final `.` and reads the reply:
    // the iterator's end is the moment the whole body has been written.
    let written = AtomicBool::new(false);
    let body = std::iter::once(message).chain(std::iter::from_fn(|| {
        written.store(true, Ordering::Relaxed);
        None
    }));
    conn.message_iter(body).await.map_err(|e| {
        let error = classify(&e);
        if written.load(Ordering::Relaxed) && e.status().is_none() && !e.is_timeout() {
            after_the_body(error)
        } else {
            error
        }
    })
}

/// A failure without a reply after the whole message was written: the outcome is unknown.
fn after_the_body(error: SendError) -> SendError {
    SendError::new(
        ErrorClass::Unknown,
        None,
        format!(
            "{} (after the whole message was written: the SMTP server may have taken it, so it \
             is retried on this server only, with the same Message-ID)",
            error.message
        ),
    )
}

/// A message the server cannot take for want of an extension: transient, so that a later
/// provider may send it.
fn not_offered(what: &str, extension: &str) -> SendError {
    SendError::new(
        ErrorClass::Transient,
        None,
        format!(
            "the email has {what}, and the SMTP server does not offer {extension}; \
             use a server that offers it, or a later provider in mail.providers"
        ),
    )
}
