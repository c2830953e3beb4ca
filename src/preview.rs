//! Previews: the email a user would get from a kind at an instant, with their real data,
//! rendered as a worker renders it (subject, text, HTML, the unsubscribe link) and built into the
//! message an SMTP server would receive (its headers, and the whole as `.eml`), without planning
//! or sending anything.
//!
//! One path for `herald preview`, `GET /api/preview/{kind}` and the dashboard's dry run: the
//! emails come from [`crate::schedule::plan`] as a dry run (the planner's own composition: the
//! user's zone, opt-outs, suppressions) and each is made by [`render`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    clock::Clock,
    config::{ScheduleSettings, Settings},
    input,
    kinds::Kind,
    mail::{Outgoing, Sender, smtp::build_message},
    render::Templates,
    schedule::{PlanError, PlanOptions, PlanReport, Preview, check_at, plan},
    store::Store,
    unsubscribe::Links,
};

/// What a preview needs besides the store: the settings, the templates, the links and the clock.
#[derive(Clone)]
pub struct Previewer {
    pub settings: Arc<Settings>,
    pub templates: Arc<Templates>,
    pub links: Option<Links>,
    pub clock: Clock,
}

/// One email as its recipient would get it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Email {
    /// The delivery's dedup key it would have (a manual trigger's, `manual:…`).
    pub dedup_key: String,
    /// When it would be due.
    pub due_at: DateTime<Utc>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The message's headers as an SMTP server would get them, in order (`Date` and
    /// `Message-ID` are made for the preview).
    pub headers: Vec<Header>,
    /// The whole message (RFC 5322, CRLF line ends), as `.eml`.
    pub eml: String,
}

/// One header of a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A preview's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answer {
    pub kind: String,
    pub user_id: String,
    /// The instant previewed.
    pub at: DateTime<Utc>,
    /// The emails the user would get (`due_soon` and `overdue_morning`: one per task); empty when
    /// there is none, and `none_because` says why.
    pub emails: Vec<Email>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub none_because: Option<String>,
}

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// An unknown kind, a user id that is not one, an instant out of range.
    #[error("{0}")]
    Invalid(String),
    /// No such user.
    #[error("{0}")]
    UnknownUser(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Previewer {
    /// The schedule of a kind, or an error listing the kinds.
    pub fn schedule(&self, kind: &str) -> Result<&ScheduleSettings, PreviewError> {
        let kind = input::kind(kind).map_err(PreviewError::Invalid)?;
        self.settings
            .schedules
            .iter()
            .find(|s| s.name == kind.name())
            .ok_or_else(|| PreviewError::Invalid(input::no_schedule(kind.name())))
    }

    /// The emails `user_id` would get from `kind` at `at` (default: now).
    pub async fn preview(
        &self,
        store: &Store,
        kind: &str,
        user_id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Answer, PreviewError> {
        let schedule = self.schedule(kind)?;
        let user_id = input::text_id(user_id).map_err(PreviewError::Invalid)?;
        let at = check_at(at.unwrap_or_else(|| self.clock.now())).map_err(PreviewError::Invalid)?;
        let opts = PlanOptions {
            at,
            user_id: Some(user_id.clone()),
            dry_run: true,
            ids: false,
        };
        let report = plan(
            store,
            schedule,
            &opts,
            &self.clock,
            &self.settings.retention,
        )
        .await
        .map_err(|e| match e {
            PlanError::Refused(m) => PreviewError::Invalid(m),
            e @ PlanError::UnknownUser(_) => PreviewError::UnknownUser(e.to_string()),
            PlanError::Failed(e) => PreviewError::Failed(e),
        })?;
        let emails = report
            .preview
            .iter()
            .map(|p| {
                render(
                    &self.templates,
                    &self.settings,
                    self.links.as_ref(),
                    Kind::of(schedule),
                    p,
                    at,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PreviewError::Failed(anyhow::anyhow!(e)))?;
        let none_because = emails
            .is_empty()
            .then(|| why_none(&report, Kind::of(schedule), &user_id));
        Ok(Answer {
            kind: schedule.name.clone(),
            user_id,
            at,
            emails,
            none_because,
        })
    }
}

/// Why a dry run for one user gave no email.
fn why_none(report: &PlanReport, kind: Kind, user_id: &str) -> String {
    let name = kind.name();
    if report.opted_out > 0 {
        format!("user {user_id} opted out of {name}")
    } else if report.suppressed > 0 {
        format!(
            "user {user_id}'s address is on the suppression list (a hard bounce or a complaint)"
        )
    } else {
        format!(
            "user {user_id} would get no {name} at {}: nothing to say then ({})",
            report.at.to_rfc3339(),
            kind.about()
        )
    }
}

/// One planned email rendered as of `now` and built into the message a worker would send: the
/// templates, the unsubscribe link and headers, the sender and DKIM of the settings.
pub fn render(
    templates: &Templates,
    settings: &Settings,
    links: Option<&Links>,
    kind: Kind,
    p: &Preview,
    now: DateTime<Utc>,
) -> Result<Email, String> {
    let url = links.map(|l| l.url(&p.user_id, kind.name(), now));
    let content = templates
        .render_with(kind.name(), &p.payload, now, url.as_deref())
        .map_err(|e| e.to_string())?;
    let list_unsubscribe = links.zip(url).map(|(l, u)| l.header(&u));
    let sender = Sender {
        from: settings.mail.from.clone(),
        reply_to: settings.mail.reply_to.clone(),
        dkim: settings.mail.dkim.clone(),
    };
    let message_id = format!(
        "<preview.{}@{}>",
        uuid::Uuid::new_v4(),
        sender.from.domain()
    );
    let message = build_message(
        &sender,
        &Outgoing {
            to: &p.recipient,
            message_id: &message_id,
            delivery_key: &p.dedup_key,
            content: &content,
            list_unsubscribe: list_unsubscribe.as_deref(),
        },
    )
    .map_err(|e| format!("cannot build the message: {}", e.message))?;
    let eml = String::from_utf8_lossy(&message.formatted()).into_owned();
    Ok(Email {
        dedup_key: p.dedup_key.clone(),
        due_at: p.due_at,
        to: p.recipient.clone(),
        subject: content.subject,
        text: content.text,
        html: content.html,
        headers: headers_of(&eml),
        eml,
    })
}

/// The header fields of a message, each unfolded onto one line.
fn headers_of(eml: &str) -> Vec<Header> {
    let head = eml.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<Header> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push(Header {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            });
        }
    }
    out
}

/// A preview as plain text: the headers, then the text part.
pub fn as_text(email: &Email) -> String {
    let mut out = String::new();
    for h in &email.headers {
        out.push_str(&format!("{}: {}\n", h.name, h.value));
    }
    out.push('\n');
    out.push_str(&email.text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_headers_are_unfolded() {
        let h = headers_of("Subject: a\r\n b\r\nTo: x@example.com\r\n\r\nbody: no");
        let pairs: Vec<_> = h
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(pairs, [("Subject", "a b"), ("To", "x@example.com")]);
    }
}
