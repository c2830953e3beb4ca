//! The API's OpenAPI 3.1 document: made by utoipa from the handlers' `#[utoipa::path]` and their
//! types, gathered with the router itself ([`super::app_and_document`]), and served at
//! `GET /api/openapi.json` behind the token like the rest of `/api`. The 404 of an unknown path
//! lists the same routes ([`Known`]).

use std::sync::Arc;

use axum::{Extension, Json, response::IntoResponse};
use serde::Serialize;
use utoipa::{
    OpenApi, ToSchema,
    openapi::{
        self,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use crate::{config::Settings, kinds::Kind};

/// Every error the API answers outside a 500's opaque one: what was wrong and how to fix it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The schemas of the API's inputs, made from [`crate::input`]'s rules so that the document
/// says what the API accepts: every value they admit is taken (Schemathesis checks it).
pub mod inputs {
    use serde_json::json;
    use utoipa::{
        PartialSchema, ToSchema,
        openapi::{
            KnownFormat, ObjectBuilder, OneOfBuilder, Ref, RefOr, Schema, SchemaFormat, Type,
            schema::AdditionalProperties,
        },
    };

    use crate::{input, kinds::Kind};

    /// A string input with a pattern.
    fn text(description: &str, pattern: String, example: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .pattern(Some(pattern))
            .examples([example])
            .into()
    }

    impl ToSchema for UserId {}
    impl ToSchema for Instant {}
    impl ToSchema for Since {}
    impl ToSchema for Limit {}
    impl ToSchema for KindName {}
    impl ToSchema for PreferencesUpdate {}
    impl ToSchema for TriggerUserId {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            schemas.push((UserId::name().into_owned(), UserId::schema()));
        }
    }

    /// A user's id ([`input::text_id`]).
    pub struct UserId;
    impl PartialSchema for UserId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The app's id of a user: 1 to 255 characters, no control characters.",
                ))
                .min_length(Some(1))
                .max_length(Some(input::USER_ID_MAX_CHARS))
                .pattern(Some(input::patterns::user_id()))
                .examples(["42"])
                .into()
        }
    }

    /// A user's id in a JSON body ([`input::user_id`]): a string, or a whole number for its
    /// digits.
    pub struct TriggerUserId;
    impl PartialSchema for TriggerUserId {
        fn schema() -> RefOr<Schema> {
            OneOfBuilder::new()
                .item(Ref::from_schema_name("UserId"))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .description(Some(
                            "A whole number (a 64-bit one), for its digits; written with a \
                             fraction (`42.0`), up to 2^52 - 1 either side of 0",
                        ))
                        .minimum(Some(i64::MIN as isize))
                        .maximum(Some(u64::MAX as usize)),
                )
                .into()
        }
    }

    /// An instant to plan or preview ([`input::instant`], [`crate::schedule::check_at`]).
    pub struct Instant;
    impl PartialSchema for Instant {
        fn schema() -> RefOr<Schema> {
            text(
                "An instant in RFC 3339 with `Z` or an offset (the seconds may be left out), \
                 from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.",
                input::patterns::plan_instant(),
                "2026-11-24T09:00:00Z",
            )
        }
    }

    /// Where a list starts ([`input::Since`]).
    pub struct Since;
    impl PartialSchema for Since {
        fn schema() -> RefOr<Schema> {
            text(
                "An age before now (`24h`, `7d`, `1h 30m`) or an instant in RFC 3339 with `Z` or \
                 an offset (`2026-11-01T00:00:00Z`).",
                input::patterns::since(),
                "24h",
            )
        }
    }

    /// How many rows ([`input::limit`]).
    pub struct Limit;
    impl PartialSchema for Limit {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some("How many rows, newest first (100 when left out)."))
                .minimum(Some(1))
                .maximum(Some(input::MAX_LIMIT as isize))
                .default(Some(json!(input::DEFAULT_LIMIT)))
                .into()
        }
    }

    /// A kind of email ([`input::kind`]).
    pub struct KindName;
    impl PartialSchema for KindName {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("A kind of email"))
                .enum_values(Some(Kind::all().map(Kind::name)))
                .into()
        }
    }

    /// The body of `PUT /api/users/{id}/preferences`.
    pub struct PreferencesUpdate;
    impl PartialSchema for PreferencesUpdate {
        fn schema() -> RefOr<Schema> {
            let kinds = ObjectBuilder::new()
                .description(Some(
                    "The kinds to set: true, the user gets it; false, not. At least one.",
                ))
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(Kind::all().map(Kind::name))),
                ))
                .additional_properties(Some(AdditionalProperties::RefOr(
                    ObjectBuilder::new().schema_type(Type::Boolean).into(),
                )))
                .min_properties(Some(1));
            ObjectBuilder::new()
                .property("kinds", kinds)
                .required("kinds")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .examples([json!({ "kinds": { "weekly_report": false } })])
                .into()
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Scheduled email notifications: triggers, previews, the failed set, \
            preferences and suppressions. Every route under /api asks for \
            `Authorization: Bearer $HERALD_API_TOKEN`; an address that fails it 10 times in a \
            minute is answered 429 until the minute is over.",
    ),
    components(schemas(
        ErrorBody,
        inputs::UserId,
        inputs::Instant,
        inputs::Since,
        inputs::Limit,
        inputs::KindName
    )),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "schedules", description = "Schedules: their state, pauses and manual triggers"),
        (name = "preview", description = "The email a user would get"),
        (name = "failed", description = "The failed set"),
        (name = "users", description = "Users' preferences"),
        (name = "suppressions", description = "Hard bounces and complaints"),
        (name = "sessions", description = "The dashboard's sessions"),
        (name = "unsubscribe", description = "One-click unsubscribe"),
        (name = "webhooks", description = "Provider events"),
        (name = "status", description = "The operator's overview"),
    )
)]
struct Base;

