//! The overview and the delivery pages: search by user id, address or dedup key, and one
//! delivery with every attempt and the email rendered again from its payload.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Extension,
    extract::{Path, Query, State},
    response::Response,
};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{Ui, UiError, auth::Session, chart, page};
use crate::{domain::ErrorClass, gate::State as GateState, store::DeliveryStatus};

/// What a provider is doing, as the overview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub name: String,
    /// `sending`, `rate-limited`, `paused`, `circuit open` or `unknown`.
    pub state: &'static str,
    pub detail: String,
}

/// Each provider's shared state from Redis; a provider whose state cannot be read is `unknown`.
pub async fn providers(ui: &Ui) -> Vec<ProviderView> {
    let mut out = Vec::new();
    for p in ui.app.providers.iter() {
        let read = tokio::time::timeout(Duration::from_secs(2), ui.app.gate.state(p)).await;
        let (state, detail) = match read {
            Ok(Ok(GateState::Ok)) => (
                "sending",
                match p.outbox() {
                    Some(dir) => format!(
                        "writing to {}, not sending (development)",
                        crate::config::shown_folder(dir)
                    ),
                    None if p.discards() => crate::http::NULL_PROVIDER.to_owned(),
                    None if p.per_second > 0 => {
                        format!("at most {} requests per second", p.per_second)
                    }
                    None => String::new(),
                },
            ),
            Ok(Ok(GateState::Paused {
                class,
                message,
                remaining,
            })) => (
                if class == ErrorClass::RateLimited {
                    "rate-limited"
                } else {
                    "paused"
                },
                format!(
                    "{class} for {}s more: {message}",
                    remaining.as_secs().max(1)
                ),
            ),
            Ok(Ok(GateState::Circuit)) => (
                "circuit open",
                "unreachable: one worker probes it every mail.probe_interval".to_owned(),
            ),
            Ok(Err(e)) => ("unknown", format!("{e:#}")),
            Err(_) => ("unknown", "Redis did not answer within 2 s".to_owned()),
        };
        out.push(ProviderView {
            name: p.name().to_owned(),
            state,
            detail,
        });
    }
    out
}

#[derive(Debug, Default, Serialize)]
struct Outcomes {
    sent_hour: i64,
    sent_day: i64,
    failed_hour: i64,
    failed_day: i64,
}

/// `GET /ui/`: the overview.
pub async fn overview(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(view): Query<OverviewQuery>,
) -> Result<Response, UiError> {
    let refresh = view.refresh()?;
    let store = &ui.app.store;
    let now = ui.app.clock.now();
    let (outcomes, active, minutes) = tokio::try_join!(
        store.ui_outcomes(now),
        store.ui_active(now),
        store.ui_throughput(now)
    )?;
    let mut totals = Outcomes::default();
    let mut by: BTreeMap<(String, String), Outcomes> = BTreeMap::new();
    for o in &outcomes {
        let row = by.entry((o.kind.clone(), o.provider.clone())).or_default();
        let sent = o.status == DeliveryStatus::Sent;
        let (hour, day) = if sent {
            (&mut row.sent_hour, &mut row.sent_day)
        } else {
            (&mut row.failed_hour, &mut row.failed_day)
        };
        *hour += o.last_hour;
        *day += o.last_day;
        if sent {
            totals.sent_hour += o.last_hour;
            totals.sent_day += o.last_day;
        } else {
            totals.failed_hour += o.last_hour;
            totals.failed_day += o.last_day;
        }
    }
    let by: Vec<_> = by
        .into_iter()
        .map(|((kind, provider), o)| context! { kind, provider, o })
        .collect();
    let q = &ui.app.queue;
    let within = Duration::from_secs(2);
    let depth = match tokio::time::timeout(within, q.depth()).await {
        Ok(Ok(d)) => d.to_string(),
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "unknown (Redis did not answer within 2 s)".to_owned(),
    };
    let workers = match tokio::time::timeout(within, q.live_workers(Duration::from_secs(10))).await
    {
        Ok(Ok(n)) => n.to_string(),
        _ => "unknown".to_owned(),
    };
    let mut scheds = Vec::new();
    let zones = crate::schedule::user_zones(store).await?;
    let pauses = store.schedule_pauses().await?;
    for s in &ui.app.settings.schedules {
        let last = store.ui_last_fire(&s.name).await?;
        let paused = pauses.get(&s.name);
        // A schedule that does not fire has no next fire.
        let next = (s.enabled && paused.is_none())
            .then(|| crate::schedule::next_fires(s, &zones, now, 1))
            .and_then(|f| f.into_iter().next());
        scheds.push(context! {
            name => s.name,
            enabled => s.enabled,
            paused => paused.map(|p| p.paused_at),
            last => last,
            trigger => store.ui_last_trigger(&s.name).await?,
            next => next.map(|(at, tz)| context! { at, zone => tz.name() }),
        });
    }
    page(
        "overview.html",
        context! {
            logged_in => true,
            csrf => session.csrf,
            now,
            totals,
            by,
            active,
            chart => minijinja::Value::from_safe_string(chart::throughput(&minutes)),
            depth,
            high_water => ui.app.settings.queue.high_water,
            workers,
            providers => providers(&ui).await,
            schedules => scheds,
            parts => ui.app.health.parts(),
            rates => super::suppressions::rates(store, now).await?,
            waits => store.ui_waits(now).await?,
            refresh,
            refresh_choices => REFRESH_CHOICES,
        },
    )
}

