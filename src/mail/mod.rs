//! The providers (Resend's API, SMTP, a folder of `.eml` files, the discarding `null`) and one
//! error taxonomy for all of them. A provider sends and classifies; the worker decides and records.
//!
//! - [`error`]: the classes (permanent, transient, rate limited, quota, configuration) and the
//!   pure mapping of each provider's answers into them.
//! - [`resend`]: Resend's HTTP API on reqwest, single and batch.
//! - [`smtp`]: one SMTP send, the MIME message, lettre's errors.
//! - [`smtp_pool`]: SMTP connections kept open between sends, with Nagle off.
//! - [`null`]: marks emails sent without sending them, for benchmarks.

pub mod error;
pub mod null;
pub mod resend;
pub mod smtp;
pub mod smtp_pool;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use sha2::{Digest, Sha256};

pub use error::{ErrorClass, SendError};

use crate::{
    config::{MailSettings, ProviderSettings},
    domain::Mailbox,
    render::Rendered,
};

/// One email ready to go.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub message_id: &'a str,
    /// The delivery's dedup key: the `X-Herald-Delivery` header, and Resend's idempotency key,
    /// the same on every attempt.
    pub delivery_key: &'a str,
    pub content: &'a Rendered,
    /// `List-Unsubscribe`'s value (`<https://…/unsubscribe/…>`), sent with
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; `None` without `http.public_url`.
    pub list_unsubscribe: Option<&'a str>,
}

/// Who an email is from, and where its replies go.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Signs every message [`smtp::build_message`] builds (SMTP and `.eml`); Resend signs its own.
    pub dkim: Option<crate::dkim::DkimSigner>,
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The answer's code (SMTP reply code or HTTP status).
    pub code: Option<u16>,
    /// The provider's id for the email (Resend's), stored on the delivery.
    pub provider_id: Option<String>,
}

/// How a provider sends.
#[derive(Clone)]
pub enum Channel {
    Resend(resend::Resend),
    Smtp(smtp_pool::SmtpPool),
    /// Writes each email to `<delivery id>.eml` in this folder.
    File(PathBuf),
    /// Sends nothing: see [`null`].
    Null,
}

/// One configured provider.
#[derive(Clone)]
pub struct Provider {
    pub channel: Channel,
    sender: Sender,
    /// Emails per request; 1 for providers without batches.
    pub batch_size: usize,
    /// Requests per second across every Herald process; 0 means no limit.
    pub per_second: u32,
    /// Identifies the credentials, so that a configuration pause set by a process with a wrong
    /// key does not stop a process started with the right one.
    pub fingerprint: String,
    /// The `file` provider's folder.
    outbox: Option<PathBuf>,
    /// SMTP: how long one send may take, from taking a pooled connection to the server's answer
    /// to the message (`mail.timeout`).
    smtp_timeout: Duration,
    /// Requests in flight from this process at once: `mail.pool_size`. The SMTP pool only caps
    /// the idle connections it keeps, and opens a new one for every send beyond them; without
    /// this bound a burst would open a connection per email. A send waits here before its
    /// `mail.timeout` starts.
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.name())
    }
}

