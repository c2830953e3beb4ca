//! The failed set: filtered by kind, error class, provider, recipient domain and time; rows
//! selected one by one or all that match; retried at a bounded rate, or purged.
//!
//! A retry queues each delivery again with a fresh round of attempts, due at `start + n /
//! ui.retry_per_second` seconds (oldest failure first), so the dispatcher, which only moves due
//! rows, releases them at that rate: 50,000 failures at 50/s go out over about 17 minutes, not in
//! one burst at the provider. `start` is now, or the end of this process's previous bulk retry.

use axum::{
    Extension,
    body::Bytes,
    extract::{RawQuery, State},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{DateTime, Utc};
use minijinja::context;

use super::{Ui, UiError, auth::Session, page};
use crate::{
    input::Since,
    store::ui::{FailedFilter, LastTry},
};

/// Rows shown on one page.
const SHOWN: i64 = 200;

/// The filter's fields, as in the query string and the hidden fields of the action form.
const FIELDS: [&str; 6] = ["kind", "class", "provider", "domain", "since", "until"];

/// The form's fields as (name, value) pairs.
fn pairs(text: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// An instant with its offset (`2026-11-23T07:00:00Z`) or an age before `now` (`24h`), read as
/// `herald failed list --since` and `GET /api/failed?since=` read it: a time without an offset
/// is refused, with the fix.
fn instant(name: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, UiError> {
    Since::parse(text)
        .map(|s| s.resolve(now))
        .map_err(|e| UiError::BadRequest(format!("{name}: {e}")))
}

/// The filter in `pairs`.
fn filter(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<FailedFilter, UiError> {
    let text = |name| get(pairs, name).map(str::to_owned);
    Ok(FailedFilter {
        kind: text("kind"),
        class: get(pairs, "class")
            .map(LastTry::parse)
            .transpose()
            .map_err(|e| UiError::BadRequest(format!("class: {e}")))?,
        provider: text("provider"),
        domain: text("domain").map(|d| d.trim_start_matches('@').to_owned()),
        since: get(pairs, "since")
            .map(|t| instant("since", t, now))
            .transpose()?,
        until: get(pairs, "until")
            .map(|t| instant("until", t, now))
            .transpose()?,
    })
}

/// The filter's fields as a query string, to come back to the same list.
fn query_of(pairs: &[(String, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for name in FIELDS {
        if let Some(v) = get(pairs, name) {
            q.append_pair(name, v);
        }
    }
    q.finish()
}

/// `GET /ui/failed?kind=&class=&provider=&domain=&since=&until=`.
pub async fn list(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let pairs = pairs(query.unwrap_or_default().as_bytes());
    let f = filter(&pairs, ui.app.clock.now())?;
    let (rows, total) = ui.app.store.ui_failed(&f, SHOWN).await?;
    let mut kinds = Vec::new();
    let mut classes = vec!["none".to_owned()];
    let mut providers = Vec::new();
    for (facet, value) in ui.app.store.ui_failed_facets().await? {
        match facet.as_str() {
            "kind" => kinds.push(value),
            "class" => classes.push(value),
            _ => providers.push(value),
        }
    }
    // What the filter asks for stays selectable even when nothing matches it.
    for (list, v) in [
        (&mut kinds, f.kind.as_deref()),
        (&mut classes, f.class.map(LastTry::as_str)),
        (&mut providers, f.provider.as_deref()),
    ] {
        if let Some(v) = v
            && !list.iter().any(|x| x == v)
        {
            list.push(v.to_owned());
        }
    }
    let values: std::collections::BTreeMap<&str, &str> = FIELDS
        .iter()
        .filter_map(|n| get(&pairs, n).map(|v| (*n, v)))
        .collect();
    page(
        "failed.html",
        context! {
            logged_in => true,
            csrf => session.csrf,
            rows,
            total,
            shown => SHOWN,
            values,
            kinds,
            classes,
            providers,
            done => get(&pairs, "done"),
            per_second => ui.app.settings.ui_retry_per_second,
        },
    )
}

/// `POST /ui/failed`: `action` is `retry:<id>`, `retry_selected`, `purge_selected`, `retry_all`
/// or `purge_all` (all that match the filter in the form's hidden fields); selected rows come as
/// `id` fields. A purge needs `confirm=yes`. Answers with the list again and what was done.
pub async fn act(State(ui): State<Ui>, body: Bytes) -> Result<Response, UiError> {
    let pairs = pairs(&body);
    let now = ui.app.clock.now();
    let f = filter(&pairs, now)?;
    let selected: Vec<i64> = pairs
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| {
            v.parse()
                .map_err(|_| UiError::BadRequest(format!("{v:?} is not a delivery id")))
        })
        .collect::<Result<_, _>>()?;
    let action = get(&pairs, "action").unwrap_or_default();
    let (retry, ids): (bool, Option<Vec<i64>>) = match action {
        "retry_selected" => (true, Some(selected)),
        "purge_selected" => (false, Some(selected)),
        "retry_all" => (true, None),
        "purge_all" => (false, None),
        other => match other.strip_prefix("retry:").map(str::parse::<i64>) {
            Some(Ok(id)) => (true, Some(vec![id])),
            _ => {
                return Err(UiError::BadRequest(format!(
                    "unknown action {other:?}; use the buttons of the failed list"
                )));
            }
        },
    };
    if ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(UiError::BadRequest(
            "no rows are selected; tick some, or use the \"all that match\" buttons".into(),
        ));
    }
    let done = if retry {
        let per_second = ui.app.settings.ui_retry_per_second.max(1);
        let start = {
            let horizon = *ui.retry_horizon.lock().expect("not poisoned");
            horizon.max(now)
        };
        let (n, last) = ui
            .app
            .store
            .ui_retry_failed(&f, ids.as_deref(), start, per_second)
            .await?;
        if let Some(last) = last {
            let next = last + chrono::Duration::milliseconds(1000 / i64::from(per_second));
            let mut horizon = ui.retry_horizon.lock().expect("not poisoned");
            *horizon = (*horizon).max(next);
        }
        ui.app.dispatcher.nudge();
        tracing::info!(
            retried = n,
            per_second,
            "failed deliveries retried from the dashboard"
        );
        match last {
            Some(last) if n > 0 => format!(
                "queued {n} again, at most {per_second} per second: the last is due at {}",
                last.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            _ => "nothing to retry: no failed delivery matched".to_owned(),
        }
    } else {
        if get(&pairs, "confirm") != Some("yes") {
            return Err(UiError::BadRequest(
                "a purge deletes deliveries for good: tick \"confirm purge\" first".into(),
            ));
        }
        let n = ui.app.store.ui_purge_failed(&f, ids.as_deref()).await?;
        tracing::info!(purged = n, "failed deliveries purged from the dashboard");
        format!("purged {n} failed deliveries")
    };
    let mut q = query_of(&pairs);
    if !q.is_empty() {
        q.push('&');
    }
    q.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .append_pair("done", &done)
            .finish(),
    );
    Ok(Redirect::to(&format!("/ui/failed?{q}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorClass;

    fn now() -> DateTime<Utc> {
        crate::input::instant("2026-11-23T12:00:00Z").unwrap()
    }

    fn refused(query: &[u8]) -> String {
        match filter(&pairs(query), now()) {
            Err(UiError::BadRequest(message)) => message,
            other => panic!("{query:?} is not refused as a bad request: {other:?}"),
        }
    }

    #[test]
    fn the_filter_reads_instants_ages_and_blank_fields() {
        let f = filter(
            &pairs(
                b"kind=&class=permanent&domain=%40Example.com&since=24h&until=2026-11-23T12:00:00%2B01:00",
            ),
            now(),
        )
        .unwrap();
        assert_eq!(f.kind, None);
        assert_eq!(f.class, Some(LastTry::Failed(ErrorClass::Permanent)));
        assert_eq!(f.domain.as_deref(), Some("Example.com"));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-22T12:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-11-23T11:00:00+00:00");
        // The placeholder's form: minutes, and Z.
        let f = filter(&pairs(b"class=none&since=2026-11-23T07:00Z"), now()).unwrap();
        assert_eq!(f.class, Some(LastTry::NoTry));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-23T07:00:00+00:00");
        assert_eq!(
            query_of(&pairs(b"kind=a&csrf=x&id=1&since=1h")),
            "kind=a&since=1h"
        );
    }

    #[test]
    fn a_time_without_an_offset_is_refused_as_the_cli_and_the_api_refuse_it() {
        for (field, text) in [
            ("since", "2026-11-23T07:00"),
            ("until", "2026-11-23T09:00:00"),
        ] {
            let message = refused(format!("{field}={text}").as_bytes());
            let said = Since::parse(text).unwrap_err();
            assert!(
                said.contains("has no offset") && said.contains("add Z"),
                "{said}"
            );
            assert_eq!(message, format!("{field}: {said}"));
        }
        let message = refused(b"since=yesterday");
        assert!(
            message.starts_with("since: ") && message.contains("neither an instant"),
            "{message}"
        );
    }

    #[test]
    fn a_class_is_none_or_an_error_class() {
        let message = refused(b"class=melted");
        assert!(
            message.contains("\"melted\"") && message.contains("none or one of permanent"),
            "{message}"
        );
        assert!(refused(b"class=sent").contains("\"sent\" is not an error class"));
    }
}
