//! Provider credentials: what a project gives for each provider, checked when saved,
//! split into the settings that may be shown and the secret part, which is sealed with
//! AES-256-GCM under the server's master key (bound to its project and provider) and
//! never logged or answered.
//!
//! - APNs: team id, key id, the `.p8` signing key (a P-256 key in PKCS#8 PEM), topic
//!   (the bundle id), environment (`production` or `sandbox`).
//! - FCM: the service account JSON Google issues (its RSA key, client email, project
//!   id and `token_uri`).
//! - Web Push: a contact (`mailto:` or `https:`) and a VAPID key pair, generated here
//!   or imported; its public key is shown, for `pushManager.subscribe`.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use appizer_core::push::{Provider, ProviderRecord};
use appizer_core::ProjectId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::devices::Refused;
use crate::providers::apns::ProviderToken;
use crate::providers::fcm::{FcmError, ServiceAccount};
use crate::providers::webpush::VapidKey;

/// The file in the data directory that holds the generated master key.
pub const MASTER_KEY_FILE: &str = "push-master.key";

/// The key provider secrets are sealed under: 32 bytes, kept as 64 hex characters.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Why the master key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("push.master_key must be 64 hex characters")]
    Malformed,
    #[error("cannot read or write the push master key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// A sealed secret that does not open: another master key, another project, or
/// tampered data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed credentials do not open with this server's master key")]
pub struct Unsealable;

impl MasterKey {
    pub fn from_hex(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MasterKeyError::Malformed);
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| MasterKeyError::Malformed)?;
        }
        Ok(Self(key))
    }

    /// The key in `dir/push-master.key`, created (readable by its owner only) with a
    /// fresh random key if the file does not exist.
    pub fn load_or_create(dir: &Path) -> Result<Self, MasterKeyError> {
        let path = dir.join(MASTER_KEY_FILE);
        let file_error = |source| MasterKeyError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::from_hex(&text),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_error(e)),
            Err(_) => {}
        }
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(file_error)?;
        file.write_all(format!("{hex}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(file_error)?;
        Ok(Self(key))
    }

    fn aad(project: ProjectId, provider: Provider) -> String {
        format!("appizer push credentials|{project}|{}", provider.as_str())
    }

    /// `secret` encrypted for `project` and `provider`: a random nonce, then the
    /// ciphertext and tag.
    pub fn seal(&self, project: ProjectId, provider: Provider, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let aad = Self::aad(project, provider);
        let sealed = Aes256Gcm::new(&self.0.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any length a request can carry");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(
        &self,
        project: ProjectId,
        provider: Provider,
        sealed: &[u8],
    ) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < 12 {
            return Err(Unsealable);
        }
        let aad = Self::aad(project, provider);
        Aes256Gcm::new(&self.0.into())
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Unsealable)
    }
}

fn refuse(field: &str, rule: &str) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

/// APNs token-based credentials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsCredentials {
    pub team_id: String,
    pub key_id: String,
    /// The `.p8` file's text.
    pub private_key: String,
    /// The app's bundle id.
    pub topic: String,
    /// `production` or `sandbox`.
    pub environment: String,
}

/// FCM HTTP v1 credentials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FcmCredentials {
    /// The service account JSON, as Google issues it.
    pub service_account: Value,
}

/// Web Push (VAPID) settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushCredentials {
    /// A contact for push services: `mailto:...` or `https://...`.
    pub subject: String,
    /// An existing VAPID private key (32 bytes, base64url) to import; by default one
    /// is generated.
    #[serde(default)]
    pub private_key: Option<String>,
}

fn ten_chars(field: &str, value: &str) -> Result<(), Refused> {
    if value.len() == 10 && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(refuse(
            field,
            "must be the 10-character identifier Apple shows",
        ))
    }
}

/// The record of APNs credentials: checked, the key sealed.
pub fn apns(
    c: ApnsCredentials,
    master: &MasterKey,
    project: ProjectId,
    at: DateTime<Utc>,
) -> Result<ProviderRecord, Refused> {
    ten_chars("team_id", &c.team_id)?;
    ten_chars("key_id", &c.key_id)?;
    // Loaded as delivery loads it: what saves here signs there.
    ProviderToken::new(&c.team_id, &c.key_id, &c.private_key).map_err(|_| {
        refuse(
            "private_key",
            "must be the .p8 file: a P-256 key in PKCS#8 PEM",
        )
    })?;

    if c.topic.is_empty() || c.topic.len() > 255 {
        return Err(refuse("topic", "must be the app's bundle id"));
    }
    if !matches!(c.environment.as_str(), "production" | "sandbox") {
        return Err(refuse("environment", "must be production or sandbox"));
    }
    Ok(ProviderRecord {
        provider: Provider::Apns,
        settings: json!({
            "team_id": c.team_id, "key_id": c.key_id, "topic": c.topic,
            "environment": c.environment,
        }),
        sealed: master.seal(project, Provider::Apns, c.private_key.as_bytes()),
        updated_at: at,
    })
}

