//! The kinds of email: each is one file here, one line in [`KINDS`] and `templates/<name>/`.
//!
//! A kind says when it fires by default, what it loads for a batch of users at an instant,
//! whether a user has anything to hear about, and what their email says (see [`EmailKind`]).
//! The planner asks the kind for all of it and knows no kind by name; the configuration gives
//! every kind a schedule of the same name, at the kind's default time unless it says otherwise.

use std::{collections::HashMap, fmt, future::Future, str::FromStr};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::{
    payload::{Payload, User},
    source::{Source, TaskPage, TaskRow},
};

pub mod due_soon;
pub mod focus_streak;
pub mod items;
pub mod overdue_morning;
pub mod overdue_summary;
pub mod task_reminders;
pub mod weekly_report;
mod windows;

pub use items::{ItemKind, Items};
pub use windows::{Windows, overdue_tasks};

use crate::{
    config::{KindDefaults, ScheduleSettings},
    domain::When,
};

/// Every kind Herald sends. A new kind is one more line here (and its `mod` line above).
pub static KINDS: &[&dyn AnyKind] = &[
    &task_reminders::TaskReminders,
    &overdue_summary::OverdueSummary,
    &weekly_report::WeeklyReport,
    &focus_streak::FocusStreak,
    &Items(due_soon::DueSoon),
    &Items(overdue_morning::OverdueMorning),
];

/// One kind of email. Implement it on a unit struct in a file of this folder, list it in
/// [`KINDS`], and put its templates in `templates/<NAME>/` (`subject.txt`, `body.txt`,
/// `body.html`). The README's "Adding a kind of email" walks through one.
pub trait EmailKind: Send + Sync + 'static {
    /// The name of the kind, its schedule, its templates folder, and the `kind` of its
    /// deliveries and opt-outs: lowercase with underscores, never renamed once sent.
    const NAME: &'static str;
    /// What the email tells, in a few words (the README's table, `herald trigger --help`).
    const ABOUT: &'static str;
    /// When the kind fires unless `[schedules.<NAME>]` says otherwise.
    const SCHEDULE: DefaultSchedule;
    /// Where in the host app the email's button goes (after `app.url`), unless
    /// `[schedules.<NAME>] link` says otherwise.
    const LINK: &'static str = "/";

    /// What the kind knows about one user at one instant. `Default` is "nothing".
    type Data: Default + Send + Sync;

    /// Loads the data of `users` at `at`, in a few queries for the whole batch (up to 1,000
    /// users); users with nothing may be left out of the map. Every window of time is the
    /// kind's own and follows each user's zone (`Recipient::tz`); [`Windows`] helps.
    fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<HashMap<String, Self::Data>>> + Send;

    /// Whether there is anything to say: `false` sends this user nothing at this fire.
    fn has_news(&self, data: &Self::Data) -> bool;

    /// The fields the templates read for one user in `tz` at `at`: a struct deriving
    /// `Serialize` (or `json!({…})`) that is a JSON object; `kind`, `user` and `at` are added to
    /// them. Store times as instants ([`crate::payload::Instant`]) and let the templates' time
    /// filters write them, in the user's zone, when the email is sent.
    fn compose<'a>(
        &self,
        tz: Tz,
        at: DateTime<Utc>,
        data: &'a Self::Data,
    ) -> impl Serialize + Send + 'a;

    /// The emails one user gets at this fire, each with the end of its dedup key (what follows
    /// `<schedule>:<user id>:`). The default is one email, keyed on `date` (the fire's local
    /// date), when [`EmailKind::has_news`]: at most one email per user per local day. A kind
    /// that tells about items one by one returns one email per item, keyed on the item.
    fn emails(
        &self,
        to: &Recipient,
        at: DateTime<Utc>,
        date: NaiveDate,
        data: &Self::Data,
    ) -> Vec<(String, Payload)> {
        payload(self, to, at, data)
            .map(|p| vec![(date.to_string(), p)])
            .unwrap_or_default()
    }

    /// Named data for the template check at start-up (and `herald check`) and the golden test:
    /// realistic, each with something to say, and together taking every branch the templates
    /// have (one item and several, empty lists and full ones). `at` is the samples' instant,
    /// [`SAMPLE_AT`], for a user in Europe/London; names are lowercase with underscores.
    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, Self::Data)>;
}

/// When a kind fires unless the configuration says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultSchedule {
    /// Six fields, seconds first, read as local wall-clock time: `"0 0 9 * * *"`.
    pub cron: &'static str,
    /// `"recipient"` (each user at that time in their own zone) or an IANA zone.
    pub timezone: &'static str,
}

impl DefaultSchedule {
    /// At the cron's time in each recipient's own zone.
    pub const fn recipient(cron: &'static str) -> DefaultSchedule {
        DefaultSchedule {
            cron,
            timezone: "recipient",
        }
    }
}

