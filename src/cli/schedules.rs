//! `herald schedules`: each schedule's settings, watermark and next fires, or one user's next
//! emails; `herald pause` and `herald resume`.

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
    let pauses = store.schedule_pauses().await?;
    for s in &settings.schedules {
        let watermark = store.watermark(&s.name).await?;
        let pause = pauses.get(&s.name);
        println!(
            "{}  {}  zone {}  catch-up {}  spread {}{}{}",
            s.name,
            s.when(),
            s.zone,
            humantime::format_duration(s.catch_up),
            humantime::format_duration(s.spread),
            if s.enabled { "" } else { "  (disabled)" },
            pause.map_or(String::new(), |p| format!(
                "  (paused since {}{})",
                p.paused_at.format("%Y-%m-%d %H:%M UTC"),
                p.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ))
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
        if !s.enabled || pause.is_some() {
            // A schedule that does not fire has no next fire.
            fires.clear();
            println!(
                "  next: none while it is {}",
                if s.enabled { "paused" } else { "disabled" }
            );
        }
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

/// The schedule named `name`, or an error listing the schedules.
fn named<'a>(
    settings: &'a Settings,
    name: &str,
) -> anyhow::Result<&'a crate::config::ScheduleSettings> {
    settings
        .schedule(name)
        .with_context(|| crate::input::no_schedule(name))
}

/// `herald pause NAME [--reason TEXT]`.
pub async fn pause(settings: &Settings, name: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let s = named(settings, name)?;
    let store = super::connect(settings).await?;
    let p = store.pause_schedule(&s.name, reason).await?;
    println!(
        "{} paused since {}: the planner skips its fires until `herald resume {}`",
        s.name,
        p.paused_at.to_rfc3339(),
        s.name
    );
    Ok(())
}

/// `herald resume NAME`.
pub async fn resume(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let s = named(settings, name)?;
    let store = super::connect(settings).await?;
    if store.resume_schedule(&s.name).await? {
        println!("{} resumed: its fires are planned from now on", s.name);
    } else {
        println!("{} was not paused", s.name);
    }
    Ok(())
}
