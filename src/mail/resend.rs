//! Resend's HTTP API (`POST /emails`, `POST /emails/batch`), written by hand on reqwest.
//!
//! Why not a crate: Herald's decisions need what a client crate hides or decides for itself.
//! The `retry-after` and `ratelimit-reset` headers set how long every worker pauses, the error
//! body's `name` (`rate_limit_exceeded` vs `daily_quota_exceeded`, `invalid_api_key`) picks the
//! error class, the `Idempotency-Key` must be the delivery's dedup key on every attempt, and a
//! permissive batch answers per item. The resend-rs crate retries rate limits on its own and
//! limits per process, where the limit is per team; the rate limit lives in the gate,
//! a layer above the providers.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use chrono::Utc;
use reqwest::{StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    Outgoing, Receipt,
    error::{ErrorClass, SendError, classify_resend, parse_seconds},
};
use crate::{
    config::{ResendSettings, Secret},
    domain::Mailbox,
};

/// A Resend client for one API key and sender.
#[derive(Clone)]
pub struct Resend {
    http: reqwest::Client,
    emails_url: String,
    batch_url: String,
    domains_url: String,
    api_key: Secret,
    from: String,
    reply_to: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Resend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resend({})", self.emails_url)
    }
}

/// One email as Resend takes it.
#[derive(Debug, Serialize)]
struct EmailBody<'a> {
    from: &'a str,
    to: [String; 1],
    subject: &'a str,
    html: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    headers: BTreeMap<&'static str, &'a str>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    data: Vec<Created>,
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Debug, Deserialize)]
struct ItemError {
    index: usize,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
}

impl Resend {
    /// `connect_timeout` (`mail.connect_timeout`) bounds the TCP and TLS connect: a Resend that
    /// cannot be reached in it did not take the request (transient, unreachable), where a
    /// request that used up the whole `timeout` may have been taken (unknown).
    pub fn new(
        s: &ResendSettings,
        sender: &super::Sender,
        connect_timeout: Duration,
    ) -> anyhow::Result<Resend> {
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client for Resend")?;
        let base = s.base_url.as_str().trim_end_matches('/');
        Ok(Resend {
            http,
            emails_url: format!("{base}/emails"),
            batch_url: format!("{base}/emails/batch"),
            domains_url: format!("{base}/domains"),
            api_key: s.api_key.clone(),
            from: sender.from.to_string(),
            reply_to: sender.reply_to.as_ref().map(ToString::to_string),
            timeout: s.timeout,
        })
    }

    /// `POST /emails` with `Idempotency-Key` = the delivery's dedup key.
    pub async fn send(&self, email: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let body = self.body(email)?;
        let (status, created): (_, Created) = self
            .post(&self.emails_url, email.delivery_key, &[], &body, "an email")
            .await?;
        Ok(Receipt {
            code: Some(status.as_u16()),
            provider_id: Some(created.id),
        })
    }

