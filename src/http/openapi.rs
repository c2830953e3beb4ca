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

/// Every error the API answers outside a 500's opaque one: what was wrong and how to fix it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
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
    components(schemas(ErrorBody)),
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

/// The whole document: the base, the open routes, and the API's under `/api`.
pub fn document_of(open: openapi::OpenApi, api: openapi::OpenApi) -> openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(open);
    let mut doc = doc.nest("/api", with_door(api));
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    doc
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
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
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