/// The record of FCM credentials: the service account checked, sealed whole.
pub fn fcm(
    c: FcmCredentials,
    master: &MasterKey,
    project: ProjectId,
    at: DateTime<Utc>,
) -> Result<ProviderRecord, Refused> {
    let account = &c.service_account;
    let field = |name: &str| format!("service_account.{name}");
    if account.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err(refuse(&field("type"), "must be service_account"));
    }
    // Loaded as delivery loads it: what saves here signs there.
    let loaded = ServiceAccount::from_json(account).map_err(|e| match e {
        FcmError::Missing(name) => refuse(&field(name), "is required"),
        _ => refuse(
            &field("private_key"),
            "must be an RSA key in PKCS#8 PEM, as Google issues it",
        ),
    })?;
    let uri = url::Url::parse(&loaded.token_uri)
        .map_err(|_| refuse(&field("token_uri"), "must be a URL"))?;
    if !matches!(uri.scheme(), "https" | "http") {
        return Err(refuse(&field("token_uri"), "must be an https URL"));
    }
    Ok(ProviderRecord {
        provider: Provider::Fcm,
        settings: json!({
            "project_id": loaded.project_id, "client_email": loaded.client_email,
            "token_uri": loaded.token_uri,
        }),
        sealed: master.seal(project, Provider::Fcm, account.to_string().as_bytes()),
        updated_at: at,
    })
}

