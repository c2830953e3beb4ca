//! The enums the store keeps in TEXT columns (a delivery's status, an attempt's outcome), read
//! and written, shown and serialized under the lowercase names the columns hold.

use std::fmt;

use sqlx::{
    Database,
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgHasArrayType, PgTypeInfo},
};
use strum::IntoEnumIterator;

use crate::domain::ErrorClass;

/// Where a delivery stands (`deliveries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter)]
pub enum DeliveryStatus {
    /// Waiting: due now or later (planned ahead, spread, a retry), or pushed to Redis.
    Queued,
    /// Claimed by a worker for one attempt.
    Sending,
    Sent,
    /// In the failed set, until an operator retries or purges it.
    Failed,
    /// Planned for a fire that was missed: never sent (the reason is its `last_error`).
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::all().find(|s| s.as_str() == text)
    }

    /// Every status, in the order above.
    pub fn all() -> impl Iterator<Item = DeliveryStatus> {
        DeliveryStatus::iter()
    }
}

/// What one try at one provider came to (`delivery_attempts.outcome`): sent, or the class of
/// the error that stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Sent,
    Failed(ErrorClass),
}

impl AttemptOutcome {
    /// `sent`, or the error class's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Failed(class) => class.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::all().find(|o| o.as_str() == text)
    }

    /// Every outcome: sent, then each error class.
    pub fn all() -> impl Iterator<Item = AttemptOutcome> {
        std::iter::once(AttemptOutcome::Sent).chain(ErrorClass::iter().map(AttemptOutcome::Failed))
    }
}

impl From<ErrorClass> for AttemptOutcome {
    fn from(class: ErrorClass) -> AttemptOutcome {
        AttemptOutcome::Failed(class)
    }
}

/// Shows, serializes, encodes and decodes an enum as the TEXT its `as_str` gives (and its
/// `parse` takes back), the same name in PostgreSQL, SQLite, in JSON and in templates. A name the enum
/// does not know, read from the database, is an error that lists the names it knows.
macro_rules! stored_as_text {
    ($enum:ident, $what:literal) => {
        impl fmt::Display for $enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        // For each database whose text type it is (PostgreSQL's `text`, SQLite's TEXT).
        impl<DB: Database> sqlx::Type<DB> for $enum
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl PgHasArrayType for $enum {
            fn array_type_info() -> PgTypeInfo {
                <&str as PgHasArrayType>::array_type_info()
            }
        }

        impl<'q, DB: Database> sqlx::Encode<'q, DB> for $enum
        where
            &'static str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: Database> sqlx::Decode<'r, DB> for $enum
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<$enum, BoxDynError> {
                let text = <&str as sqlx::Decode<'r, DB>>::decode(value)?;
                $enum::parse(text).ok_or_else(|| {
                    let known: Vec<&str> = $enum::all().map($enum::as_str).collect();
                    format!(
                        "the database holds the {} {text:?}, which this Herald does not know \
                         (it knows {}): was it written by a newer Herald?",
                        $what,
                        known.join(", ")
                    )
                    .into()
                })
            }
        }
    };
}

stored_as_text!(DeliveryStatus, "delivery status");
stored_as_text!(AttemptOutcome, "attempt outcome");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_outcome_reads_back_from_its_name() {
        let statuses: Vec<&str> = DeliveryStatus::all().map(DeliveryStatus::as_str).collect();
        // The names of the CHECK constraint of `deliveries.status` (0001_schema.sql).
        assert_eq!(statuses, ["queued", "sending", "sent", "failed", "skipped"]);
        for s in DeliveryStatus::all() {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.to_string(), s.as_str());
        }
        let outcomes: Vec<&str> = AttemptOutcome::all().map(AttemptOutcome::as_str).collect();
        assert_eq!(
            outcomes,
            [
                "sent",
                "permanent",
                "transient",
                "unknown",
                "rate_limited",
                "quota",
                "configuration"
            ]
        );
        for o in AttemptOutcome::all() {
            assert_eq!(AttemptOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for bad in ["", "Sent", "none", "rate-limited"] {
            assert_eq!(DeliveryStatus::parse(bad), None, "{bad}");
            assert_eq!(AttemptOutcome::parse(bad), None, "{bad}");
        }
    }
}
