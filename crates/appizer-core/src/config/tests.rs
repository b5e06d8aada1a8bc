use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn default_toml_parses_back_to_the_defaults() {
    assert_eq!(
        Config::from_toml_str(&default_toml()).unwrap(),
        Config::default()
    );
}

/// The keys (`section.key`) a printed file names, set or commented out.
fn printed_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut section = String::new();
    let mut keys = std::collections::BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
            continue;
        }
        let entry = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = entry.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.insert(format!("{section}{key}"));
            }
        }
    }
    keys
}

fn serialised_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => serialised_keys(inner, &format!("{prefix}{key}."), out),
            _ => out.push(format!("{prefix}{key}")),
        }
    }
}

#[test]
fn the_default_file_names_every_key_of_the_config() {
    let printed = printed_keys(&default_toml());
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut keys = Vec::new();
    serialised_keys(&defaults, "", &mut keys);
    assert!(
        keys.len() > 30 && keys.iter().any(|k| k == "analytics.rollups"),
        "{keys:?}"
    );
    let missing: Vec<&String> = keys.iter().filter(|k| !printed.contains(*k)).collect();
    assert!(missing.is_empty(), "`config default` lacks {missing:?}");
    // Keys that are None by default are printed commented out, and still known.
    for optional in ["tls.cert_path", "tls.key_path", "ingest.geoip_database"] {
        assert!(printed.contains(optional), "{optional}");
    }
}

#[test]
fn file_then_env_override_defaults_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("appizer.toml"),
        "data_dir = \"/srv/a\"\n[rate_limit]\napi_burst = 7\napi_per_second = 3\n",
    )
    .unwrap();
    let env = [
        ("APPIZER_RATE_LIMIT__API_BURST", "9"),
        ("APPIZER_SERVER__LISTEN", "0.0.0.0:9000"),
        ("APPIZER_TEST_POSTGRES_URL", "postgres://ignored"),
        ("HOME", "/root"),
    ];
    let c = Config::load(None, dir.path(), env).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
    assert_eq!(c.rate_limit.api_per_second, 3, "from the file");
    assert_eq!(c.rate_limit.api_burst, 9, "env beats the file");
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(
        c.rate_limit.ingest_burst,
        RateLimitConfig::default().ingest_burst
    );
}

#[test]
fn unknown_keys_are_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.toml");
    std::fs::write(&file, "[rate_limit]\napi_brust = 7\n").unwrap();
    let err = Config::load(Some(&file), dir.path(), no_env()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("api_brust"), "{text}");
    assert!(text.contains("rate_limit"), "{text}");

    let err = Config::load(None, dir.path(), [("APPIZER_SERVR__LISTEN", "x")]).unwrap_err();
    assert!(err.to_string().contains("servr"), "{err}");
}

#[test]
fn wrong_types_and_broken_rules_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(
        None,
        dir.path(),
        [("APPIZER_RATE_LIMIT__API_BURST", "lots")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("rate_limit.api_burst"), "{err}");
    let err = Config::load(None, dir.path(), [("APPIZER_RATE_LIMIT__API_BURST", "0")]).unwrap_err();
    assert!(err.to_string().contains("rate_limit.api_burst"), "{err}");
    let err = Config::load(None, dir.path(), [("APPIZER_TLS__CERT_PATH", "/x.pem")]).unwrap_err();
    assert!(err.to_string().contains("tls"), "{err}");
    let err = Config::load(None, dir.path(), [("APPIZER_DATABASE_URL", "mysql://x")]).unwrap_err();
    assert!(err.to_string().contains("database_url"), "{err}");
    let err = Config::load(None, dir.path(), [("APPIZER_INGEST__WORKER_NICE", "20")]).unwrap_err();
    assert!(err.to_string().contains("ingest.worker_nice"), "{err}");
    let err = Config::load(
        None,
        dir.path(),
        [("APPIZER_INGEST__PARQUET_COMPRESSION", "gzip")],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("ingest.parquet_compression"),
        "{err}"
    );
    let config = Config::load(
        None,
        dir.path(),
        [("APPIZER_INGEST__PARQUET_COMPRESSION", "lz4_raw")],
    )
    .unwrap();
    assert_eq!(
        config.ingest.parquet_compression,
        ParquetCompression::Lz4Raw
    );
    assert_eq!(
        config.ingest.parquet_key_compression,
        ParquetCompression::Lz4Raw,
        "the key columns' own default"
    );
    let config = Config::load(
        None,
        dir.path(),
        [("APPIZER_INGEST__PARQUET_KEY_COMPRESSION", "zstd")],
    )
    .unwrap();
    assert_eq!(
        config.ingest.parquet_key_compression,
        ParquetCompression::Zstd
    );
    for codec in ParquetCompression::ALL {
        assert_eq!(codec.name().parse::<ParquetCompression>(), Ok(codec));
    }
    assert!("gzip".parse::<ParquetCompression>().is_err());
    for (key, value, named) in [
        (
            "APPIZER_INGEST__QUEUE_URL",
            "kafka://x:9092",
            "ingest.queue_url",
        ),
        (
            "APPIZER_INGEST__NATS__STREAM",
            "events.v1",
            "ingest.nats.stream",
        ),
        (
            "APPIZER_INGEST__NATS__REPLICAS",
            "0",
            "ingest.nats.replicas",
        ),
    ] {
        let err = Config::load(None, dir.path(), [(key, value)]).unwrap_err();
        assert!(err.to_string().contains(named), "{err}");
    }
    let config = Config::load(
        None,
        dir.path(),
        [("APPIZER_INGEST__QUEUE_URL", "nats://user:pw@10.0.0.7:4222")],
    )
    .unwrap();
    assert_eq!(
        config.ingest.queue_url.expose(),
        "nats://user:pw@10.0.0.7:4222"
    );
    assert!(
        !format!("{config:?}").contains("pw@"),
        "the URL is a secret"
    );
}

