//! The transports (SMTP through lettre's pooled client, a folder of `.eml` files) and the
//! classification of their errors. A transport sends and classifies; the worker decides.

use std::time::Duration;

use anyhow::Context;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::MultiPart,
    transport::smtp::{PoolConfig, authentication::Credentials},
};

use crate::{
    config::{MailSettings, SmtpTls, TransportSettings},
    domain::Mailbox,
    render::Rendered,
};

/// How a failed send should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Might work later: connection refused or reset, timeout, SMTP 4xx. Retried with backoff.
    Transient,
    /// Will not work as it is: SMTP 5xx, an invalid address. Failed at once.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// A send that did not go through.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub class: ErrorClass,
    /// The server's status code, when it answered with one.
    pub code: Option<u16>,
    pub message: String,
}

impl SendError {
    fn permanent(message: String) -> Self {
        SendError {
            class: ErrorClass::Permanent,
            code: None,
            message,
        }
    }
}

/// One email ready to go.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub message_id: &'a str,
    /// Identifies the delivery at the inbox: lets a duplicate be recognised.
    pub delivery_key: &'a str,
    pub content: &'a Rendered,
}

/// The transport configured for this process.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// What a successful send returns: the provider's name and its answer code.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub code: Option<u16>,
}

#[derive(Clone)]
pub struct Transport {
    mailer: Mailer,
    from: Mailbox,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({})", self.provider())
    }
}

impl Transport {
    pub fn build(settings: &MailSettings) -> anyhow::Result<Transport> {
        let mailer = match &settings.transport {
            TransportSettings::File(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!(
                        "cannot create the outbox folder {} (mail.outbox_dir)",
                        dir.display()
                    )
                })?;
                Mailer::File(AsyncFileTransport::new(dir))
            }
            TransportSettings::Smtp(s) => {
                type Smtp = AsyncSmtpTransport<Tokio1Executor>;
                let builder = match s.tls {
                    SmtpTls::Implicit => Smtp::relay(&s.host),
                    SmtpTls::StartTls => Smtp::starttls_relay(&s.host),
                    SmtpTls::Opportunistic => {
                        let params =
                            lettre::transport::smtp::client::TlsParameters::new(s.host.clone())?;
                        Ok(Smtp::builder_dangerous(&s.host)
                            .tls(lettre::transport::smtp::client::Tls::Opportunistic(params)))
                    }
                    SmtpTls::None => Ok(Smtp::builder_dangerous(&s.host)),
                }
                .with_context(|| format!("cannot set up TLS for SMTP host {}", s.host))?;
                let mut builder = builder
                    .port(s.port)
                    .timeout(Some(settings.timeout))
                    .pool_config(
                        PoolConfig::new()
                            .max_size(settings.pool_size)
                            .idle_timeout(Duration::from_secs(60)),
                    );
                if let Some((user, pass)) = &s.credentials {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
                }
                Mailer::Smtp(builder.build())
            }
        };
        Ok(Transport {
            mailer,
            from: settings.from.clone(),
        })
    }

    /// The name recorded on deliveries and attempts.
    pub fn provider(&self) -> &'static str {
        match self.mailer {
            Mailer::Smtp(_) => "smtp",
            Mailer::File(_) => "file",
        }
    }

    /// Opens a connection to check the server answers (used by `herald check`).
    pub async fn test_connection(&self) -> anyhow::Result<()> {
        match &self.mailer {
            Mailer::Smtp(t) => {
                anyhow::ensure!(
                    t.test_connection().await?,
                    "the SMTP server did not accept a NOOP"
                );
                Ok(())
            }
            Mailer::File(_) => Ok(()),
        }
    }

    pub async fn send(&self, email: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let message = self.build_message(email)?;
        match &self.mailer {
            Mailer::Smtp(t) => match t.send(message).await {
                Ok(response) => Ok(Receipt {
                    code: Some(u16::from(response.code())),
                }),
                Err(e) => Err(classify_smtp(&e)),
            },
            Mailer::File(t) => match t.send(message).await {
                Ok(_) => Ok(Receipt { code: None }),
                Err(e) => Err(SendError {
                    class: ErrorClass::Transient,
                    code: None,
                    message: format!("cannot write to the outbox folder: {e}"),
                }),
            },
        }
    }

    fn build_message(&self, email: &Outgoing<'_>) -> Result<Message, SendError> {
        let from = lettre_mailbox(&self.from).map_err(SendError::permanent)?;
        let to = Mailbox::parse(email.to)
            .and_then(|m| lettre_mailbox(&m))
            .map_err(|e| SendError::permanent(format!("invalid recipient: {e}")))?;
        Message::builder()
            .from(from)
            .to(to)
            .subject(email.content.subject.clone())
            .date_now()
            .message_id(Some(email.message_id.to_owned()))
            .header(DeliveryHeader(email.delivery_key.to_owned()))
            .multipart(MultiPart::alternative_plain_html(
                email.content.text.clone(),
                email.content.html.clone(),
            ))
            .map_err(|e| SendError::permanent(format!("cannot build the message: {e}")))
    }
}

fn lettre_mailbox(m: &Mailbox) -> Result<lettre::message::Mailbox, String> {
    let address = m
        .address
        .parse()
        .map_err(|e| format!("{:?}: {e}", m.address))?;
    Ok(lettre::message::Mailbox::new(m.name.clone(), address))
}

/// Sorts a lettre SMTP error into the taxonomy: a 5xx answer is permanent; a 4xx answer, a
/// refused or dropped connection, a timeout and a TLS failure are transient.
pub fn classify_smtp(e: &lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(u16::from);
    let class = if e.is_permanent() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    };
    let hint = if e.is_tls() {
        " (a TLS problem: for a local catcher without TLS use smtp://host:port?tls=none)"
    } else if e.is_timeout() {
        " (the SMTP server did not answer in time: mail.timeout)"
    } else {
        ""
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    SendError {
        class,
        code,
        message: format!("{message}{hint}"),
    }
}

/// `X-Herald-Delivery: <dedup key>`.
#[derive(Debug, Clone)]
struct DeliveryHeader(String);

impl lettre::message::header::Header for DeliveryHeader {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Herald-Delivery")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(DeliveryHeader(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}
