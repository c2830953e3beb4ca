//! The schedules page: each schedule's cron, zone mode, last fire and next fires, with a dry run
//! (recipients and one rendered email) and a trigger, both through [`crate::schedule::plan`]
//! with the API's checks: a trigger is a test send in the `manual:` dedup namespace, and a future
//! instant is refused unless it is a dry run.

use axum::{
    Extension,
    body::Bytes,
    extract::{Path, State},
    response::Response,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use minijinja::context;

use super::{Ui, UiError, auth::Session, auth::form_value, page};
use crate::schedule::{
    PlanError, PlanOptions, check_at, check_manual, next_fires, plan, user_zones,
};

/// How many recipients a dry run lists.
const LISTED: usize = 100;

/// `GET /ui/schedules`.
pub async fn list(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    let store = &ui.app.store;
    let now = ui.app.clock.now();
    let zones = user_zones(store).await?;
    let pauses = store.schedule_pauses().await?;
    let mut out = Vec::new();
    for s in &ui.app.settings.schedules {
        let paused = pauses.get(&s.name);
        // A schedule that does not fire has no next fire.
        let fires = if s.enabled && paused.is_none() { 5 } else { 0 };
        let next: Vec<_> = next_fires(s, &zones, now, fires)
            .into_iter()
            .map(|(at, tz)| {
                context! {
                    at,
                    local => at.with_timezone(&tz).format("%a %H:%M").to_string(),
                    zone => tz.name(),
                }
            })
            .collect();
        out.push(context! {
            name => s.name,
            about => crate::kinds::Kind::of(s).about(),
            cron => s.cron_expr,
            relative => s.relative.map(|w| w.describe()),
            zone => s.zone.to_string(),
            fallback => s.fallback_timezone.name(),
            catch_up => humantime::format_duration(s.catch_up).to_string(),
            spread => humantime::format_duration(s.spread).to_string(),
            enabled => s.enabled,
            paused => paused,
            planned_up_to => store.watermark(&s.name).await?,
            last => store.ui_last_fire(&s.name).await?,
            trigger => store.ui_last_trigger(&s.name).await?,
            opted_out => store.ui_opted_out(&s.name).await?,
            next,
        });
    }
    page(
        "schedules.html",
        context! { logged_in => true, csrf => session.csrf, now, schedules => out },
    )
}

/// `POST /ui/schedules/{name}/dry-run`: what a trigger would send, with nothing inserted.
pub async fn dry_run(
    state: State<Ui>,
    session: Extension<Session>,
    name: Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    run(state, session, name, body, true).await
}

/// `POST /ui/schedules/{name}/trigger`: plans the schedule by hand, as `POST
/// /api/schedules/{name}/trigger` does. For every user (no user id) it first answers with a
/// dry run and a button that sends (`confirm=yes`): one click never emails everyone.
pub async fn trigger(
    state: State<Ui>,
    session: Extension<Session>,
    name: Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    run(state, session, name, body, false).await
}

/// An instant from the form: empty (now), RFC 3339, or a `datetime-local` value read as UTC.
fn parse_at(text: &str) -> Result<Option<DateTime<Utc>>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            UiError::BadRequest(format!(
                "\"at\" {text:?} is not an instant; write it like 2026-11-23T07:00 (UTC) or 2026-11-23T08:00:00+01:00"
            ))
        })
}

async fn run(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
    dry_run: bool,
) -> Result<Response, UiError> {
    let schedule = ui.app.settings.schedule(&name).ok_or_else(|| {
        UiError::NotFound(format!(
            "no schedule named {name:?}; the schedules are {}",
            crate::kinds::Kind::names()
        ))
    })?;
    let user_id = match form_value(&body, "user_id").as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(crate::input::text_id(v.trim()).map_err(UiError::BadRequest)?),
    };
    let at = parse_at(&form_value(&body, "at").unwrap_or_default())?
        .unwrap_or_else(|| ui.app.clock.now());
    // A trigger for every user asks first: a dry run of it, with the button that sends.
    let confirming =
        !dry_run && user_id.is_none() && form_value(&body, "confirm").as_deref() != Some("yes");
    let mut opts = PlanOptions {
        at: check_at(at).map_err(UiError::BadRequest)?,
        user_id,
        dry_run,
        ids: false,
    };
    if confirming {
        // What the trigger itself would refuse is refused now, not after the confirmation.
        check_manual(&opts, ui.app.clock.now(), &ui.app.settings.retention)
            .map_err(|e| UiError::BadRequest(e.to_string()))?;
        opts.dry_run = true;
    }
    let report = plan(
        &ui.app.store,
        schedule,
        &opts,
        &ui.app.clock,
        &ui.app.settings.retention,
    )
    .await
    .map_err(|e| match e {
        PlanError::Refused(m) => UiError::BadRequest(m),
        e @ PlanError::UnknownUser(_) => UiError::NotFound(e.to_string()),
        PlanError::Failed(e) => UiError::Internal(e),
    })?;
    if !opts.dry_run {
        ui.app.dispatcher.nudge();
    }
    // The first email, made as `herald preview` and `GET /api/preview/{kind}` make theirs.
    let (email, render_error) = match (report.preview.first(), ui.emails.as_ref()) {
        (None, _) => (None, None),
        (Some(_), Err(e)) => (
            None,
            Some(format!("the templates could not be loaded: {e}")),
        ),
        (Some(p), Ok(templates)) => {
            let now = ui.app.clock.now();
            let app = &ui.app;
            match crate::preview::render(
                templates,
                &app.settings,
                app.links.as_ref(),
                crate::kinds::Kind::of(schedule),
                p,
                now,
            ) {
                Ok(e) => (
                    Some(
                        context! { subject => e.subject, text => e.text, html => e.html, headers => e.headers },
                    ),
                    None,
                ),
                Err(e) => (None, Some(e)),
            }
        }
    };
    let first = report.preview.first().map(|p| p.recipient.clone());
    let recipients: Vec<_> = report.preview.iter().take(LISTED).collect();
    page(
        "plan.html",
        context! {
            logged_in => true,
            csrf => session.csrf,
            report,
            recipients,
            listed => LISTED,
            confirming,
            at_value => at.to_rfc3339(),
            first,
            email,
            render_error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_utc_local_times_and_rfc3339() {
        assert_eq!(parse_at("").unwrap(), None);
        let t = parse_at("2026-11-23T07:00").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T07:00:00+00:00");
        let t = parse_at("2026-11-23T08:00:00+01:00").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T07:00:00+00:00");
        assert!(parse_at("tomorrow").is_err());
    }
}
