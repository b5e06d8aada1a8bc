//! The stores the conformance suites run against: SQLite in a temporary directory, and
//! PostgreSQL in a fresh schema when `APPIZER_TEST_POSTGRES_URL` is set (required under
//! CI). To start PostgreSQL on a Debian machine:
//! `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.

use std::sync::Arc;

use appizer_storage::{open_metadata_store, MetadataStore};

/// A store plus whatever keeps it alive (a temp dir).
pub struct Fixture {
    pub store: Arc<dyn MetadataStore>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite_store() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    Some(Fixture {
        store: open_metadata_store(&url).await.unwrap(),
        _dir: Some(dir),
    })
}

pub async fn postgres_store() -> Option<Fixture> {
    let Ok(base) = std::env::var("APPIZER_TEST_POSTGRES_URL") else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("APPIZER_TEST_POSTGRES_URL must be set under CI");
        }
        eprintln!("skipped: set APPIZER_TEST_POSTGRES_URL to run the PostgreSQL cases");
        return None;
    };
    // A fresh schema per test keeps parallel tests apart.
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = open_pg_admin(&base).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some(Fixture {
        store: open_metadata_store(&url).await.unwrap(),
        _dir: None,
    })
}

async fn open_pg_admin(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to APPIZER_TEST_POSTGRES_URL")
}

/// Instantiates `cases::<name>(&dyn MetadataStore)` once per backend.
macro_rules! conformance_suite {
    ($backend:ident, $open:path, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(fixture) = $open().await else { return };
                    super::cases::$case(&*fixture.store).await;
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        conformance_suite!(sqlite, super::sqlite_store, [$($case),*]);
        conformance_suite!(postgres, super::postgres_store, [$($case),*]);
    };
}
