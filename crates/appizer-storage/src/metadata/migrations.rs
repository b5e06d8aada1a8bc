//! The migrations of each backend, compiled into the binary from `migrations/<backend>/`
//! and applied at start. Append-only: a new file per change, never an edit of an
//! applied one (the database records each file's checksum and refuses a changed one).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// `(file name, SQL)` of each migration, in order.
type Files = &'static [(&'static str, &'static str)];

macro_rules! files {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../migrations/", $dir, "/", $name)))),*]
    };
}

const SQLITE: Files = files!("sqlite": "0001_tenancy.sql", "0002_events.sql", "0003_persons.sql", "0004_definitions.sql", "0005_push_devices.sql", "0006_push_providers.sql", "0007_push_outbox.sql", "0008_campaigns.sql", "0009_campaign_runs.sql", "0010_team.sql", "0011_partitions.sql");
const POSTGRES: Files = files!("postgres": "0001_tenancy.sql", "0002_events.sql", "0003_persons.sql", "0004_definitions.sql", "0005_push_devices.sql", "0006_push_providers.sql", "0007_push_outbox.sql", "0008_campaigns.sql", "0009_campaign_runs.sql", "0010_team.sql", "0011_partitions.sql");

/// The migrations compiled in, read as sqlx reads a migrations directory:
/// `<version>_<description>.sql`.
#[derive(Debug)]
struct Embedded(Files);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            self.0
                .iter()
                .map(|(name, sql)| {
                    let (version, rest) = name
                        .split_once('_')
                        .ok_or_else(|| format!("migration {name}: no `_` after its version"))?;
                    let version: i64 = version.parse()?;
                    let kind = MigrationType::from_filename(rest);
                    let description = rest.trim_end_matches(kind.suffix()).replace('_', " ");
                    Ok(Migration::new(
                        version,
                        Cow::Owned(description),
                        kind,
                        Cow::Borrowed(*sql),
                        sql.starts_with("-- no-transaction"),
                    ))
                })
                .collect()
        })
    }
}

/// The migrator of `backend`.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_file_of_each_directory_is_compiled_in_with_its_checksum() {
        for (backend, files, dir) in [
            (Backend::Sqlite, SQLITE, "sqlite"),
            (Backend::Postgres, POSTGRES, "postgres"),
        ] {
            let on_disk = Migrator::new(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("migrations")
                    .join(dir),
            )
            .await
            .unwrap();
            let embedded = migrator(backend).await.unwrap();
            let view = |m: &Migrator| -> Vec<(i64, String, Vec<u8>)> {
                m.iter()
                    .map(|m| (m.version, m.description.to_string(), m.checksum.to_vec()))
                    .collect()
            };
            assert_eq!(view(&embedded), view(&on_disk), "{dir}");
            assert_eq!(files.len(), on_disk.iter().count(), "{dir}");
        }
    }
}
