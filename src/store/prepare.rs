//! The store's source, chosen and checked before Herald starts: the app's database when
//! `source.url` is set, else Herald's own, with the demo app's views created there when missing.

use super::Store;
use crate::{
    config::SecretUrl,
    source::{Source, check, demo::Demo},
};

/// The store, reading from `source_url` (or Herald's own database), checked: every problem of
/// the contract stops Herald with the list. On Herald's own database without the views, the
/// demo app's (empty) tables and views are created, so a first run works with nothing else.
/// A source that cannot be reached is logged and planning retries on every tick.
pub async fn prepare(store: Store, source_url: Option<&SecretUrl>) -> anyhow::Result<Store> {
    let store = match source_url {
        Some(url) => {
            store.with_source(Source::connect(url.expose(), super::SOURCE_CONNECTIONS).await?)
        }
        None => {
            let demo = Demo::connect(store.url()).await;
            if let Ok(demo) = demo
                && !demo.has_views().await.unwrap_or(true)
            {
                demo.install().await?;
                tracing::info!(
                    "created the demo app's empty tables and views in Herald's database (`herald seed` fills them; set source.url to read your app's data instead)"
                );
            }
            store
        }
    };
    match check::check(&store.source).await {
        Ok(problems) if problems.is_empty() => Ok(store),
        Ok(problems) => anyhow::bail!(
            "the source ({}) does not meet the contract:\n  {}",
            source_url.map_or("Herald's own database".to_owned(), |u| u.to_string()),
            problems
                .iter()
                .map(check::Problem::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
        Err(e) => {
            tracing::warn!(
                error = crate::telemetry::chain(&e),
                "cannot read the source's relations yet; planning will try again on every tick"
            );
            Ok(store)
        }
    }
}
