//! Reading message fields the way real clients send them: ids as strings or numbers,
//! timestamps as ISO-8601 text or epoch milliseconds, objects that may be `null`.

use std::borrow::Cow;

use appizer_core::event::MAX_ID_BYTES;
use appizer_core::json::JsonObject;
use chrono::{DateTime, Utc};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// A rule a field broke: `(field, reason)`.
pub type FieldError = (String, String);

fn broke(field: &str, reason: impl Into<String>) -> FieldError {
    (field.to_string(), reason.into())
}

/// A message field whose value is a string, a number or `null`, as the rules below read
/// it: text is borrowed from the request body where it holds no escape, so a field read
/// from a message costs no allocation until it is kept. Objects and arrays are skipped
/// (`Other`): every field read this way rejects them.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Text(Cow<'a, str>),
    Number(Number),
    Null,
    Other,
}

impl<'a> Scalar<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl<'a> From<&'a Value> for Scalar<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::String(s) => Scalar::Text(Cow::Borrowed(s)),
            Value::Number(n) => Scalar::Number(n.clone()),
            Value::Null => Scalar::Null,
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Scalar::Other,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Number::from_f64(v).map_or(Scalar::Other, Scalar::Number))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }

        deserializer.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

/// An id field: a non-blank string or a number, at most [`MAX_ID_BYTES`]. Absent or
/// `null` is `None`.
pub fn id(message: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    id_value(message.get(field).map(Scalar::from), field)
}

