//! `herald schedules`: each schedule's settings, watermark and next fires, or one user's next emails.

use anyhow::Context;
use chrono::Utc;

use crate::{
    config::{Settings, ZoneMode},
    schedule::occurrences,
};

pub async fn schedules(settings: &Settings, user_id: Option<String>) -> anyhow::Result<()> {
    let store = super::connect(settings).await?;
    let now = Utc::now();
    if let Some(id) = user_id {
        let user = store
            .source
            .user(&id)
            .await?
            .with_context(|| format!("no active user with id {id} in herald_users"))?;
        let zone = user.time_zone.clone().unwrap_or_default();
        let own = crate::domain::parse_zone(&zone);
        println!("user {} <{}>, time zone {zone}", user.id, user.email);
        if own.is_err() {
            println!("  (not a valid zone: recipient schedules use their fallback zone)");
        }
        for s in settings.schedules.iter() {
            let tz = match s.zone {
                ZoneMode::Fixed(tz) => tz,
                ZoneMode::Recipient => own.clone().unwrap_or(s.fallback_timezone),
            };
            let state = if s.enabled { "" } else { "  (disabled)" };
            println!("{}{state}", s.name);
            if let Some(when) = s.relative {
                println!("  {}", when.describe());
            }
            for fire in s.cron.iter().flat_map(|c| occurrences::next(c, tz, now, 3)) {
                let at = fire.at + occurrences::spread_offset(&user.id, s.spread);
                println!(
                    "  {}  =  {}",
                    at.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z (%:z)"),
                    at.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        return Ok(());
    }
    let zones: Vec<_> = store
        .source
        .time_zones()
        .await?
        .iter()
        .filter_map(|z| crate::domain::parse_zone(z).ok())
        .collect();
    for s in &settings.schedules {
        let watermark = store.watermark(&s.name).await?;
        println!(
            "{}  {}  zone {}  catch-up {}  spread {}{}",
            s.name,
            s.when(),
            s.zone,
            humantime::format_duration(s.catch_up),
            humantime::format_duration(s.spread),
            if s.enabled { "" } else { "  (disabled)" }
        );
        println!(
            "  planned up to: {}",
            watermark
                .map(|w| w.to_rfc3339())
                .unwrap_or_else(|| "never (starts at the next run)".into())
        );
        let mut fires: Vec<(chrono::DateTime<Utc>, chrono_tz::Tz)> = match s.zone {
            ZoneMode::Fixed(tz) => s
                .cron
                .iter()
                .flat_map(|c| occurrences::next(c, tz, now, 5))
                .map(|f| (f.at, tz))
                .collect(),
            ZoneMode::Recipient => zones
                .iter()
                .flat_map(|tz| {
                    s.cron
                        .iter()
                        .flat_map(move |c| occurrences::next(c, *tz, now, 5))
                        .map(move |f| (f.at, *tz))
                })
                .collect(),
        };
        fires.sort_by_key(|f| f.0);
        fires.dedup_by_key(|f| f.0);
        for (at, tz) in fires.into_iter().take(5) {
            println!(
                "  next: {}  ({} {})",
                at.format("%Y-%m-%d %H:%M UTC"),
                at.with_timezone(&tz).format("%H:%M"),
                tz.name()
            );
        }
    }
    Ok(())
}
