//! Shared test support: services from the environment, per-test databases.
#![allow(dead_code)]

use trackly::store::Stores;
use trackly::store::mongo::MongoStore;

/// Under CI (or scripts/test) a missing service fails the test; elsewhere the
/// test is skipped with a note.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("TRACKLY_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub fn mongo_uri() -> Option<String> {
    match std::env::var("MONGODB_URI") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !services_required(),
                "MONGODB_URI is not set, and this run requires MongoDB (run scripts/test)"
            );
            eprintln!("skipping: MONGODB_URI not set (run scripts/test)");
            None
        }
    }
}

pub fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !services_required(),
                "REDIS_URL is not set, and this run requires Redis (run scripts/test)"
            );
            eprintln!("skipping: REDIS_URL not set (run scripts/test)");
            None
        }
    }
}

/// A database name of its own for each test, so tests run in parallel.
pub fn unique_name(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect();
    format!("t_{short}_{}", trackly::domain::MessageId::new().to_hex())
}

/// Stores under test, and what to clean up afterwards.
pub struct TestStores {
    pub stores: Stores,
    pub mongo: Option<MongoStore>,
}

impl TestStores {
    pub async fn cleanup(self) {
        if let Some(m) = self.mongo {
            let _ = m.drop_database().await;
        }
    }
}

pub async fn memory(_test: &str) -> Option<TestStores> {
    Some(TestStores {
        stores: Stores::memory(),
        mongo: None,
    })
}

pub async fn mongo(test: &str) -> Option<TestStores> {
    let uri = mongo_uri()?;
    let m = connect_mongo(&uri, &unique_name(test)).await;
    Some(TestStores {
        stores: Stores::from_backend(std::sync::Arc::new(m.clone()), "mongodb"),
        mongo: Some(m),
    })
}

pub async fn connect_mongo(uri: &str, db: &str) -> MongoStore {
    let m = MongoStore::connect(uri, db, std::time::Duration::from_secs(10))
        .await
        .expect("MongoDB client");
    m.ensure_indexes().await.expect("indexes");
    m
}