/// [`id`] of a value already at hand.
pub fn id_value(value: Option<Scalar<'_>>, field: &str) -> Result<Option<String>, FieldError> {
    let text = match value {
        None | Some(Scalar::Null) => return Ok(None),
        Some(Scalar::Text(s)) => match s {
            Cow::Borrowed(s) => s.trim().to_string(),
            Cow::Owned(s) if s.trim().len() == s.len() => s,
            Cow::Owned(s) => s.trim().to_string(),
        },
        Some(Scalar::Number(n)) => n.to_string(),
        Some(Scalar::Other) => return Err(broke(field, "must be a string or a number")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_ID_BYTES {
        return Err(broke(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(Some(text))
}

/// A required non-empty string of at most [`MAX_ID_BYTES`] (event names).
pub fn name(message: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    name_value(message.get(field).map(Scalar::from), field)
}

/// [`name`] of a value already at hand.
pub fn name_value(value: Option<Scalar<'_>>, field: &str) -> Result<String, FieldError> {
    match value {
        Some(Scalar::Text(s)) if !s.trim().is_empty() => {
            if s.len() > MAX_ID_BYTES {
                Err(broke(
                    field,
                    format!("must be at most {MAX_ID_BYTES} bytes"),
                ))
            } else {
                Ok(s.into_owned())
            }
        }
        Some(Scalar::Text(_)) | None | Some(Scalar::Null) => {
            Err(broke(field, "is required and must not be empty"))
        }
        Some(_) => Err(broke(field, "must be a string")),
    }
}

/// Takes an object field out of the message; absent or `null` is an empty object.
pub fn take_object(message: &mut Map<String, Value>, field: &str) -> Result<Value, FieldError> {
    match message.remove(field) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(broke(field, "must be an object")),
    }
}

/// An object field kept as text; absent or `null` is an empty object.
pub fn raw_object(raw: Option<&RawValue>, field: &str) -> Result<JsonObject, FieldError> {
    match raw {
        None => Ok(JsonObject::empty()),
        Some(raw) => JsonObject::from_raw(raw).ok_or_else(|| broke(field, "must be an object")),
    }
}

/// A timestamp: RFC 3339 / ISO-8601 text (with or without zone; without is UTC) or epoch
/// milliseconds. Absent or `null` is `None`.
pub fn timestamp(
    value: Option<Scalar<'_>>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let parsed = match value {
        None | Some(Scalar::Null) => return Ok(None),
        Some(Scalar::Text(s)) => parse_time_text(s.trim()),
        Some(Scalar::Number(n)) => n
            .as_f64()
            .and_then(|ms| DateTime::from_timestamp_millis(ms as i64)),
        Some(Scalar::Other) => None,
    };
    parsed
        .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
        .map(Some)
        .ok_or_else(|| broke(field, "must be an ISO-8601 date-time or epoch milliseconds"))
}

fn parse_time_text(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // ISO-8601 without a zone (Python's naive isoformat): taken as UTC.
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    // A space instead of the `T`, with a zone.
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ids_accept_strings_and_numbers_and_reject_the_rest() {
        let m = map(json!({"a": " u1 ", "b": 42, "c": "", "d": true, "e": "x".repeat(600)}));
        assert_eq!(id(&m, "a").unwrap().as_deref(), Some("u1"));
        assert_eq!(id(&m, "b").unwrap().as_deref(), Some("42"));
        assert_eq!(id(&m, "c").unwrap(), None);
        assert_eq!(id(&m, "missing").unwrap(), None);
        assert_eq!(id(&m, "d").unwrap_err().0, "d");
        assert_eq!(id(&m, "e").unwrap_err().0, "e");
    }

    #[test]
    fn scalars_borrow_plain_text_and_read_like_values() {
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(borrow)]
            plain: Scalar<'a>,
            #[serde(borrow)]
            escaped: Scalar<'a>,
            #[serde(borrow)]
            items: Vec<Scalar<'a>>,
        }
        let body =
            r#"{"plain":" u1 ","escaped":"a\"b ","items":[42,-1,1.5,true,null,{"k":[1]},[2]]}"#;
        let f: Fields = serde_json::from_str(body).unwrap();
        assert!(matches!(f.plain, Scalar::Text(Cow::Borrowed(" u1 "))));
        assert_eq!(f.escaped, Scalar::Text(Cow::Owned("a\"b ".into())));
        let values = [json!(42), json!(-1), json!(1.5), json!(true), json!(null)];
        let expected: Vec<Scalar> = values
            .iter()
            .map(Scalar::from)
            .chain([Scalar::Other, Scalar::Other])
            .collect();
        assert_eq!(f.items, expected);
        assert_eq!(
            id_value(Some(f.plain), "userId").unwrap().as_deref(),
            Some("u1")
        );
        assert_eq!(
            id_value(Some(f.escaped), "userId").unwrap().as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            id_value(Some(f.items[0].clone()), "userId")
                .unwrap()
                .as_deref(),
            Some("42")
        );
        assert_eq!(id_value(Some(f.items[4].clone()), "userId").unwrap(), None);
        for other in [&f.items[3], &f.items[5], &f.items[6]] {
            assert_eq!(
                id_value(Some(other.clone()), "userId").unwrap_err().0,
                "userId"
            );
        }
    }

    #[test]
    fn timestamps_in_the_shapes_clients_send() {
        let cases = [
            json!("2026-11-25T01:50:00.123Z"),
            json!("2026-11-25T01:50:00.123+00:00"),
            json!("2026-11-25T02:50:00.123+01:00"),
            json!("2026-11-25T01:50:00.123"),
            json!("2026-11-25 01:50:00.123+00:00"),
            json!(1_795_485_000_123_i64),
        ];
        let expected = DateTime::parse_from_rfc3339("2026-11-25T01:50:00.123Z").unwrap();
        for (i, case) in cases.iter().enumerate() {
            let got = timestamp(Some(Scalar::from(case)), "timestamp")
                .unwrap()
                .unwrap();
            if i < 5 {
                assert_eq!(got, expected, "{case}");
            } else {
                assert_eq!(got.timestamp_millis(), 1_795_485_000_123);
            }
        }
        for bad in [json!("yesterday"), json!({}), json!("0000-01-01T00:00:00Z")] {
            assert_eq!(
                timestamp(Some(Scalar::from(&bad)), "timestamp")
                    .unwrap_err()
                    .0,
                "timestamp",
                "{bad}"
            );
        }
        assert_eq!(timestamp(None, "t").unwrap(), None);
    }

    #[test]
    fn objects_and_names() {
        let mut m =
            map(json!({"p": {"a": 1}, "n": null, "bad": [1], "e": "Signed Up", "blank": " "}));
        assert_eq!(take_object(&mut m, "p").unwrap(), json!({"a": 1}));
        assert!(!m.contains_key("p"), "taken out");
        assert_eq!(take_object(&mut m, "n").unwrap(), json!({}));
        assert!(take_object(&mut m, "bad").is_err());
        assert_eq!(name(&m, "e").unwrap(), "Signed Up");
        assert!(name(&m, "blank").is_err());
        assert!(name(&m, "missing").is_err());
    }
}