impl Provider {
    pub fn build(p: &ProviderSettings, mail: &MailSettings) -> anyhow::Result<Provider> {
        let sender = Sender {
            from: mail.from.clone(),
            reply_to: mail.reply_to.clone(),
            dkim: mail.dkim.clone(),
        };
        let (channel, batch_size, per_second, secret) = match p {
            ProviderSettings::Resend(r) => (
                Channel::Resend(resend::Resend::new(r, &sender, mail.connect_timeout)?),
                r.batch_size,
                r.requests_per_second,
                format!("{}|{}", r.base_url, r.api_key.expose()),
            ),
            ProviderSettings::Smtp(s) => (
                Channel::Smtp(smtp_pool::SmtpPool::new(
                    s,
                    mail.connect_timeout,
                    mail.pool_size,
                )?),
                1,
                s.messages_per_second,
                format!(
                    "{}:{}|{:?}|{:?}",
                    s.host,
                    s.port,
                    s.tls,
                    s.credentials
                        .as_ref()
                        .map(|(user, pass)| (user, pass.expose()))
                ),
            ),
            ProviderSettings::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the outbox folder {} (mail.outbox_dir): {e}",
                        dir.display()
                    )
                })?;
                (Channel::File(dir.clone()), 1, 0, dir.display().to_string())
            }
            ProviderSettings::Null => (Channel::Null, 1, 0, null::NAME.to_owned()),
        };
        let digest = Sha256::digest(secret.as_bytes());
        let fingerprint = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Provider {
            channel,
            sender,
            batch_size,
            per_second,
            fingerprint,
            outbox: match p {
                ProviderSettings::File(dir) => Some(dir.clone()),
                _ => None,
            },
            smtp_timeout: mail.timeout,
            slots: Arc::new(tokio::sync::Semaphore::new(mail.pool_size.max(1) as usize)),
        })
    }

    /// Every configured provider, in the order to try them.
    pub fn build_all(mail: &MailSettings) -> anyhow::Result<Vec<Provider>> {
        mail.providers
            .iter()
            .map(|p| Provider::build(p, mail))
            .collect()
    }

    /// The name recorded on deliveries and attempts.
    pub fn name(&self) -> &'static str {
        match self.channel {
            Channel::Resend(_) => "resend",
            Channel::Smtp(_) => "smtp",
            Channel::File(_) => "file",
            Channel::Null => null::NAME,
        }
    }

    /// The folder the `file` provider writes to; `None` for a provider that sends.
    pub fn outbox(&self) -> Option<&Path> {
        self.outbox.as_deref()
    }

    /// Whether this is the `null` provider, which sends nothing (benchmarks and tests only).
    pub fn discards(&self) -> bool {
        matches!(self.channel, Channel::Null)
    }

    /// Checks that the provider answers (used by `herald check`).
    pub async fn test_connection(&self) -> anyhow::Result<()> {
        match &self.channel {
            Channel::Resend(r) => r.test_connection().await,
            Channel::Smtp(t) => Ok(t.test_connection().await?),
            Channel::File(_) | Channel::Null => Ok(()),
        }
    }

    pub async fn send(&self, email: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        match &self.channel {
            Channel::Resend(r) => r.send(email).await,
            Channel::Smtp(t) => smtp::send(t, &self.sender, email, self.smtp_timeout).await,
            Channel::File(dir) => {
                let message = smtp::build_message(&self.sender, email)?;
                match write_eml(dir, email.message_id, &message.formatted()).await {
                    Ok(_) => Ok(Receipt {
                        code: None,
                        provider_id: None,
                    }),
                    Err(e) => Err(SendError::new(
                        ErrorClass::Transient,
                        None,
                        format!("cannot write to the outbox folder: {e}"),
                    )),
                }
            }
            Channel::Null => Ok(null::discard(email)),
        }
    }

    /// Sends several emails in one request where the provider has batches (Resend), with this
    /// idempotency key. `Err` is a failure of the whole request.
    pub async fn send_batch(
        &self,
        emails: &[Outgoing<'_>],
        idempotency_key: &str,
    ) -> Result<Vec<Result<Receipt, SendError>>, SendError> {
        match &self.channel {
            Channel::Resend(r) => {
                let _slot = self.slots.acquire().await.expect("never closed");
                r.send_batch(emails, idempotency_key).await
            }
            _ => {
                let mut out = Vec::with_capacity(emails.len());
                for e in emails {
                    out.push(self.send(e).await);
                }
                Ok(out)
            }
        }
    }
}

/// How long the SMTP client waits for one command; also bounds a probe.
pub fn send_timeout(mail: &MailSettings) -> Duration {
    mail.providers
        .iter()
        .map(|p| match p {
            ProviderSettings::Resend(r) => r.timeout,
            _ => mail.timeout,
        })
        .max()
        .unwrap_or(mail.timeout)
}

/// The outbox file of an email: `<delivery id>.eml`, the id read from the Message-ID Herald gives
/// it (`<42.…@host>`), so `outbox/42.eml` is delivery 42 of the dashboard and the API. A
/// Message-ID of another form is used whole, with characters unsafe in a file name replaced.
pub fn outbox_file_name(message_id: &str) -> String {
    let id = message_id.trim_start_matches('<').trim_end_matches('>');
    let stem = match id.split_once('.') {
        Some((n, _)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.to_owned(),
        _ => id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    };
    format!("{stem}.eml")
}

/// Writes the message whole or not at all: to a hidden file, then renamed over its name (a retry
/// of the same delivery replaces its earlier copy).
async fn write_eml(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let name = outbox_file_name(message_id);
    let part = dir.join(format!(".{name}.part"));
    tokio::fs::write(&part, bytes).await?;
    tokio::fs::rename(&part, dir.join(name)).await
}