/// A user the planner composes an email for (users who opted out of the kind are not asked).
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: String,
    /// The zone the user's calendar follows: their own, or the schedule's fallback zone.
    pub tz: Tz,
    /// How the templates address them.
    pub user: User,
}

impl Recipient {
    /// A user of the app's `herald_users`, in `tz`, with their locale.
    pub fn of(user: &crate::source::UserRow, tz: Tz) -> Recipient {
        let mut r = Recipient::new(&user.id, &user.display_name, &user.email, tz);
        r.user.locale.clone_from(&user.locale);
        r
    }

    pub fn new(id: &str, name: &str, email: &str, tz: Tz) -> Recipient {
        Recipient {
            id: id.to_owned(),
            tz,
            user: User {
                name: name.to_owned(),
                email: email.to_owned(),
                timezone: tz.name().to_owned(),
                locale: None,
            },
        }
    }
}

/// One user's email from a kind's data, or `None` when the kind has nothing to say.
pub fn payload<K: EmailKind + ?Sized>(
    kind: &K,
    to: &Recipient,
    at: DateTime<Utc>,
    data: &K::Data,
) -> Option<Payload> {
    kind.has_news(data)
        .then(|| Payload::new(K::NAME, &to.user, at, &kind.compose(to.tz, at, data)))
}

/// The instant of every kind's sample: Sunday 22 November 2026, 17:00 in London.
pub const SAMPLE_AT: &str = "2026-11-22T17:00:00Z";

/// The sample's recipient: Ada Lovelace in Europe/London.
pub fn sample_recipient() -> Recipient {
    Recipient::new(
        "1",
        "Ada Lovelace",
        "ada@example.com",
        chrono_tz::Europe::London,
    )
}

/// An open task for samples: due two days before `at`, with a title that needs escaping in HTML.
pub fn sample_task(at: DateTime<Utc>) -> TaskRow {
    TaskRow {
        id: "1".into(),
        user_id: "1".into(),
        title: "Write the <report>".into(),
        due_at: Some(at - chrono::Duration::days(2)),
        completed_at: None,
        link_path: None,
    }
}

/// A kind's sample email and whether the kind would send it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample's name, which names its golden files (`tests/golden/<kind>/<name>/`).
    pub name: &'static str,
    pub payload: Payload,
    /// `false` is a mistake in the kind: its sample checks the templates against an email that
    /// is never sent.
    pub has_news: bool,
}

/// An [`EmailKind`] with its data type hidden, so that [`KINDS`] can list every kind. Every
/// `EmailKind` is one already; there is nothing to implement.
pub trait AnyKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn schedule(&self) -> DefaultSchedule;
    /// The path in the host app the email's button opens by default.
    fn link(&self) -> &'static str;
    /// Loads the data of `users` at `at` and composes the emails of every user with something
    /// to say: for user `i` of `users`, `(i, end of the dedup key, payload)`, in their order.
    /// `date(i)` is the fire's local date for user `i`.
    fn compose_all<'a>(
        &'a self,
        source: &'a Source,
        users: &'a [Recipient],
        at: DateTime<Utc>,
        date: &'a (dyn Fn(usize) -> NaiveDate + Send + Sync),
    ) -> BoxFuture<'a, anyhow::Result<Vec<(usize, String, Payload)>>>;
    fn samples(&self) -> Vec<Sample>;
    /// For a kind relative to each task's time ([`ItemKind`]): when its emails go by default.
    /// `None` for a kind at a wall-clock time.
    fn relative(&self) -> Option<When> {
        None
    }
    /// Whether its schedule runs unless the configuration says.
    fn on_by_default(&self) -> bool {
        true
    }
    /// For an [`ItemKind`]: a page of the open tasks it may tell about (see
    /// [`ItemKind::items`]). A kind at a wall-clock time has no items.
    fn items<'a>(
        &'a self,
        _source: &'a Source,
        _page: &'a TaskPage<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<TaskRow>>> {
        let name = self.name();
        Box::pin(async move {
            anyhow::bail!("{name} fires at a wall-clock time, not relative to each task")
        })
    }
    /// For an [`ItemKind`]: the email about one task to `to`, planned for `at`.
    fn compose_item(
        &self,
        _to: &Recipient,
        _at: DateTime<Utc>,
        _item: &TaskRow,
    ) -> Option<Payload> {
        None
    }
}

