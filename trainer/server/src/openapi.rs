//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`, built with utoipa's builders.
//!
//! The wire types live in `slowfast-core`, which stays free of server crates, so their schemas
//! are written here; a test checks them against the types' serialised fields. The document
//! states every rule [`super::limits`] checks that the schema language can say, including what
//! comes from the served bundle ([`Constraints`]): `neg_memory` and the feed's vectors have
//! exactly `d` items, event items are the bundle's ids (an `enum` up to
//! [`MAX_ENUM_ITEMS`] items), model files are the bundle's. A client generated from it, or a
//! fuzzer such as schemathesis, produces uploads the server accepts. It cannot say that an
//! upload's optional `user` must be the token's (403 otherwise).

use slowfast_core::wire::{MAX_BODY_BYTES, MAX_EVENTS_PER_UPLOAD, MAX_FEED_K, MAX_ID_BYTES};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, Required, ResponseBuilder,
};

fn string(desc: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(desc))
}

/// Item catalogues up to this size are listed as the `enum` of an event's item id; larger
/// ones only say so in the description.
pub const MAX_ENUM_ITEMS: usize = 10_000;

/// What the served bundle adds to the document.
#[derive(Clone, Copy, Debug)]
pub struct Constraints<'a> {
    /// The model dimension `d`.
    pub dim: usize,
    /// The bundle's item ids.
    pub items: &'a [String],
    /// The device files `GET /v1/model/{file}` serves.
    pub files: &'a [&'a str],
}

/// Exactly `d` 32-bit floats (finite: a larger magnitude does not fit one).
fn floats(desc: &str, d: usize) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Float,
                )))
                .minimum(Some(-f64::from(f32::MAX)))
                .maximum(Some(f64::from(f32::MAX))),
        )
        .min_items(Some(d))
        .max_items(Some(d))
        .description(Some(desc))
}

fn object(props: Vec<(&str, Schema)>, required: &[&str], desc: &str) -> Schema {
    let mut o = ObjectBuilder::new().description(Some(desc));
    for (name, schema) in props {
        o = o.property(name, schema);
    }
    for r in required {
        o = o.required(*r);
    }
    o.into()
}

fn uint(desc: &str, max: Option<usize>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(0))
        .maximum(max.or(Some(i64::MAX as usize)))
        .description(Some(desc))
        .into()
}

/// The wire types' schemas by name.
pub fn schemas(c: &Constraints) -> Vec<(&'static str, Schema)> {
    let d = c.dim;
    let mut item = string("item id, one of the bundle's")
        .min_length(Some(1))
        .max_length(Some(MAX_ID_BYTES));
    if c.items.len() <= MAX_ENUM_ITEMS {
        item = item.enum_values(Some(c.items.iter().cloned()));
    }
    let event = object(
        vec![
            ("item", item.into()),
            ("ts", uint("Unix milliseconds", None)),
        ],
        &["item", "ts"],
        "one click or exposure",
    );
    let events = |desc: &str| -> Schema {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("WireEvent"))
            .max_items(Some(MAX_EVENTS_PER_UPLOAD))
            .description(Some(desc))
            .into()
    };
    let id = |desc: &str| -> Schema {
        string(desc)
            .min_length(Some(1))
            .max_length(Some(MAX_ID_BYTES))
            .pattern(Some(NO_NUL))
            .into()
    };
    vec![
        ("WireEvent", event),
        (
            "UploadRequest",
            object(
                vec![
                    (
                        "user",
                        string(
                            "optional (or null); when given it must be the token's user, else 403",
                        )
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::String,
                            Type::Null,
                        ]))
                        .min_length(Some(1))
                        .max_length(Some(MAX_ID_BYTES))
                        .into(),
                    ),
                    (
                        "idempotency_key",
                        id("a retried batch reuses it; stored once"),
                    ),
                    (
                        "model_version",
                        id("bundle version neg_memory was computed with"),
                    ),
                    (
                        "neg_memory",
                        floats("r̂2 (eq. 5), d finite floats", d).into(),
                    ),
                    ("clicks", events("clicks since the last upload")),
                    (
                        "exposures",
                        events("exposures since the last upload (optional)"),
                    ),
                ],
                &["idempotency_key", "model_version", "neg_memory", "clicks"],
                "F2S upload (paper §4.3)",
            ),
        ),
        (
            "UploadResponse",
            object(
                vec![
                    (
                        "accepted_clicks",
                        uint("clicks stored", Some(MAX_EVENTS_PER_UPLOAD)),
                    ),
                    (
                        "accepted_exposures",
                        uint("exposures stored", Some(MAX_EVENTS_PER_UPLOAD)),
                    ),
                    (
                        "duplicate",
                        ObjectBuilder::new()
                            .schema_type(Type::Boolean)
                            .description(Some("the key was seen before; nothing new stored"))
                            .into(),
                    ),
                ],
                &["accepted_clicks", "accepted_exposures", "duplicate"],
                "the answer to an upload (the first answer again for a repeated key)",
            ),
        ),
        (
            "FeedItem",
            object(
                vec![
                    ("item", string("item id").into()),
                    ("embedding", floats("e_i, d floats", d).into()),
                    ("r_t", floats("r_t of eq. 1, d floats", d).into()),
                    ("r_n", floats("r_n of eq. 5, d floats", d).into()),
                    (
                        "slow_score",
                        ObjectBuilder::new()
                            .schema_type(Type::Number)
                            .description(Some("the slow model's logit (eq. 6)"))
                            .into(),
                    ),
                ],
                &["item", "embedding", "r_t", "r_n", "slow_score"],
                "a candidate with the slow component's priors (S2F, eq. 7)",
            ),
        ),
        (
            "FeedResponse",
            object(
                vec![
                    ("model_version", string("bundle version that ranked").into()),
                    (
                        "items",
                        ArrayBuilder::new()
                            .items(Ref::from_schema_name("FeedItem"))
                            .max_items(Some(MAX_FEED_K))
                            .description(Some("best first, at most k"))
                            .into(),
                    ),
                ],
                &["model_version", "items"],
                "the top k of the user's candidate pool",
            ),
        ),
        (
            "ErrorBody",
            object(
                vec![
                    ("error", string("machine-readable code").into()),
                    ("field", string("the request field at fault").into()),
                    ("message", string("a sentence for people").into()),
                ],
                &["error", "message"],
                "every 4xx/5xx body",
            ),
        ),
    ]
}