/// The record of Web Push settings: the VAPID key generated (or imported) and sealed,
/// its public key shown.
pub fn webpush(
    c: WebPushCredentials,
    master: &MasterKey,
    project: ProjectId,
    at: DateTime<Utc>,
) -> Result<ProviderRecord, Refused> {
    let contact = c.subject.starts_with("mailto:") && c.subject.len() > 7
        || url::Url::parse(&c.subject).is_ok_and(|u| u.scheme() == "https");
    if !contact {
        return Err(refuse("subject", "must be mailto:... or https://..."));
    }
    let key = match &c.private_key {
        None => VapidKey::generate(),
        Some(text) => B64
            .decode(text.trim_end_matches('='))
            .ok()
            .and_then(|bytes| VapidKey::from_private_bytes(&bytes).ok())
            .ok_or_else(|| {
                refuse(
                    "private_key",
                    "must be a P-256 private key: 32 bytes, base64url",
                )
            })?,
    };
    Ok(ProviderRecord {
        provider: Provider::Webpush,
        settings: json!({"subject": c.subject, "public_key": key.public_key()}),
        sealed: master.seal(project, Provider::Webpush, &key.private_bytes()),
        updated_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    const RSA_KEY: &str = include_str!("../testdata/service-account-test-key.pem");

    fn master() -> MasterKey {
        MasterKey::from_hex(&"1f".repeat(32)).unwrap()
    }

    fn p8() -> String {
        crate::providers::webpush::vapid::random_secret()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    fn service_account() -> Value {
        json!({
            "type": "service_account", "project_id": "demo-app", "private_key_id": "abc",
            "private_key": RSA_KEY, "client_email": "push@demo-app.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"
        })
    }

    #[test]
    fn sealed_secrets_open_only_for_their_project_and_provider() {
        let (key, project) = (master(), ProjectId::new());
        let sealed = key.seal(project, Provider::Apns, b"the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        assert_eq!(
            key.open(project, Provider::Apns, &sealed).unwrap(),
            b"the secret"
        );
        assert_eq!(
            key.open(ProjectId::new(), Provider::Apns, &sealed),
            Err(Unsealable)
        );
        assert_eq!(key.open(project, Provider::Fcm, &sealed), Err(Unsealable));
        let other = MasterKey::from_hex(&"2e".repeat(32)).unwrap();
        assert_eq!(
            other.open(project, Provider::Apns, &sealed),
            Err(Unsealable)
        );
        assert_ne!(
            sealed,
            key.seal(project, Provider::Apns, b"the secret"),
            "fresh nonce"
        );
        assert!(format!("{key:?}").contains(".."));
        assert!(MasterKey::from_hex("abc").is_err());
    }

    #[test]
    fn the_master_key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let (project, secret) = (ProjectId::new(), b"kept across restarts");
        let sealed =
            MasterKey::load_or_create(dir.path())
                .unwrap()
                .seal(project, Provider::Fcm, secret);
        let again = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(project, Provider::Fcm, &sealed).unwrap(), secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn apns_credentials_are_checked_and_their_key_sealed() {
        let (key, project, now) = (master(), ProjectId::new(), Utc::now());
        let good = ApnsCredentials {
            team_id: "ABCDE12345".into(),
            key_id: "KEY1234567".into(),
            private_key: p8(),
            topic: "com.example.app".into(),
            environment: "sandbox".into(),
        };
        let record = apns(good.clone(), &key, project, now).unwrap();
        assert_eq!(record.settings["topic"], "com.example.app");
        assert!(!record.settings.to_string().contains("PRIVATE KEY"));
        let opened = key.open(project, Provider::Apns, &record.sealed).unwrap();
        assert_eq!(String::from_utf8(opened).unwrap(), good.private_key);
        let field = |c: ApnsCredentials| apns(c, &key, project, now).unwrap_err().field;
        assert_eq!(
            field(ApnsCredentials {
                team_id: "short".into(),
                ..good.clone()
            }),
            "team_id"
        );
        assert_eq!(
            field(ApnsCredentials {
                private_key: RSA_KEY.into(),
                ..good.clone()
            }),
            "private_key"
        );
        assert_eq!(
            field(ApnsCredentials {
                environment: "dev".into(),
                ..good.clone()
            }),
            "environment"
        );
    }

    #[test]
    fn fcm_credentials_need_a_whole_service_account() {
        let (key, project, now) = (master(), ProjectId::new(), Utc::now());
        let record = fcm(
            FcmCredentials {
                service_account: service_account(),
            },
            &key,
            project,
            now,
        )
        .unwrap();
        assert_eq!(record.settings["project_id"], "demo-app");
        assert!(!record.settings.to_string().contains("PRIVATE KEY"));
        let field = |change: &dyn Fn(&mut Value)| {
            let mut account = service_account();
            change(&mut account);
            fcm(
                FcmCredentials {
                    service_account: account,
                },
                &key,
                project,
                now,
            )
            .unwrap_err()
            .field
        };
        assert_eq!(
            field(&|a| a["type"] = json!("user")),
            "service_account.type"
        );
        assert_eq!(
            field(&|a| a["private_key"] = json!(p8())),
            "service_account.private_key"
        );
        assert_eq!(
            field(&|a| a["token_uri"] = json!("nope")),
            "service_account.token_uri"
        );
        assert_eq!(
            field(&|a| {
                a.as_object_mut().unwrap().remove("client_email");
            }),
            "service_account.client_email"
        );
    }

    #[test]
    fn webpush_generates_or_imports_its_vapid_key() {
        let (key, project, now) = (master(), ProjectId::new(), Utc::now());
        let made = webpush(
            WebPushCredentials {
                subject: "mailto:ops@example.com".into(),
                private_key: None,
            },
            &key,
            project,
            now,
        )
        .unwrap();
        let private = key.open(project, Provider::Webpush, &made.sealed).unwrap();
        let vapid = VapidKey::from_private_bytes(&private).unwrap();
        assert_eq!(made.settings["public_key"], vapid.public_key());
        let imported = webpush(
            WebPushCredentials {
                subject: "https://example.com/contact".into(),
                private_key: Some(B64.encode(private)),
            },
            &key,
            project,
            now,
        )
        .unwrap();
        assert_eq!(imported.settings["public_key"], made.settings["public_key"]);
        let refused = |subject: &str, private_key: Option<&str>| {
            webpush(
                WebPushCredentials {
                    subject: subject.into(),
                    private_key: private_key.map(str::to_string),
                },
                &key,
                project,
                now,
            )
            .unwrap_err()
            .field
        };
        assert_eq!(refused("ops@example.com", None), "subject");
        assert_eq!(
            refused("mailto:ops@example.com", Some("AAAA")),
            "private_key"
        );
    }
}