/// The whole document: the base, the open routes, and the API's under `/api`, with the names
/// of this daemon's schedules in its paths.
pub fn document_of(
    open: openapi::OpenApi,
    api: openapi::OpenApi,
    settings: &Settings,
) -> openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(open);
    let mut doc = doc.nest("/api", with_names(with_door(api), settings));
    bodies_left_out_not_null(&mut doc);
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    doc
}

/// The schedule in `/schedules/{name}/…` and the kind in `/preview/{kind}`: one of the schedules
/// this daemon was configured with (a preview's kind also needs its schedule), as an `enum`.
fn with_names(mut api: openapi::OpenApi, settings: &Settings) -> openapi::OpenApi {
    use utoipa::openapi::{ObjectBuilder, Type, path::ParameterIn};
    let schedules: Vec<&str> = settings.schedules.iter().map(|s| s.name.as_str()).collect();
    let kinds: Vec<&str> = schedules
        .iter()
        .copied()
        .filter(|name| Kind::find(name).is_some())
        .collect();
    for (path, item) in api.paths.paths.iter_mut() {
        let (param, names) = if path.starts_with("/schedules/{name}/") {
            ("name", &schedules)
        } else if path == "/preview/{kind}" {
            ("kind", &kinds)
        } else {
            continue;
        };
        for op in operations(item) {
            for p in op.parameters.iter_mut().flatten() {
                if let utoipa::openapi::RefOr::T(p) = p
                    && p.name == param
                    && p.parameter_in == ParameterIn::Path
                {
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(names.iter().copied()))
                            .into(),
                    );
                }
            }
        }
    }
    api
}

/// The operations of a path that the API serves (it has no PATCH, HEAD or other method).
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// A body that may be left out (`Option<T>` to utoipa, which also admits JSON `null`) is sent
/// whole or not at all: the API reads no body, or whitespace, as none, and `null` as a body that
/// is not valid.
fn bodies_left_out_not_null(doc: &mut openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Required, Schema, Type, schema::SchemaType};
    let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let Some(RefOr::T(body)) = op.request_body.as_mut() else {
                continue;
            };
            if body.required == Some(Required::True) {
                continue;
            }
            for content in body.content.values_mut() {
                if let RefOr::T(content) = content
                    && let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                    && one_of.items.len() == 2
                    && one_of.items.iter().any(is_null)
                {
                    content.schema = one_of.items.iter().find(|s| !is_null(s)).cloned();
                }
            }
        }
    }
}

/// Every operation under `/api` may also answer what the token check answers ([`super::guard`]).
fn with_door(mut api: openapi::OpenApi) -> openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        for op in operations(item) {
            for (code, what) in [
                ("401", "Missing or wrong bearer token"),
                ("403", "No token is configured: the API is closed"),
                (
                    "429",
                    "Too many failed tokens from this address; see Retry-After",
                ),
            ] {
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| error(what).into());
            }
        }
    }
    api
}

/// The document as served, and the routes it lists for the 404 of an unknown path.
#[derive(Debug)]
pub struct Known {
    /// `GET /healthz, GET /readyz, …`.
    pub routes: String,
    pub json: serde_json::Value,
}

impl Known {
    pub fn of(doc: &openapi::OpenApi) -> Known {
        Known {
            routes: routes(doc)
                .iter()
                .map(|(m, p)| format!("{m} {p}"))
                .collect::<Vec<_>>()
                .join(", "),
            json: serde_json::to_value(doc).expect("an OpenAPI document serializes"),
        }
    }
}

/// Every `(METHOD, path)` of a document, in the document's order.
pub fn routes(doc: &openapi::OpenApi) -> Vec<(String, String)> {
    let json = serde_json::to_value(doc).expect("an OpenAPI document serializes");
    let mut out = Vec::new();
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "status",
    description = "This document (OpenAPI 3.1).",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value)),
    security(("bearer" = [])))]
pub(super) async fn document(Extension(known): Extension<Arc<Known>>) -> impl IntoResponse {
    Json(known.json.clone())
}