fn json_response(desc: &str, schema: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(desc)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
}

/// Ids may not hold NUL (PostgreSQL's text cannot store it).
const NO_NUL: &str = "^[^\\u0000]*$";

fn errors(op: OperationBuilder) -> OperationBuilder {
    let rate_limited = ResponseBuilder::new()
        .description("past the token's rate limit (`--rate-limit`); retry after `Retry-After`")
        .header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new()
                .schema(uint("whole seconds to wait", None))
                .description(Some("whole seconds until a request would pass"))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    op.response(
        "400",
        json_response("a field broke a limit; the body names it", "ErrorBody"),
    )
    .response(
        "401",
        json_response("missing, forged or expired token", "ErrorBody"),
    )
    .response(
        "403",
        json_response(
            "the request names a user other than the token's",
            "ErrorBody",
        ),
    )
    .response("429", rate_limited)
    .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
}

fn etag_get(summary: &str, ok: &str) -> OperationBuilder {
    errors(
        OperationBuilder::new()
            .summary(Some(summary))
            .parameter(
                ParameterBuilder::new()
                    .name("If-None-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .schema(Some(string("an ETag from an earlier answer"))),
            )
            .response("200", ResponseBuilder::new().description(ok).build())
            .response(
                "304",
                ResponseBuilder::new()
                    .description("If-None-Match matched the ETag")
                    .build(),
            )
            .response("404", json_response("no such file", "ErrorBody")),
    )
}

/// The whole document for a server serving a bundle with `c`.
pub fn document(c: &Constraints) -> OpenApi {
    let upload = errors(
        OperationBuilder::new()
            .summary(Some(
                "Upload r̂2 and the events since the last upload (idempotent)",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some(format!("JSON, at most {MAX_BODY_BYTES} bytes")))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("UploadRequest")))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .response(
                "200",
                json_response(
                    "stored, or (the key's retry with the same content) the first answer again",
                    "UploadResponse",
                ),
            )
            .response(
                "409",
                json_response(
                    "the idempotency key is stored with other content; nothing was stored",
                    "ErrorBody",
                ),
            )
            .response("413", json_response("body too large", "ErrorBody")),
    );
    let feed = errors(
        OperationBuilder::new()
            .summary(Some(
                "Top k candidates ranked by the slow model, with e_i, r_t, r_n",
            ))
            .description(Some(
                "Items among the user's recent clicks and, with the server's seen filter \
                 (`--seen N`), among the user's latest N uploaded exposures are left out.",
            ))
            .parameter(
                ParameterBuilder::new()
                    .name("k")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::True)
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(MAX_FEED_K)),
                    )),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("user")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .schema(Some(string(
                        "must be the token's user when given (else 403)",
                    ))),
            )
            .response("200", json_response("best first", "FeedResponse"))
            .response(
                "503",
                json_response("the bundle has no slow.onnx", "ErrorBody"),
            ),
    );
    let model = etag_get(
        "The current bundle's manifest.json",
        "manifest.json, with ETag",
    );
    let file = etag_get(
        "One device file of the bundle",
        "the file's bytes, with ETag",
    )
    .parameter(
        ParameterBuilder::new()
            .name("file")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                string("a device file of the bundle")
                    .enum_values(Some(c.files.iter().map(|f| f.to_string()))),
            )),
    );
    let plain = |summary: &str| {
        OperationBuilder::new()
            .summary(Some(summary))
            .response("200", ResponseBuilder::new().description("OK").build())
    };
    let paths = PathsBuilder::new()
        .path("/v1/upload", PathItem::new(HttpMethod::Post, upload))
        .path("/v1/feed", PathItem::new(HttpMethod::Get, feed))
        .path("/v1/model", PathItem::new(HttpMethod::Get, model))
        .path("/v1/model/{file}", PathItem::new(HttpMethod::Get, file))
        .path(
            "/v1/openapi.json",
            PathItem::new(HttpMethod::Get, plain("This document")),
        )
        .path(
            "/healthz",
            PathItem::new(HttpMethod::Get, plain("Liveness")),
        )
        .path(
            "/metrics",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .summary(Some("Metrics in the Prometheus text format"))
                    .response(
                        "200",
                        ResponseBuilder::new()
                            .description("text/plain; version=0.0.4")
                            .content("text/plain", ContentBuilder::new().build())
                            .build(),
                    ),
            ),
        );
    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "base64url(user|expiry).base64url(HMAC-SHA256(secret, user|expiry)); \
                     `slowfast token --user U --ttl SECS`",
                ))
                .build(),
        ),
    );
    for (name, schema) in schemas(c) {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("slowfast sync API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("MC²-SF mobile-cloud sync: uploads of the negative memory r̂2 and events, feeds of candidates with their priors, model bundles")),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_core::wire::{
        ErrorBody, FeedItem, FeedResponse, UploadRequest, UploadResponse, WireEvent,
    };

    fn doc() -> serde_json::Value {
        let items = ["a".to_string(), "b".to_string()];
        serde_json::to_value(document(&Constraints {
            dim: 3,
            items: &items,
            files: &["fast.onnx", "neg_step.onnx"],
        }))
        .unwrap()
    }

    fn properties(name: &str) -> Vec<String> {
        let doc = doc();
        let props = &doc["components"]["schemas"][name]["properties"];
        let mut keys: Vec<String> = props.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn fields(v: impl serde::Serialize) -> Vec<String> {
        let mut keys: Vec<String> = serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn schemas_list_exactly_the_wire_types_fields() {
        let ev = WireEvent {
            item: "a".into(),
            ts: 1,
        };
        assert_eq!(properties("WireEvent"), fields(&ev));
        let up = UploadRequest {
            user: Some("u".into()),
            idempotency_key: "k".into(),
            model_version: "v".into(),
            neg_memory: vec![],
            clicks: vec![],
            exposures: vec![],
        };
        assert_eq!(properties("UploadRequest"), fields(&up));
        let ans = UploadResponse {
            accepted_clicks: 0,
            accepted_exposures: 0,
            duplicate: false,
        };
        assert_eq!(properties("UploadResponse"), fields(&ans));
        let item = FeedItem {
            item: "a".into(),
            embedding: vec![],
            r_t: vec![],
            r_n: vec![],
            slow_score: 0.0,
        };
        assert_eq!(properties("FeedItem"), fields(&item));
        let feed = FeedResponse {
            model_version: "v".into(),
            items: vec![],
        };
        assert_eq!(properties("FeedResponse"), fields(&feed));
        let err = ErrorBody {
            error: "e".into(),
            field: Some("f".into()),
            message: "m".into(),
        };
        assert_eq!(properties("ErrorBody"), fields(&err));
    }

    #[test]
    fn the_bundle_sets_dimensions_item_ids_and_files() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let neg = &schemas["UploadRequest"]["properties"]["neg_memory"];
        assert_eq!((&neg["minItems"], &neg["maxItems"]), (&3.into(), &3.into()));
        for v in ["embedding", "r_t", "r_n"] {
            assert_eq!(schemas["FeedItem"]["properties"][v]["maxItems"], 3, "{v}");
        }
        assert_eq!(
            schemas["WireEvent"]["properties"]["item"]["enum"],
            serde_json::json!(["a", "b"])
        );
        let file = &doc["paths"]["/v1/model/{file}"]["get"]["parameters"];
        let file = file
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "file")
            .unwrap();
        assert_eq!(
            file["schema"]["enum"],
            serde_json::json!(["fast.onnx", "neg_step.onnx"])
        );
        let many: Vec<String> = (0..=MAX_ENUM_ITEMS).map(|i| format!("i{i}")).collect();
        let big = serde_json::to_value(document(&Constraints {
            dim: 3,
            items: &many,
            files: &[],
        }))
        .unwrap();
        assert!(
            big["components"]["schemas"]["WireEvent"]["properties"]["item"]
                .get("enum")
                .is_none()
        );
        assert!(
            doc["paths"]["/v1/upload"]["post"]["responses"]["429"]["headers"]["Retry-After"]
                .is_object()
        );
    }

    #[test]
    fn document_lists_every_endpoint() {
        let doc = doc();
        for p in [
            "/v1/upload",
            "/v1/feed",
            "/v1/model",
            "/v1/model/{file}",
            "/v1/openapi.json",
            "/healthz",
            "/metrics",
        ] {
            assert!(doc["paths"][p].is_object(), "{p}");
        }
        assert_eq!(
            doc["paths"]["/v1/feed"]["get"]["parameters"][0]["name"],
            "k"
        );
    }
}
