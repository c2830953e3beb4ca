//! Planning by hand (`POST …/trigger`, `herald trigger`, the dashboard's dry run): one instant,
//! every user or one, keyed apart from the schedule's own emails, refused when it could cancel
//! or repeat a real email.

use super::*;

/// How to plan one instant by hand (`POST …/trigger`, `herald trigger`).
///
/// A manual trigger is a test send: its deliveries are keyed in their own namespace
/// ([`manual_dedup_key`]), so it never consumes or blocks the schedule's real email of that day,
/// and triggering the same day twice sends once.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Plan as if now were this instant: "tomorrow" and the dedup key's date follow from it.
    /// Not in the future (unless `dry_run`), nor further back than the retention allows.
    pub at: DateTime<Utc>,
    /// Plan for one user only (the app's id).
    pub user_id: Option<String>,
    /// Compute the emails and insert nothing.
    pub dry_run: bool,
    /// List the new deliveries' ids in the report (always listed when `user_id` is given).
    pub ids: bool,
}

/// Why a manual plan was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The request cannot be planned as asked; the message says what to do instead.
    #[error("{0}")]
    Refused(String),
    /// `user_id` names no user.
    #[error(
        "no user with id {0} among the active users of herald_users; check the id (the app's own id of the user)"
    )]
    UnknownUser(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Checks an instant to plan by hand (`at` of `POST …/trigger`, `herald trigger --at`): from
/// 1970 to the end of 9999, so that the calendar arithmetic around it (a week back, a day ahead,
/// a spread) stays far inside chrono's range. The message names `at` and the range.
pub fn check_at(at: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let first = DateTime::<Utc>::UNIX_EPOCH;
    let last = NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .expect("a valid date")
        .and_utc();
    if (first..=last).contains(&at) {
        Ok(at)
    } else {
        Err(format!(
            "`at` is {at}; plan an instant between {} and {}",
            first.to_rfc3339(),
            last.to_rfc3339()
        ))
    }
}

/// The key of a manual trigger's email: a namespace of its own, so a test send never takes the
/// place of the schedule's real email, and one per user per local day.
pub fn manual_dedup_key(schedule: &str, user_id: &str, key: impl std::fmt::Display) -> String {
    format!("manual:{}", dedup_key(schedule, user_id, key))
}

/// Refuses a manual plan that could cancel or repeat a real email: a non-dry-run `at` after
/// `now` (it would send a future day's email now), or one older than the retention allows (the
/// record of that day's email may be deleted, and it would go out twice).
pub fn check_manual(
    opts: &PlanOptions,
    now: DateTime<Utc>,
    retention: &RetentionSettings,
) -> Result<(), PlanError> {
    if opts.dry_run {
        return Ok(());
    }
    if opts.at > now {
        return Err(PlanError::Refused(format!(
            "\"at\" {} is in the future (now is {}); a trigger sends at once, so it would send that day's email early. Use \"dry_run\": true (herald trigger --dry-run) to preview a future instant",
            opts.at.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    let horizon = retention.trigger_horizon();
    let oldest = chrono::Duration::from_std(horizon)
        .ok()
        .and_then(|h| now.checked_sub_signed(h))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if opts.at < oldest {
        let (key, shortest) = retention.shortest();
        return Err(PlanError::Refused(format!(
            "\"at\" {} is older than {} ago; deliveries are deleted after {} ({key}), and with them the record that this day's email went out, so it could be sent twice. Trigger an instant after {}, or use \"dry_run\": true to preview",
            opts.at.to_rfc3339(),
            humantime::format_duration(horizon),
            humantime::format_duration(shortest),
            oldest.to_rfc3339()
        )));
    }
    Ok(())
}

/// Plans one instant by hand, for every user (or one), as the schedule would, as a test send
/// (see [`PlanOptions`]). `clock` says when now is; the emails are due then. Refused (see
/// [`check_manual`]) when it could cancel or repeat a real email, and for an unknown user.
pub async fn plan(
    store: &Store,
    schedule: &ScheduleSettings,
    opts: &PlanOptions,
    clock: &Clock,
    retention: &RetentionSettings,
) -> Result<PlanReport, PlanError> {
    let now = clock.now();
    check_at(opts.at).map_err(PlanError::Refused)?;
    check_manual(opts, now, retention)?;
    if !opts.dry_run
        && let Some(pause) = store
            .schedule_pause(&schedule.name)
            .await
            .context("cannot read whether the schedule is paused")?
    {
        return Err(PlanError::Refused(format!(
            "schedule {} is paused (since {}); resume it to send (POST /api/schedules/{}/resume, herald resume {}, or the dashboard), or use \"dry_run\": true to preview",
            schedule.name,
            pause.paused_at.to_rfc3339(),
            schedule.name,
            schedule.name
        )));
    }
    if let Some(id) = &opts.user_id
        && store
            .source
            .user(id)
            .await
            .context("cannot look the user up in herald_users")?
            .is_none()
    {
        return Err(PlanError::UnknownUser(id.clone()));
    }
    let mut report = PlanReport {
        schedule: schedule.name.clone(),
        at: opts.at,
        dry_run: opts.dry_run,
        delivery_ids: (opts.ids || opts.user_id.is_some()).then(Vec::new),
        preview_left_out: opts.dry_run.then_some(0),
        ..Default::default()
    };
    if let Some(when) = schedule.relative {
        items::plan_items_by_hand(store, schedule, when, opts, now, &mut report).await?;
        log_report(&report);
        return Ok(report);
    }
    let key_date = match schedule.zone {
        ZoneMode::Fixed(tz) => Some(domain::local_date(tz, opts.at)),
        ZoneMode::Recipient => None,
    };
    let batch = Batch {
        schedule,
        at: opts.at,
        // Planned by hand: due now (a dry run may preview a future `at`).
        due: opts.at.min(now),
        key_date,
        only_user: opts.user_id.as_deref(),
        zones: None,
        dry_run: opts.dry_run,
        missed: None,
        manual: true,
    };
    plan_users(store, &batch, &mut report).await?;
    log_report(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn opts(at: &str, dry_run: bool) -> PlanOptions {
        PlanOptions {
            at: t(at),
            user_id: None,
            dry_run,
            ids: false,
        }
    }

    #[test]
    fn manual_keys_live_apart_from_the_schedules_own() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(
            dedup_key("task_reminders", "7", date),
            "task_reminders:7:2026-11-23"
        );
        assert_eq!(
            manual_dedup_key("task_reminders", "7", date),
            "manual:task_reminders:7:2026-11-23"
        );
    }

    #[test]
    fn a_future_at_is_refused_unless_it_is_a_dry_run() {
        let now = t("2026-11-23T08:00:00Z");
        let r = RetentionSettings::default();
        let err = check_manual(&opts("2026-11-24T09:00:00Z", false), now, &r)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is in the future") && err.contains("Use \"dry_run\": true"),
            "{err}"
        );
        assert!(check_manual(&opts("2026-11-24T09:00:00Z", true), now, &r).is_ok());
        assert!(check_manual(&opts("2026-11-23T08:00:00Z", false), now, &r).is_ok());
    }

    #[test]
    fn an_at_older_than_the_retention_allows_is_refused() {
        let now = t("2026-11-30T12:00:00Z");
        let r = RetentionSettings::default();
        // The shortest retention is 30 days: a trigger reaches back 28.
        assert!(check_manual(&opts("2026-11-02T12:00:00Z", false), now, &r).is_ok());
        let err = check_manual(&opts("2026-11-02T11:59:59Z", false), now, &r)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is older than 28days ago")
                && err.contains("deleted after 30days (retention.sent)")
                && err.contains("could be sent twice"),
            "{err}"
        );
        assert!(check_manual(&opts("2026-01-01T00:00:00Z", true), now, &r).is_ok());
    }
}
