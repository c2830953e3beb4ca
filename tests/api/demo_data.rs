//! The demo app's rows as tests write them: users and tasks with numeric ids, through the
//! library's demo tables in either home. Part of the harness (`helpers.rs`), which re-exports it.

use chrono::{DateTime, Utc};
use herald::{source::demo::Demo, store::Store};

use super::TaskSpec;

/// A demo user for [`DemoData::insert_users`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub timezone: String,
}

/// A demo task for [`DemoData::insert_tasks`].
#[derive(Debug, Clone)]
pub struct NewTask {
    pub owner_id: i64,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// The demo app's tables, written through the library's [`Demo`] (whose ids are text from a
/// sequence: `"1"`, `"2"`, …), with the ids as numbers, as most tests count them. Herald itself
/// only ever sees the text.
#[allow(async_fn_in_trait)]
pub trait DemoData {
    async fn demo(&self) -> Demo;
    async fn insert_users(&self, users: &[NewUser]) -> sqlx::Result<Vec<i64>>;
    async fn insert_tasks(&self, tasks: &[NewTask]) -> sqlx::Result<u64>;
    #[allow(dead_code)]
    async fn insert_focus_sessions(&self, s: &[(i64, DateTime<Utc>, i32)]) -> sqlx::Result<u64>;
}

impl DemoData for Store {
    async fn demo(&self) -> Demo {
        let demo = match self.lite() {
            // Through the state file's one writer: a second writer in the file would refuse the
            // running app's read-then-write transactions (SQLITE_BUSY).
            Some(lite) => Demo::on_sqlite(lite.writer.clone()),
            None => Demo::connect(self.url()).await.unwrap(),
        };
        demo.install().await.unwrap();
        demo
    }

    async fn insert_users(&self, users: &[NewUser]) -> sqlx::Result<Vec<i64>> {
        let users: Vec<_> = users
            .iter()
            .map(|u| herald::source::demo::NewUser::new(&u.email, &u.display_name, &u.timezone))
            .collect();
        let ids = self.demo().await.insert_users(&users).await?;
        Ok(ids
            .iter()
            .map(|id| id.parse().expect("the demo's ids are digits"))
            .collect())
    }

    async fn insert_tasks(&self, tasks: &[NewTask]) -> sqlx::Result<u64> {
        let tasks: Vec<_> = tasks
            .iter()
            .map(|t| herald::source::demo::NewTask {
                owner_id: t.owner_id.to_string(),
                title: t.title.clone(),
                due_at: t.due_at,
                completed_at: t.completed_at,
            })
            .collect();
        Ok(self.demo().await.insert_tasks(&tasks).await?.len() as u64)
    }

    async fn insert_focus_sessions(&self, s: &[(i64, DateTime<Utc>, i32)]) -> sqlx::Result<u64> {
        let s: Vec<_> = s
            .iter()
            .map(|(id, at, m)| (id.to_string(), *at, *m))
            .collect();
        self.demo().await.insert_focus_sessions(&s).await
    }
}

pub async fn add_user(store: &Store, email: &str, tz: &str, tasks: &[TaskSpec<'_>]) -> i64 {
    let id = store
        .insert_users(&[NewUser {
            email: email.into(),
            display_name: format!("User {email}"),
            timezone: tz.into(),
        }])
        .await
        .unwrap()[0];
    let tasks: Vec<_> = tasks
        .iter()
        .map(|(title, due, done)| NewTask {
            owner_id: id,
            title: (*title).into(),
            due_at: Some(*due),
            completed_at: *done,
        })
        .collect();
    store.insert_tasks(&tasks).await.unwrap();
    id
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}
