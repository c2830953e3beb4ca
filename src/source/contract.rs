//! The source contract: the three relations an app's views give Herald, their columns, and what
//! each column must hold (the README's table, `herald check`'s reference).

/// The relations of the contract, with their columns and what each must hold.
pub const RELATIONS: &[Relation] = &[
    Relation {
        name: "herald_users",
        about: "one row per user who may get email",
        columns: &[
            Column::text("id", "the user's id in the app, as text (unique)"),
            Column::text("email", "the address emails go to"),
            Column::text("display_name", "how emails greet them"),
            Column::text_or_null(
                "time_zone",
                "an IANA zone such as Europe/Paris; NULL: the schedule's fallback zone",
            ),
            Column::text_or_null(
                "locale",
                "a BCP 47 tag such as fr-CA; NULL: the default language",
            ),
            Column::boolean("active", "false: the account gets no email"),
        ],
    },
    Relation {
        name: "herald_tasks",
        about: "one row per task",
        columns: &[
            Column::text("id", "the task's id in the app, as text (unique)"),
            Column::text("user_id", "the owner: an id of herald_users"),
            Column::text("title", "what the email calls the task"),
            Column::time("due_at", "when it is due (UTC); NULL: no due time"),
            Column::time(
                "completed_at",
                "when it was completed (UTC); NULL: still open",
            ),
            Column::text_or_null("link_path", "the task's path in the app, such as /tasks/42"),
        ],
    },
    Relation {
        name: "herald_focus_sessions",
        about: "one row per focus session",
        columns: &[
            Column::text("id", "the session's id in the app, as text"),
            Column::text("user_id", "the owner: an id of herald_users"),
            Column::time("started_at", "when it started (UTC)"),
            Column::integer("minutes", "how long it lasted"),
        ],
    },
];

/// A relation of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Relation {
    pub name: &'static str,
    pub about: &'static str,
    pub columns: &'static [Column],
}

/// A column of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    pub about: &'static str,
}

/// The types the contract knows, as each database names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Boolean,
    Time,
    Integer,
}

impl Column {
    const fn new(
        name: &'static str,
        ty: ColumnType,
        nullable: bool,
        about: &'static str,
    ) -> Column {
        Column {
            name,
            ty,
            nullable,
            about,
        }
    }
    const fn text(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Text, false, about)
    }
    const fn text_or_null(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Text, true, about)
    }
    const fn boolean(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Boolean, false, about)
    }
    const fn time(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Time, true, about)
    }
    const fn integer(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Integer, false, about)
    }
}