#[test]
fn a_missing_explicit_file_is_an_error_and_bad_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    assert!(matches!(
        Config::load(Some(&missing), dir.path(), no_env()),
        Err(ConfigError::Read { .. })
    ));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = ").unwrap();
    let err = Config::load(Some(&bad), dir.path(), no_env()).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
}

#[test]
fn metadata_url_defaults_to_sqlite_in_the_data_dir_and_debug_hides_it() {
    let mut c = Config {
        data_dir: PathBuf::from("/d"),
        ..Config::default()
    };
    assert_eq!(c.metadata_url(), "sqlite:///d/metadata.db");
    c.database_url = SecretString::new("postgres://u:pw@h/db");
    assert_eq!(c.metadata_url(), "postgres://u:pw@h/db");
    assert!(!format!("{c:?}").contains("pw@"));
}

#[test]
fn split_roles_need_the_shared_metadata_store_and_queue() {
    let all = Config::from_toml_str("").unwrap();
    assert!(all.node_roles().is_all());
    let refused = |toml: &str| match Config::from_toml_str(toml).unwrap_err() {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("{other}"),
    };
    assert_eq!(refused("roles = [\"api\"]"), "database_url");
    assert_eq!(
        refused("roles = [\"api\"]\ndatabase_url = \"postgres://h/db\""),
        "ingest.queue_url"
    );
    assert_eq!(
        refused("roles = [\"api\"]\ndatabase_url = \"postgres://h/db\"\n[ingest]\nqueue_url = \"nats://h:4222\""),
        "events_url"
    );
    assert_eq!(refused("roles = [\"all\", \"api\"]"), "roles");
    assert_eq!(refused("roles = []"), "roles");
    assert_eq!(refused("roles = [\"reporter\"]"), "roles[0]");
    let split = Config::from_toml_str(
        "roles = [\"api\", \"query\"]\ndatabase_url = \"postgres://h/db\"\nevents_url = \"s3://events\"\n[ingest]\nqueue_url = \"nats://h:4222\"",
    )
    .unwrap();
    let roles = split.node_roles();
    assert!(roles.api && roles.query && !roles.worker && !roles.push);
    assert_eq!(roles.names(), "api,query");
}

#[test]
fn events_live_in_the_data_dir_unless_events_url_names_a_directory_or_bucket() {
    let mut c = Config {
        data_dir: PathBuf::from("/d"),
        ..Config::default()
    };
    assert_eq!(
        c.events_location(),
        EventsLocation::Dir(PathBuf::from("/d/events"))
    );
    c.events_url = "file:///shared/events".into();
    assert_eq!(
        c.events_location(),
        EventsLocation::Dir(PathBuf::from("/shared/events"))
    );
    let s3 = |url: &str| {
        Config::from_toml_str(&format!("events_url = \"{url}\""))
            .map(|c| c.events_location())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        s3("s3://events-bucket/prod/events/"),
        Ok(EventsLocation::S3 {
            bucket: "events-bucket".into(),
            prefix: "prod/events".into()
        })
    );
    assert_eq!(
        s3("s3://events-bucket"),
        Ok(EventsLocation::S3 {
            bucket: "events-bucket".into(),
            prefix: String::new()
        })
    );
    for bad in ["s3://", "s3://Upper", "s3://ab", "s3://-lead/x"] {
        assert!(
            s3(bad).unwrap_err().contains("a bucket name of 3 to 63"),
            "{bad}"
        );
    }
    assert_eq!(
        s3("gs://bucket").unwrap_err(),
        "invalid config at `events_url`: must be empty (data_dir/events), file:///PATH or s3://BUCKET[/PREFIX]"
    );
    assert_eq!(
        Config::from_toml_str("events_url = \"s3://b-1\"\n[s3]\nendpoint = \"minio:9000\"")
            .unwrap_err()
            .to_string(),
        "invalid config at `s3.endpoint`: must be empty (AWS) or an http(s):// URL"
    );
}
