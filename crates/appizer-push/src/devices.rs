//! Devices: what an app may register. An `ios` device is an APNs device token (hex), an
//! `android` one an FCM registration token, a `web` one a Push API subscription whose
//! endpoint is on a host the operator allowed. A registration that breaks a rule is
//! refused naming its field; nothing is stored.

use appizer_core::event::MAX_ID_BYTES;
use appizer_core::person::is_placeholder_id;
use appizer_core::push::{NewDevice, Platform, WebKeys};
use appizer_core::tenancy::is_valid_timezone;
use chrono::{DateTime, Utc};

use crate::providers::webpush::{Subscription, WebPushConfig};

/// APNs device tokens: 32 bytes today, documented as variable; at most 100 bytes.
pub const APNS_TOKEN_HEX: std::ops::RangeInclusive<usize> = 64..=200;
/// FCM registration tokens are opaque; they run to about 160 characters.
pub const MAX_FCM_TOKEN: usize = 4096;
/// Longest app id (a bundle id or package name).
pub const MAX_APP_ID: usize = 200;
/// Longest locale tag (BCP 47).
pub const MAX_LOCALE: usize = 35;

/// A device as an app describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub distinct_id: String,
    pub platform: String,
    pub token: Option<String>,
    pub endpoint: Option<String>,
    pub keys: Option<WebKeys>,
    pub app_id: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
}

/// A refused registration: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct Refused {
    pub field: String,
    pub rule: String,
}

