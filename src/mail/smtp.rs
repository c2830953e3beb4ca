//! SMTP sends through Herald's pool of lettre connections ([`super::smtp_pool`]), the MIME
//! message (also what the `.eml` folder holds), and the sorting of lettre's errors into the
//! taxonomy.

use std::time::Duration;

use lettre::{Message, message::MultiPart};

use super::{
    Outgoing, Receipt, Sender,
    error::{ErrorClass, SendError, classify_smtp_reply},
    smtp_pool::SmtpPool,
};
use crate::domain::Mailbox;

/// Sends one message, waiting at most `timeout` for the server's answer.
///
/// The SMTP transaction runs in a task of its own, so that it always runs to its end even when
/// the worker that asked for it is cancelled (apalis drops a worker's tasks when it restarts the
/// worker after a Redis outage). A connection dropped in the middle of `DATA` and used again
/// would wait for ever for an answer the server will not give (lettre's client bounds only the
/// connect); a lifecycle test caught exactly that with lettre's own pool. When the answer is late, the
/// worker stops waiting and the outcome is `unknown` (the server may have taken the message),
/// while the transaction itself finishes, or fails, on its own.
pub async fn send(
    t: &SmtpPool,
    sender: &Sender,
    email: &Outgoing<'_>,
    timeout: Duration,
) -> Result<Receipt, SendError> {
    let message = build_message(sender, email)?;
    let envelope = message.envelope().clone();
    let bytes = message.formatted();
    let pool = t.clone();
    let transaction = tokio::spawn(async move { pool.send(&envelope, &bytes).await });
    match tokio::time::timeout(timeout, transaction).await {
        Ok(Ok(Ok(response))) => Ok(Receipt {
            code: Some(u16::from(response.code())),
            provider_id: None,
        }),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(SendError::new(
            ErrorClass::Unknown,
            None,
            format!(
                "the SMTP client stopped in the middle of a send ({e}); the message may have been delivered"
            ),
        )),
        Err(_) => Err(SendError::new(
            ErrorClass::Unknown,
            None,
            format!(
                "no answer from the SMTP server within {} (mail.timeout); the message may have been delivered, so it is retried on SMTP only",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

/// The MIME message: From, To (with the recipient's display name), Reply-To when configured, Subject, Date, Message-ID,
/// `Auto-Submitted: auto-generated` (RFC 3834: no vacation replies to Herald),
/// `X-Herald-Delivery: <dedup key>`, the one-click unsubscribe headers when the email has a
/// link, and a multipart/alternative body with the text part first; signed with DKIM when
/// `mail.dkim` is set (`DKIM-Signature` is the last header).
pub fn build_message(sender: &Sender, email: &Outgoing<'_>) -> Result<Message, SendError> {
    let from = lettre_mailbox(&sender.from).map_err(SendError::permanent)?;
    let to = Mailbox::parse(email.to)
        .map(|m| Mailbox {
            name: m.name.or_else(|| email.content.to_name.clone()),
            ..m
        })
        .and_then(|m| lettre_mailbox(&m))
        .map_err(|e| SendError::permanent(format!("invalid recipient: {e}")))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.content.subject.clone())
        .date_now()
        .message_id(Some(email.message_id.to_owned()))
        .header(AutoSubmitted)
        .header(DeliveryHeader(email.delivery_key.to_owned()));
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(lettre_mailbox(reply_to).map_err(SendError::permanent)?);
    }
    if let Some(value) = email.list_unsubscribe {
        builder = builder
            .header(ListUnsubscribe(value.to_owned()))
            .header(ListUnsubscribePost);
    }
    let body =
        MultiPart::alternative_plain_html(email.content.text.clone(), email.content.html.clone());
    let cannot =
        |e: &dyn std::fmt::Display| SendError::permanent(format!("cannot build the message: {e}"));
    let Some(dkim) = &sender.dkim else {
        return builder.multipart(body).map_err(|e| cannot(&e));
    };
    let mut message = with_own_content_type(builder, &body).map_err(|e| cannot(&e))?;
    dkim.sign(&mut message);
    Ok(message)
}

/// The message with the multipart body as written bytes, its `Content-Type` a header of the
/// message itself. lettre writes a multipart's `Content-Type` with the body, so its signer, which
/// signs the message's headers only, would list `content-type` in `h=` without having signed
/// it, and every receiver would fail the signature. The body is the same bytes either way, with
/// `Content-Transfer-Encoding: 7bit`, which RFC 2045 allows on a multipart.
fn with_own_content_type(
    builder: lettre::message::MessageBuilder,
    body: &MultiPart,
) -> Result<Message, String> {
    use lettre::message::{
        Body,
        header::{ContentTransferEncoding, ContentType, MIME_VERSION_1_0},
    };
    let content_type = body
        .headers()
        .get_raw("Content-Type")
        .ok_or("the multipart has no Content-Type")?;
    let content_type = ContentType::parse(content_type).map_err(|e| e.to_string())?;
    let written = String::from_utf8(body.formatted()).map_err(|e| e.to_string())?;
    let (_, bytes) = written
        .split_once("\r\n\r\n")
        .ok_or("the multipart has no body")?;
    // lettre encodes each part for a server without 8BITMIME (7bit, quoted-printable or base64:
    // ASCII lines of at most 76 characters), which is what 7bit means for the whole (RFC 5322:
    // ASCII, lines of at most 998). lettre's own check wants lines under 76, which a full
    // quoted-printable line is not, hence the check here.
    if !bytes.is_ascii() || bytes.split("\r\n").any(|line| line.len() > 998) {
        return Err("the multipart is not 7bit".into());
    }
    let bytes =
        Body::dangerous_pre_encoded(bytes.as_bytes().to_vec(), ContentTransferEncoding::SevenBit);
    builder
        .header(MIME_VERSION_1_0)
        .header(content_type)
        .body(bytes)
        .map_err(|e| e.to_string())
}

fn lettre_mailbox(m: &Mailbox) -> Result<lettre::message::Mailbox, String> {
    let address = m
        .address
        .parse()
        .map_err(|e| format!("{:?}: {e}", m.address))?;
    Ok(lettre::message::Mailbox::new(m.name.clone(), address))
}

/// Sorts a lettre SMTP error into the taxonomy. A reply code decides when there is one (see
/// [`classify_smtp_reply`]); a TLS failure is configuration (retrying will not fix a wrong `tls=`
/// or certificate); a connection that could not be opened (refused, or not open within
/// `mail.connect_timeout`) is transient and marks the server unreachable, which opens its
/// circuit; another timeout without a reply code is unknown.
pub fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(u16::from);
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // lettre's Display already appends its direct source.
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    let lower = message.to_ascii_lowercase();
    let (class, hint, unreachable) = if let Some(c) = code {
        let class = classify_smtp_reply(c, &message);
        let hint = match (class, c) {
            (ErrorClass::Configuration, 530 | 534 | 535 | 538) => {
                " (check the user and password in SMTP_URL)"
            }
            (ErrorClass::Configuration, _) => {
                " (the server refuses Herald's sender: check MAIL_FROM and the account)"
            }
            _ => "",
        };
        (class, hint, false)
    } else if e.is_tls() {
        (
            ErrorClass::Configuration,
            " (a TLS problem: for a local catcher without TLS use smtp://host:port?tls=none)",
            false,
        )
    } else if lower.starts_with("connection error") {
        // lettre's connection errors come only from opening the connection, before anything was
        // sent; its connect timeout is one of them (and also a timeout, hence before that test).
        (
            ErrorClass::Transient,
            " (cannot connect to the SMTP server within mail.connect_timeout: is it running, and \
             is SMTP_URL right?)",
            true,
        )
    } else if e.is_timeout() {
        // lettre does not say which command timed out: after DATA the server may have taken the
        // message. Retried on this server only, with the same Message-ID.
        (
            ErrorClass::Unknown,
            " (the SMTP server did not answer in time: mail.timeout; it may have taken the \
             message, so a retry on this server may deliver a copy with the same Message-ID)",
            false,
        )
    } else if e.is_client() && (lower.contains("authentication") || lower.contains("mechanism")) {
        (
            ErrorClass::Configuration,
            " (check the user and password in SMTP_URL)",
            false,
        )
    } else {
        (ErrorClass::Transient, "", false)
    };
    let error = SendError::new(class, code, format!("{message}{hint}"));
    if unreachable {
        error.unreachable()
    } else {
        error
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834).
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `List-Unsubscribe: <https://…>[, <mailto:…>]` (RFC 2369).
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl lettre::message::header::Header for ListUnsubscribe {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl lettre::message::header::Header for ListUnsubscribePost {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(
            Self::name(),
            crate::unsubscribe::ONE_CLICK.to_owned(),
        )
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