/// The overview's auto-refresh choices, in seconds (0: off).
const REFRESH_CHOICES: [u32; 4] = [0, 5, 15, 60];

/// `?refresh=N`: the overview reloads itself every N seconds (a `<meta http-equiv="refresh">`,
/// no script).
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    refresh: String,
}

impl OverviewQuery {
    fn refresh(&self) -> Result<u32, UiError> {
        match self.refresh.trim() {
            "" => Ok(0),
            text => text
                .parse()
                .ok()
                .filter(|n| REFRESH_CHOICES.contains(n))
                .ok_or_else(|| {
                    UiError::BadRequest(format!(
                        "refresh={text:?} is not one of {REFRESH_CHOICES:?} (seconds; 0 is off)"
                    ))
                }),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    /// A list by status when there is no search: `recent` (the default), `queued`, `sending`,
    /// `retrying`, `failed`.
    #[serde(default)]
    status: String,
    /// The id of a delivery just deleted, to say so.
    #[serde(default)]
    deleted: String,
}

/// `GET /ui/deliveries?q=`: deliveries by user id, recipient address or dedup key; without a
/// search, `?status=` lists them by status (the most recently changed by default).
pub async fn search(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, UiError> {
    use crate::store::ui_browse::Browse;
    let q = query.q.trim().to_owned();
    let list = match query.status.trim() {
        "" => Browse::Recent,
        text => Browse::parse(text).map_err(UiError::BadRequest)?,
    };
    let rows = if q.is_empty() {
        ui.app.store.ui_browse(list, 200).await?
    } else {
        ui.app.store.ui_search(&q, 200).await?
    };
    let lists: Vec<&str> = Browse::ALL.iter().map(|b| b.as_str()).collect();
    page(
        "search.html",
        context! {
            logged_in => true, csrf => session.csrf, q, rows,
            list => list.as_str(), lists, deleted => query.deleted,
        },
    )
}

/// `GET /ui/deliveries/{id}`: one delivery, its attempts, and the email rendered again from the
/// payload it was planned with.
pub async fn delivery(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    let id: i64 = id.parse().map_err(|_| {
        UiError::BadRequest(format!(
            "{id:?} is not a delivery id; ids are whole numbers"
        ))
    })?;
    let d = ui
        .app
        .store
        .ui_delivery(id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no delivery {id}")))?;
    let attempts = ui.app.store.attempts(id).await?;
    let events = ui.app.store.events(id).await?;
    let (email, render_error, payload) = match &d.payload {
        Some(p) => {
            let (email, error) = render(&ui, &d.row.kind, p);
            (
                email,
                error,
                serde_json::to_string_pretty(p).unwrap_or_default(),
            )
        }
        None => (
            None,
            Some(format!(
                "this email's payload was removed {} after it was sent or skipped (retention.payload); its record stays until retention.sent or retention.skipped",
                humantime::format_duration(ui.app.settings.retention.payload)
            )),
            String::new(),
        ),
    };
    page(
        "delivery.html",
        context! {
            logged_in => true,
            csrf => session.csrf,
            d => d.row,
            attempts,
            events,
            email,
            render_error,
            payload,
            retried => done.done == "retried",
        },
    )
}

/// What the delivery page says was just done to it.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
}

/// The email of `kind` for `payload`, as the workers would render it now: (the parts, or why
/// not).
pub fn render(
    ui: &Ui,
    kind: &str,
    payload: &serde_json::Value,
) -> (Option<minijinja::Value>, Option<String>) {
    match ui.emails.as_ref() {
        Ok(t) => match t.render(kind, payload, ui.app.clock.now()) {
            Ok(r) => (
                Some(context! { subject => r.subject, text => r.text, html => r.html }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (
            None,
            Some(format!("the templates could not be loaded: {e}")),
        ),
    }
}