fn refuse(field: &str, rule: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

/// The platform named by `text`.
pub fn platform(text: &str) -> Result<Platform, Refused> {
    Platform::parse(text).ok_or_else(|| refuse("platform", "must be ios, android or web"))
}

/// The address a platform's device is known by: the token (APNs: lowercase hex), or
/// the subscription's endpoint. Checks its form; a web endpoint also its host.
pub fn address(
    platform: Platform,
    token: Option<&str>,
    endpoint: Option<&str>,
    webpush: &WebPushConfig,
) -> Result<String, Refused> {
    match (platform, token, endpoint) {
        (Platform::Web, None, Some(endpoint)) => {
            webpush
                .check_endpoint(endpoint)
                .map_err(|e| refuse("subscription.endpoint", e.to_string()))?;
            Ok(endpoint.to_string())
        }
        (Platform::Web, _, _) => Err(refuse(
            "subscription",
            "is required for web devices, in place of token",
        )),
        (_, _, Some(_)) => Err(refuse("subscription", "belongs to web devices only")),
        (_, None, None) => Err(refuse("token", "is required for ios and android devices")),
        (Platform::Ios, Some(token), None) => {
            let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex || token.len() % 2 != 0 || !APNS_TOKEN_HEX.contains(&token.len()) {
                return Err(refuse(
                    "token",
                    "must be an APNs device token: hex, 64 to 200 characters",
                ));
            }
            Ok(token.to_ascii_lowercase())
        }
        (Platform::Android, Some(token), None) => {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-:.".contains(&b);
            if token.is_empty() || token.len() > MAX_FCM_TOKEN || !token.bytes().all(allowed) {
                return Err(refuse(
                    "token",
                    format!(
                        "must be an FCM registration token: 1 to {MAX_FCM_TOKEN} letters, digits, -, _, : or ."
                    ),
                ));
            }
            Ok(token.to_string())
        }
    }
}

/// Checks a registration and returns the device to store.
pub fn check(
    registration: Registration,
    webpush: &WebPushConfig,
    at: DateTime<Utc>,
) -> Result<NewDevice, Refused> {
    let id = &registration.distinct_id;
    if is_placeholder_id(id) {
        return Err(refuse(
            "distinct_id",
            "must be a real id, not blank or a placeholder such as \"anonymous\"",
        ));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(refuse(
            "distinct_id",
            format!("must be at most {MAX_ID_BYTES} bytes"),
        ));
    }
    let platform = platform(&registration.platform)?;
    let address = address(
        platform,
        registration.token.as_deref(),
        registration.endpoint.as_deref(),
        webpush,
    )?;
    let web_keys = match (platform, registration.keys) {
        (Platform::Web, Some(keys)) => {
            Subscription::parse(&address, &keys.p256dh, &keys.auth, webpush)
                .map_err(|e| refuse(e.field(), e.to_string()))?;
            Some(keys)
        }
        (Platform::Web, None) => {
            return Err(refuse("subscription.keys", "p256dh and auth are required"))
        }
        (_, Some(_)) => return Err(refuse("subscription", "belongs to web devices only")),
        (_, None) => None,
    };
    if let Some(app) = &registration.app_id {
        if app.is_empty() || app.chars().count() > MAX_APP_ID {
            return Err(refuse(
                "app_id",
                format!("must be 1 to {MAX_APP_ID} characters"),
            ));
        }
    }
    if let Some(locale) = &registration.locale {
        let tag = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if locale.is_empty() || locale.len() > MAX_LOCALE || !locale.bytes().all(tag) {
            return Err(refuse("locale", "must be a language tag such as fr-FR"));
        }
    }
    if let Some(tz) = &registration.timezone {
        if !is_valid_timezone(tz) {
            return Err(refuse(
                "timezone",
                "must be an IANA time zone such as Europe/Paris",
            ));
        }
    }
    Ok(NewDevice {
        platform,
        address,
        web_keys,
        distinct_id: registration.distinct_id,
        app_id: registration.app_id,
        locale: registration.locale,
        timezone: registration.timezone,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::webpush::crypto::public_bytes;
    use crate::providers::webpush::vapid::random_secret;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn web_keys() -> WebKeys {
        WebKeys {
            p256dh: B64.encode(public_bytes(&random_secret().public_key())),
            auth: B64.encode([3u8; 16]),
        }
    }

    fn base(platform: &str) -> Registration {
        Registration {
            distinct_id: "user-1".into(),
            platform: platform.into(),
            ..Default::default()
        }
    }

    fn refused(r: Registration) -> (String, String) {
        let e = check(r, &WebPushConfig::default(), Utc::now()).unwrap_err();
        (e.field, e.rule)
    }

    #[test]
    fn each_platform_takes_its_own_address() {
        let config = WebPushConfig::default();
        let ios = Registration {
            token: Some("AB".repeat(32)),
            locale: Some("fr-FR".into()),
            timezone: Some("Europe/Paris".into()),
            app_id: Some("com.example.app".into()),
            ..base("ios")
        };
        let device = check(ios, &config, Utc::now()).unwrap();
        assert_eq!(
            (device.platform, device.address),
            (Platform::Ios, "ab".repeat(32))
        );
        let android = Registration {
            token: Some("dGVzdA:APA91bH-x_y.z".into()),
            ..base("android")
        };
        assert_eq!(
            check(android, &config, Utc::now()).unwrap().platform,
            Platform::Android
        );
        let keys = web_keys();
        let web = Registration {
            endpoint: Some("https://fcm.googleapis.com/fcm/send/abc".into()),
            keys: Some(keys.clone()),
            ..base("web")
        };
        let device = check(web, &config, Utc::now()).unwrap();
        assert_eq!(device.web_keys, Some(keys));
    }

    #[test]
    fn a_bad_registration_names_its_field() {
        let field = |r: Registration| refused(r).0;
        assert_eq!(field(base("blackberry")), "platform");
        assert_eq!(
            field(Registration {
                distinct_id: "anonymous".into(),
                ..base("ios")
            }),
            "distinct_id"
        );
        assert_eq!(field(base("ios")), "token");
        for token in [
            "ab".repeat(31),
            "zz".repeat(32),
            format!("{}a", "ab".repeat(32)),
        ] {
            assert_eq!(
                field(Registration {
                    token: Some(token),
                    ..base("ios")
                }),
                "token"
            );
        }
        assert_eq!(
            field(Registration {
                token: Some("has space".into()),
                ..base("android")
            }),
            "token"
        );
        assert_eq!(field(base("web")), "subscription");
        let web = |endpoint: &str, keys: Option<WebKeys>| Registration {
            endpoint: Some(endpoint.into()),
            keys,
            ..base("web")
        };
        let ok = "https://fcm.googleapis.com/fcm/send/abc";
        assert_eq!(field(web(ok, None)), "subscription.keys");
        assert_eq!(
            field(web("https://10.0.0.1/steal", Some(web_keys()))),
            "subscription.endpoint"
        );
        assert_eq!(
            field(web("http://fcm.googleapis.com/x", Some(web_keys()))),
            "subscription.endpoint"
        );
        let short_auth = WebKeys {
            auth: B64.encode([1u8; 8]),
            ..web_keys()
        };
        assert_eq!(field(web(ok, Some(short_auth))), "subscription.keys.auth");
        let not_a_point = WebKeys {
            p256dh: B64.encode([4u8; 65]),
            ..web_keys()
        };
        assert_eq!(
            field(web(ok, Some(not_a_point))),
            "subscription.keys.p256dh"
        );
        let ios = |r: Registration| Registration {
            token: Some("ab".repeat(32)),
            ..r
        };
        assert_eq!(
            field(ios(Registration {
                timezone: Some("Mars/Olympus".into()),
                ..base("ios")
            })),
            "timezone"
        );
        assert_eq!(
            field(ios(Registration {
                locale: Some("fr FR".into()),
                ..base("ios")
            })),
            "locale"
        );
        assert_eq!(
            field(ios(Registration {
                app_id: Some(String::new()),
                ..base("ios")
            })),
            "app_id"
        );
        assert_eq!(
            field(Registration {
                keys: Some(web_keys()),
                ..ios(base("ios"))
            }),
            "subscription"
        );
    }
}