    /// POSTs JSON with the idempotency key and reads the answer: a non-2xx answer becomes the
    /// classified error, an unreadable 2xx body a transient one.
    async fn post<B: Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        idempotency_key: &str,
        headers: &[(&str, &str)],
        body: &B,
        what: &str,
    ) -> Result<(StatusCode, R), SendError> {
        let mut request = self
            .http
            .post(url)
            .bearer_auth(self.api_key.expose())
            .header("Idempotency-Key", idempotency_key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .json(body)
            .send()
            .await
            .map_err(|e| self.network_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_answer(response).await);
        }
        // A 2xx answer means Resend took the request: an unreadable one is an unknown outcome,
        // retried with the same key (Resend then replays its answer).
        let answer = response.json().await.map_err(|e| {
            SendError::new(
                ErrorClass::Unknown,
                Some(status.as_u16()),
                format!("Resend answered {status} to {what} with a body Herald cannot read: {e}"),
            )
        })?;
        Ok((status, answer))
    }

    /// `POST /emails/batch` in permissive mode: one result per email, in order. An invalid
    /// recipient fails only its own item; an error for the whole request is returned as `Err`.
    pub async fn send_batch(
        &self,
        emails: &[Outgoing<'_>],
        idempotency_key: &str,
    ) -> Result<Vec<Result<Receipt, SendError>>, SendError> {
        // Emails Herald already knows are invalid stay out of the request.
        let mut results: Vec<Option<Result<Receipt, SendError>>> = vec![None; emails.len()];
        let mut bodies = Vec::new();
        let mut positions = Vec::new();
        for (i, email) in emails.iter().enumerate() {
            match self.body(email) {
                Ok(b) => {
                    bodies.push(b);
                    positions.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !bodies.is_empty() {
            let (status, answer): (_, BatchAnswer) = self
                .post(
                    &self.batch_url,
                    idempotency_key,
                    &[("x-batch-validation", "permissive")],
                    &bodies,
                    "a batch",
                )
                .await?;
            let items = map_batch(answer, bodies.len(), status)?;
            for (item, i) in items.into_iter().zip(positions) {
                results[i] = Some(item);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every email has a result"))
            .collect())
    }

    /// Checks that Resend answers and takes the key (for `herald check`). A sending-only key
    /// cannot list domains; Resend then says `restricted_api_key`, which is fine for Herald.
    pub async fn test_connection(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .get(&self.domains_url)
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", self.network_error(&e)))?;
        if response.status().is_success() {
            return Ok(());
        }
        let e = error_answer(response).await;
        if e.message.contains("restricted_api_key") {
            return Ok(());
        }
        Err(anyhow::anyhow!("{}", e.message))
    }

    fn body<'a>(&'a self, email: &'a Outgoing<'a>) -> Result<EmailBody<'a>, SendError> {
        Mailbox::parse(email.to)
            .map_err(|e| SendError::permanent(format!("invalid recipient: {e}")))?;
        Ok(EmailBody {
            from: &self.from,
            to: [to_header(email.to, email.content.to_name.as_deref())],
            subject: &email.content.subject,
            html: &email.content.html,
            text: &email.content.text,
            reply_to: self.reply_to.as_deref(),
            headers: {
                let mut headers = BTreeMap::from([
                    ("X-Herald-Delivery", email.delivery_key),
                    ("Auto-Submitted", "auto-generated"),
                ]);
                if let Some(value) = email.list_unsubscribe {
                    headers.insert("List-Unsubscribe", value);
                    headers.insert("List-Unsubscribe-Post", crate::unsubscribe::ONE_CLICK);
                }
                headers
            },
        })
    }

    fn network_error(&self, e: &reqwest::Error) -> SendError {
        let mut message = format!("cannot reach Resend: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_connect() {
            // No connection (refused, or not open within mail.connect_timeout: a connect timeout
            // is a connect error too): the request never left Herald, so another provider may
            // take it.
            message.push_str(" (is mail.resend.base_url right, and Resend reachable within mail.connect_timeout?)");
            SendError::new(ErrorClass::Transient, None, message).unreachable()
        } else if e.is_timeout() {
            message.push_str(&format!(
                " (no answer within {}: mail.resend.timeout; Resend may have taken it, so it is \
                 retried on Resend with the same idempotency key, never on another provider)",
                humantime::format_duration(self.timeout)
            ));
            SendError::new(ErrorClass::Unknown, None, message)
        } else {
            // The request may have reached Resend before the connection failed.
            message.push_str(
                " (the request may have reached Resend: retried there with the same idempotency key)",
            );
            SendError::new(ErrorClass::Unknown, None, message)
        }
    }
}

/// Gives each email of a permissive batch its result: `errors` name failed items by index and
/// `data` lists the created ids of the others, in order.
fn map_batch(
    answer: BatchAnswer,
    n: usize,
    status: StatusCode,
) -> Result<Vec<Result<Receipt, SendError>>, SendError> {
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    for e in answer.errors {
        failed.insert(e.index, e.message);
    }
    if answer.data.len() + failed.len() != n || failed.keys().any(|&i| i >= n) {
        return Err(SendError::new(
            ErrorClass::Unknown,
            Some(status.as_u16()),
            format!(
                "Resend answered a batch of {n} with {} ids and {} errors; Herald cannot tell which email is which (retried with the same idempotency key)",
                answer.data.len(),
                failed.len()
            ),
        ));
    }
    let mut ids = answer.data.into_iter();
    Ok((0..n)
        .map(|i| match failed.remove(&i) {
            Some(message) => Err(SendError::new(
                ErrorClass::Permanent,
                Some(422),
                format!("Resend refused this email of a batch: {message}"),
            )),
            None => Ok(Receipt {
                code: Some(status.as_u16()),
                provider_id: ids.next().map(|c| c.id),
            }),
        })
        .collect())
}

/// Reads a non-2xx answer: status, headers and the `{statusCode, name, message}` body.
async fn error_answer(response: reqwest::Response) -> SendError {
    let status = response.status().as_u16();
    let headers: HeaderMap = response.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let body = response.bytes().await.unwrap_or_default();
    read_error(
        status,
        header("retry-after"),
        header("ratelimit-reset"),
        &body,
        Utc::now(),
    )
}

/// Sorts an error answer from its parts: any header text and any body, JSON or not.
fn read_error(
    status: u16,
    retry_after: Option<&str>,
    ratelimit_reset: Option<&str>,
    body: &[u8],
    now: chrono::DateTime<Utc>,
) -> SendError {
    let body: ErrorBody = serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
        name: String::new(),
        message: String::from_utf8_lossy(body).chars().take(300).collect(),
    });
    classify_resend(
        status,
        &body.name,
        &body.message,
        retry_after.and_then(parse_seconds),
        ratelimit_reset.and_then(parse_seconds),
        now,
    )
}

