//! The admin API's OpenAPI document against the router: every route the
//! admin modules register is in the document, every operation in the
//! document is served by a handler (a request without a token answers 401,
//! not 404), nothing else is served on those paths, each operation's role
//! is the one its handler enforces, and every answer a handler gives to a
//! made-up id is one the document lists.
//!
//! The routes are found independently of the document: by reading the
//! route macros in `src/http/admin/*.rs`, and refusing any other way of
//! registering a route there.

mod common;

use actix_web::test as atest;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use trackly::config::Secrets;
use trackly::providers::fake::FakeSettings;
use trackly::store::Stores;
use trackly::telemetry::Secret;

const OPERATOR: &str = "op-token-0123456789";
const READER: &str = "ro-token-0123456789";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const MADE_UP_ID: &str = "0123456789abcdef01234567";

/// `(method, path)` of every route macro in the admin modules, with the
/// scope prefix; panics on a registration the document cannot see.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/admin");
    let mut found = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "admin modules: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start().replace("actix_web::", "");
            if code.starts_with("//") {
                continue;
            }
            // Ways around the document: refused.
            for bypass in [
                ".route(",
                "web::resource(",
                "Resource::new(",
                "web::scope(",
                "Scope::new(",
                ".default_service(",
                "Route::new(",
                "web::route(",
                "web::method(",
                "web::get()",
                "web::post()",
                "web::put()",
                "web::patch()",
                "web::delete()",
                "web::head()",
                "#[routes]",
            ] {
                let allowed = name == "mod.rs"
                    && bypass == "web::scope("
                    && code.contains("web::scope(\"/api/v1\")");
                assert!(
                    !code.contains(bypass) || allowed,
                    "{name}:{}: `{bypass}` registers a route the OpenAPI document cannot see; use a route macro with #[utoipa::path] and cfg.service(handler) (see src/http/admin/mod.rs): {code}",
                    n + 1
                );
            }
            for m in METHODS {
                let open = format!("#[{m}(\"");
                if let Some(rest) = code.strip_prefix(&open) {
                    let path = rest.split('"').next().unwrap();
                    found.insert((m.to_string(), format!("/api/v1{path}")));
                }
            }
            assert!(
                !code.starts_with("#[route(") && !code.starts_with("#[head("),
                "{name}:{}: use one of {METHODS:?}",
                n + 1
            );
        }
    }
    found
}

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                ops.insert((method.clone(), path.clone()), op.clone());
            }
        }
    }
    ops
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[actix_rt::test]
async fn every_admin_route_is_documented_and_every_documented_route_is_served() {
    let t = start_daemon(
        test_config(),
        Stores::memory(),
        local_permits(),
        FakeSettings::default(),
    );
    let secrets = Arc::new(Secrets {
        admin_token: Some(Secret::new(OPERATOR)),
        readonly_token: Some(Secret::new(READER)),
        ..Default::default()
    });
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets, "https://trackly.example"),
    )))
    .await;
    macro_rules! call {
        ($method:expr, $uri:expr, $token:expr) => {{
            let mut r = atest::TestRequest::default()
                .method($method.to_uppercase().parse().unwrap())
                .uri(&$uri);
            if let Some(tok) = $token {
                r = r.insert_header(("authorization", format!("Bearer {tok}")));
            }
            let res = atest::call_service(&app, r.to_request()).await;
            let status = res.status().as_u16();
            let bytes = atest::read_body(res).await;
            (status, bytes)
        }};
    }

    // Served without a token, and the same document the code builds.
    let (s, body) = call!("get", "/api/v1/openapi.json", None::<&str>);
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        doc,
        serde_json::to_value(trackly::http::admin::document()).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    // `TRACKLY_OPENAPI_OUT=openapi.json cargo test --test openapi` writes it out.
    if let Ok(out) = std::env::var("TRACKLY_OPENAPI_OUT") {
        std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
    let ops = operations(&doc);

    // The router's routes, found in the source, against the document.
    let source = routes_in_source();
    let documented: BTreeSet<_> = ops.keys().cloned().collect();
    let missing: Vec<_> = source.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes not in the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&source).collect();
    assert!(extra.is_empty(), "documented but not registered: {extra:?}");
    assert!(source.len() >= 23, "{source:?}");

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer")),
        "{}",
        doc["components"]
    );
    let error_body = &schemas["ErrorBody"];
    assert_eq!(
        error_body["required"],
        serde_json::json!(["error", "message"])
    );
    assert!(
        error_body["properties"]["field"].is_object(),
        "{error_body}"
    );
    let mut all_refs = vec![];
    refs(&doc, &mut all_refs);
    for r in &all_refs {
        let name = r.strip_prefix("#/components/schemas/").expect(r);
        assert!(schemas.contains_key(name), "unresolved {r}");
    }

    let mut op_ids = BTreeSet::new();
    for ((method, path), op) in &ops {
        let what = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().expect(&what);
        assert!(
            op_ids.insert(id.to_string()),
            "{what}: operationId {id} twice"
        );
        let uri = path.replace("{id}", MADE_UP_ID);
        assert!(
            !uri.contains('{'),
            "{what}: a path parameter other than {{id}}"
        );
        let responses = op["responses"].as_object().expect(&what);
        let documented = |s: u16| responses.contains_key(&s.to_string());
        if path == "/api/v1/openapi.json" {
            continue;
        }
        // Its role, as the document says and as the handler enforces.
        let roles: Vec<&str> = op["security"]
            .as_array()
            .and_then(|s| s.first())
            .and_then(|s| s["bearer"].as_array())
            .expect(&what)
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let operator = match roles.as_slice() {
            ["operator"] => true,
            ["read-only"] => false,
            other => panic!("{what}: role {other:?}"),
        };
        for s in [401, 503] {
            assert!(documented(s), "{what}: {s} not documented");
        }
        assert_eq!(
            documented(403),
            operator,
            "{what}: 403 documented iff operator"
        );

        // A handler answers (401 without a token), not the router's 404.
        let (s, body) = call!(method, uri, None::<&str>);
        assert_eq!(s, 401, "{what}: {}", String::from_utf8_lossy(&body));
        let (s, body) = call!(method, uri, Some(READER));
        if operator {
            assert_eq!(s, 403, "{what}: {}", String::from_utf8_lossy(&body));
        } else {
            assert!(
                documented(s),
                "{what} answered {s}, not documented: {}",
                String::from_utf8_lossy(&body)
            );
        }
        // What a handler answers to a made-up id and no body is documented.
        let (s, body) = call!(method, uri, Some(OPERATOR));
        assert!(
            documented(s) && s != 500,
            "{what} answered {s}, not documented: {}",
            String::from_utf8_lossy(&body)
        );
        let err: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if s >= 400 {
            assert!(
                err["error"].is_string() && err["message"].is_string(),
                "{what}: {err}"
            );
        }
        // Nothing undocumented is served on a documented path.
        for other in METHODS {
            if !ops.contains_key(&(other.to_string(), path.clone())) {
                let (s, _) = call!(other, uri, Some(OPERATOR));
                assert!(
                    s == 404 || s == 405,
                    "{} {path} is served ({s}) but not documented",
                    other.to_uppercase()
                );
            }
        }
    }
    // A path nobody registered is the router's 404, so the probes above
    // mean something.
    let (s, _) = call!("get", format!("/api/v1/nothing/{MADE_UP_ID}"), None::<&str>);
    assert_eq!(s, 404);
}