impl<K: EmailKind> AnyKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn about(&self) -> &'static str {
        K::ABOUT
    }

    fn schedule(&self) -> DefaultSchedule {
        K::SCHEDULE
    }

    fn link(&self) -> &'static str {
        K::LINK
    }

    fn compose_all<'a>(
        &'a self,
        source: &'a Source,
        users: &'a [Recipient],
        at: DateTime<Utc>,
        date: &'a (dyn Fn(usize) -> NaiveDate + Send + Sync),
    ) -> BoxFuture<'a, anyhow::Result<Vec<(usize, String, Payload)>>> {
        Box::pin(async move {
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let data = self.load(source, users, at).await?;
            let nothing = K::Data::default();
            let mut emails = Vec::with_capacity(users.len());
            for (i, u) in users.iter().enumerate() {
                let d = data.get(&u.id).unwrap_or(&nothing);
                for (key, payload) in self.emails(u, at, date(i), d) {
                    emails.push((i, key, payload));
                }
            }
            Ok(emails)
        })
    }

    fn samples(&self) -> Vec<Sample> {
        let at = sample_at();
        let to = sample_recipient();
        EmailKind::samples(self, at)
            .into_iter()
            .map(|(name, data)| Sample {
                name,
                payload: Payload::new(K::NAME, &to.user, at, &self.compose(to.tz, at, &data)),
                has_news: self.has_news(&data),
            })
            .collect()
    }
}

fn sample_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(SAMPLE_AT)
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// Every sample email of every kind, for the template check.
pub fn samples() -> Vec<Payload> {
    Kind::all()
        .flat_map(|k| k.samples())
        .map(|s| s.payload)
        .collect()
}

/// Every kind's defaults, in the order of [`KINDS`]: what the configuration is loaded with
/// (`Settings::load`), so that it knows each kind's name, cron, zone and link without knowing
/// the kinds.
pub fn defaults() -> Vec<KindDefaults> {
    Kind::all().map(Kind::defaults).collect()
}

/// A registered kind: a copyable handle on an entry of [`KINDS`], compared by name.
#[derive(Clone, Copy)]
pub struct Kind(&'static dyn AnyKind);

impl Kind {
    /// Every kind, in the order of [`KINDS`].
    pub fn all() -> impl Iterator<Item = Kind> {
        KINDS.iter().map(|k| Kind(*k))
    }

    /// "task_reminders, overdue_summary, …", for error messages.
    pub fn names() -> String {
        Kind::all().map(Kind::name).collect::<Vec<_>>().join(", ")
    }

    pub fn find(name: &str) -> Option<Kind> {
        Kind::all().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub fn about(self) -> &'static str {
        self.0.about()
    }

    pub fn schedule(self) -> DefaultSchedule {
        self.0.schedule()
    }

    /// See [`EmailKind::LINK`].
    pub fn link(self) -> &'static str {
        self.0.link()
    }

    /// See [`AnyKind::compose_all`].
    pub fn compose_all<'a>(
        self,
        source: &'a Source,
        users: &'a [Recipient],
        at: DateTime<Utc>,
        date: &'a (dyn Fn(usize) -> NaiveDate + Send + Sync),
    ) -> BoxFuture<'a, anyhow::Result<Vec<(usize, String, Payload)>>> {
        self.0.compose_all(source, users, at, date)
    }

    /// Every sample of the kind, in its order; the first is its main one.
    pub fn samples(self) -> Vec<Sample> {
        self.0.samples()
    }

    /// See [`AnyKind::relative`].
    pub fn relative(self) -> Option<When> {
        self.0.relative()
    }

    /// See [`AnyKind::on_by_default`].
    pub fn on_by_default(self) -> bool {
        self.0.on_by_default()
    }

    /// What the configuration is told of this kind at start-up (see [`defaults`]).
    pub fn defaults(self) -> KindDefaults {
        let schedule = self.schedule();
        KindDefaults {
            name: self.name(),
            cron: schedule.cron,
            timezone: schedule.timezone,
            link: self.link(),
            enabled: self.on_by_default(),
            relative: self.relative(),
        }
    }

    /// The kind a schedule sends: the one named like it. The settings take only the names
    /// [`defaults`] handed them, so every schedule of a `Settings` loaded with them has one.
    pub fn of(schedule: &ScheduleSettings) -> Kind {
        Kind::find(&schedule.name)
            .expect("a schedule is named after a kind: the settings know no other names")
    }

    /// See [`AnyKind::items`].
    pub fn items<'a>(
        self,
        source: &'a Source,
        page: &'a TaskPage<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<TaskRow>>> {
        self.0.items(source, page)
    }

    /// See [`AnyKind::compose_item`].
    pub fn compose_item(
        self,
        to: &Recipient,
        at: DateTime<Utc>,
        item: &TaskRow,
    ) -> Option<Payload> {
        self.0.compose_item(to, at, item)
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Kind {}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::find(s).ok_or_else(|| {
            format!(
                "{s:?} is not a schedule; the schedules are {}",
                Kind::names()
            )
        })
    }
}

#[cfg(test)]
mod tests;