/// A new batch's idempotency key. It is random, not derived from the members: it is written
/// with the batch's members before the request (`Store::start_batch`), and every retry of the
/// batch reads it back, so two different batches never share a key.
pub fn new_batch_key() -> String {
    format!("herald-batch-{}", uuid::Uuid::new_v4().simple())
}

/// `"Name" <address>` for Resend's `to`, the name quoted (quotes and backslashes escaped), or the
/// address alone without a name or when `to` already carries one.
fn to_header(to: &str, name: Option<&str>) -> String {
    match name {
        Some(name) if !to.contains('<') => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{to}>")
        }
        _ => to.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_are_new_each_time_and_fit_resend() {
        let (a, b) = (new_batch_key(), new_batch_key());
        assert_ne!(a, b);
        assert!(a.len() <= 256 && a.is_ascii());
    }

    #[test]
    fn permissive_batch_answers_map_back_by_index() {
        let answer: BatchAnswer = serde_json::from_str(
            r#"{"data": [{"id": "a"}, {"id": "c"}], "errors": [{"index": 1, "message": "Invalid `to` field"}]}"#,
        )
        .unwrap();
        let items = map_batch(answer, 3, StatusCode::OK).unwrap();
        assert_eq!(items[0].as_ref().unwrap().provider_id.as_deref(), Some("a"));
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(e.message.contains("Invalid `to` field"));
        assert_eq!(items[2].as_ref().unwrap().provider_id.as_deref(), Some("c"));

        let short: BatchAnswer = serde_json::from_str(r#"{"data": [{"id": "a"}]}"#).unwrap();
        assert_eq!(
            map_batch(short, 2, StatusCode::OK).unwrap_err().class,
            ErrorClass::Unknown
        );
    }

    #[test]
    fn error_answers_are_read_from_json_or_text() {
        let now = Utc::now();
        let e = read_error(
            429,
            Some("1e30"),
            None,
            br#"{"statusCode": 429, "name": "rate_limit_exceeded", "message": "slow"}"#,
            now,
        );
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(e.wait, Some(crate::mail::error::MAX_WAIT));
        let e = read_error(502, None, None, b"<html>Bad gateway</html>", now);
        assert_eq!(e.class, ErrorClass::Unknown);
        assert!(e.message.contains("Bad gateway"), "{}", e.message);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// A JSON value of a few levels, with the keys Resend's answers use.
        fn json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<u64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                ".{0,20}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("name".to_owned()),
                            Just("message".to_owned()),
                            Just("statusCode".to_owned()),
                            Just("data".to_owned()),
                            Just("errors".to_owned()),
                            Just("index".to_owned()),
                            Just("id".to_owned()),
                            ".{0,8}",
                        ],
                        inner,
                        0..6,
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

            #[test]
            fn any_error_body_and_headers_are_read(
                status in any::<u16>(),
                retry_after in proptest::option::of(".{0,30}"),
                reset in proptest::option::of("[0-9eE.+-]{0,30}"),
                body in prop::collection::vec(any::<u8>(), 0..400),
            ) {
                let e = read_error(status, retry_after.as_deref(), reset.as_deref(), &body, Utc::now());
                prop_assert_eq!(e.code, Some(status));
                prop_assert!(e.wait.is_none_or(|w| w <= crate::mail::error::MAX_WAIT));
            }

            #[test]
            fn any_json_error_body_is_read(status in 400u16..600, body in json()) {
                let bytes = serde_json::to_vec(&body).unwrap();
                let e = read_error(status, None, None, &bytes, Utc::now());
                prop_assert_eq!(e.code, Some(status));
            }

            #[test]
            fn any_batch_answer_maps_or_is_refused(body in json(), n in 0usize..8) {
                if let Ok(answer) = serde_json::from_value::<BatchAnswer>(body)
                    && let Ok(items) = map_batch(answer, n, StatusCode::OK)
                {
                    prop_assert_eq!(items.len(), n);
                }
            }
        }
    }
}
