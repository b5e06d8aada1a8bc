//! [`JsonObject`]: a JSON object kept as its text. Events carry their properties,
//! traits and context this way from the edge to the Parquet files, so a message is
//! parsed into a tree only where something needs the tree; reading a few fields is a
//! scan ([`object_fields`]) and adding an absent key is a splice.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The text of a JSON object (never another kind of value).
#[derive(Clone)]
pub struct JsonObject(Box<str>);

impl JsonObject {
    /// `{}`.
    pub fn empty() -> Self {
        Self("{}".into())
    }

    /// The object `raw` holds; `null` is the empty object; anything else is `None`.
    pub fn from_raw(raw: &RawValue) -> Option<Self> {
        match raw.get().as_bytes().first() {
            Some(b'{') => Some(Self(raw.get().into())),
            _ if raw.get() == "null" => Some(Self::empty()),
            _ => None,
        }
    }

    pub fn from_map(map: &Map<String, Value>) -> Self {
        Self(serde_json::to_string(map).expect("a map serializes").into())
    }

    /// Text this server wrote from a `JsonObject` earlier (a checksummed queue record),
    /// taken without parsing it again. Debug builds check it.
    pub fn from_trusted_text(text: String) -> Self {
        debug_assert!(
            text.starts_with('{') && serde_json::from_str::<IgnoredAny>(&text).is_ok(),
            "not a JSON object: {text}"
        );
        Self(text.into())
    }

    /// The object as a tree (values serde_json cannot hold kept readably, see
    /// [`parse_readable`]).
    pub fn to_map(&self) -> Map<String, Value> {
        match parse_readable(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => panic!("a JsonObject holds an object: {}", self.0),
        }
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string at `key` of a raw JSON object, if it is an object holding a string there.
    pub fn nested_string(object: Option<&RawValue>, key: &str) -> Option<String> {
        object
            .and_then(|o| object_fields(o.get(), [key])[0])
            .and_then(raw_string)
    }

    /// The raw values of the top-level keys in `wanted`, in that order.
    pub fn fields<const N: usize>(&self, wanted: [&str; N]) -> [Option<&RawValue>; N] {
        object_fields(self.as_str(), wanted)
    }

    /// A top-level string field. The scan is skipped when the text cannot hold the key
    /// ([`may_hold_key`]): a field most objects lack costs a substring search.
    pub fn str_field(&self, key: &str) -> Option<String> {
        if !may_hold_key(self.as_str(), key) {
            return None;
        }
        let [raw] = self.fields([key]);
        raw_string(raw?)
    }

    /// Adds `key: value` unless the object has the key; returns whether it was added.
    pub fn insert_if_absent(&mut self, key: &str, value: &Value) -> bool {
        if self.fields([key])[0].is_some() {
            return false;
        }
        self.prepend(&[(key, value.clone())]);
        true
    }

    /// Adds the entries at the front of the object, in one splice. The caller knows the
    /// keys are absent (a repeated key would shadow the first).
    pub fn prepend(&mut self, entries: &[(&str, Value)]) {
        if entries.is_empty() {
            return;
        }
        let text = self.as_str();
        let body = text[1..].trim_start();
        let mut out = String::with_capacity(text.len() + 64 * entries.len());
        out.push('{');
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).expect("a key serializes"));
            out.push(':');
            out.push_str(&serde_json::to_string(value).expect("a value serializes"));
        }
        if !body.starts_with('}') {
            out.push(',');
        }
        out.push_str(body);
        self.0 = out.into();
    }

    /// Rewrites the object through its tree (for changes a splice cannot make).
    pub fn update(&mut self, change: impl FnOnce(&mut Map<String, Value>)) {
        let mut map = self.to_map();
        change(&mut map);
        *self = Self::from_map(&map);
    }
}

/// Well-formed JSON `text` as a tree. What the syntax allows but serde_json cannot
/// hold keeps its value readably instead of failing the whole text: a number past the
/// range of `f64` (`1e99999`) becomes a string of its digits, and a UTF-16 surrogate
/// escape without its pair (`"\ud800"`) becomes U+FFFD.
pub fn parse_readable(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text)
        .or_else(|first| serde_json::from_str(&make_readable(text)).map_err(|_| first))
}

/// `text` with out-of-range numbers quoted and lone surrogate escapes replaced.
fn make_readable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let hex_at = |i: usize| -> Option<u32> {
        let digits = text.get(i..i + 4)?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'"' => {
                    in_string = false;
                    out.push('"');
                    i += 1;
                }
                b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                    let code = hex_at(i + 2);
                    let paired = |c: Option<u32>| c.is_some_and(|c| (0xDC00..0xE000).contains(&c));
                    match code {
                        Some(0xD800..=0xDBFF)
                            if bytes.get(i + 6) == Some(&b'\\')
                                && bytes.get(i + 7) == Some(&b'u')
                                && paired(hex_at(i + 8)) =>
                        {
                            out.push_str(&text[i..i + 12]);
                            i += 12;
                        }
                        Some(0xD800..=0xDFFF) => {
                            out.push_str("\\ufffd");
                            i += 6;
                        }
                        _ => {
                            out.push_str(&text[i..(i + 6).min(text.len())]);
                            i += 6;
                        }
                    }
                }
                b'\\' => {
                    out.push_str(&text[i..(i + 2).min(text.len())]);
                    i += 2;
                }
                _ => {
                    let end = text[i..].find(['"', '\\']).map_or(text.len(), |n| i + n);
                    out.push_str(&text[i..end]);
                    i = end;
                }
            }
        } else if b == b'"' {
            in_string = true;
            out.push('"');
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .map_or(text.len(), |n| i + n);
            let number = &text[i..end];
            if number.parse::<f64>().is_ok_and(f64::is_finite) {
                out.push_str(number);
            } else {
                out.push('"');
                out.push_str(number);
                out.push('"');
            }
            i = end;
        } else {
            let end = text[i..]
                .find(|c: char| c == '"' || c == '-' || c.is_ascii_digit())
                .map_or(text.len(), |n| i + n);
            out.push_str(&text[i..end]);
            i = end;
        }
    }
    out
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Equal objects, whatever their spacing or key order.
impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_map() == other.to_map()
    }
}

impl PartialEq<Value> for JsonObject {
    fn eq(&self, other: &Value) -> bool {
        other.as_object() == Some(&self.to_map())
    }
}

impl From<Map<String, Value>> for JsonObject {
    fn from(map: Map<String, Value>) -> Self {
        Self::from_map(&map)
    }
}

impl TryFrom<Value> for JsonObject {
    type Error = Value;

    fn try_from(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(Self::from_map(&map)),
            Value::Null => Ok(Self::empty()),
            other => Err(other),
        }
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        match raw.get().as_bytes().first() {
            Some(b'{') => Ok(Self(raw.into())),
            _ if raw.get() == "null" => Ok(Self::empty()),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

/// The string a raw JSON value holds (`None` for other kinds).
pub fn raw_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// The string at `key` of a raw JSON object, if it is an object holding a string there.
pub fn nested_string(object: Option<&RawValue>, key: &str) -> Option<String> {
    object
        .and_then(|o| object_fields(o.get(), [key])[0])
        .and_then(raw_string)
}

/// The raw values of the top-level keys in `wanted` of the JSON object `text` (`None`
/// for absent keys, or all `None` if `text` is not an object), in one scan that builds
/// nothing for the other keys. A repeated key: the last one counts, as in a map.
pub fn object_fields<'a, const N: usize>(
    text: &'a str,
    wanted: [&str; N],
) -> [Option<&'a RawValue>; N] {
    let mut found = [None; N];
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let scan = FieldScan {
        wanted: &wanted,
        found: &mut found,
    };
    if deserializer.deserialize_map(scan).is_err() {
        return [None; N];
    }
    found
}

struct FieldScan<'w, 'a, const N: usize> {
    wanted: &'w [&'w str; N],
    found: &'w mut [Option<&'a RawValue>; N],
}

impl<'de, const N: usize> Visitor<'de> for FieldScan<'_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(KeyIndex(self.wanted))? {
            match index {
                Some(i) => self.found[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Deserializes a key into its position in the wanted list, without keeping it.
struct KeyIndex<'w, const N: usize>(&'w [&'w str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|w| *w == key))
    }
}

/// Whether `key` may be one of the keys of the JSON text `text`: `false` only when the
/// text holds neither `"key"` nor a `\u` escape (the one other way to write a plain
/// key's characters). A key with a character JSON must escape is always `true`.
///
/// It scans for the key's first byte and compares there, rather than with a `memmem`
/// searcher: building one for each call cost more than the search itself on the short
/// texts (a message's context) it is given.
pub fn may_hold_key(text: &str, key: &str) -> bool {
    let key = key.as_bytes();
    if key.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return true;
    }
    let bytes = text.as_bytes();
    let quoted = |at: usize| {
        at > 0
            && bytes[at - 1] == b'"'
            && bytes[at..].starts_with(key)
            && bytes.get(at + key.len()) == Some(&b'"')
    };
    // The empty key's spelling is `""`: its closing quote is where it starts.
    let first = key.first().copied().unwrap_or(b'"');
    memchr::memchr_iter(first, bytes).any(quoted)
        || memchr::memchr_iter(b'\\', bytes).any(|at| bytes.get(at + 1) == Some(&b'u'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_serde_json_cannot_hold_are_kept_readably() {
        let text = r#"{"a":1e99999,"b":"\ud800x","c":"\ud83d\ude00","d":[-1E+400,2.5e3],
            "e":"\udc00\ud800","f":"1e99999 \"quoted\"","\ud801":12}"#;
        assert!(serde_json::from_str::<Value>(text).is_err());
        let value = parse_readable(text).unwrap();
        assert_eq!(
            value,
            json!({"a": "1e99999", "b": "\u{fffd}x", "c": "\u{1f600}", "d": ["-1E+400", 2500.0],
                "e": "\u{fffd}\u{fffd}", "f": "1e99999 \"quoted\"", "\u{fffd}": 12})
        );
        let object: JsonObject = serde_json::from_str(text).unwrap();
        assert_eq!(object.to_map()["a"], "1e99999");
        // Well-formed text parses as it is.
        assert_eq!(
            parse_readable(r#"{"n":-0.5e-3}"#).unwrap(),
            json!({"n": -0.0005})
        );
        assert!(parse_readable("{").is_err());
    }

    #[test]
    fn a_key_is_ruled_out_only_when_no_spelling_of_it_appears() {
        let text = r#"{"ipx": "ip v4", "library": {"name": "x"}, "zip": 1}"#;
        assert!(
            !may_hold_key(text, "ip"),
            "only inside other keys and values"
        );
        assert!(
            may_hold_key(r#"{"a": "ip"}"#, "ip"),
            "a value spelt like the key"
        );
        assert!(may_hold_key(r#"{"a": 1, "ip": "1.2.3.4"}"#, "ip"));
        assert!(
            may_hold_key(r#"{"a": {"ip": 1}}"#, "ip"),
            "nested: the scan decides"
        );
        let escaped = r#"{"\u0069p": "1.2.3.4"}"#;
        assert!(may_hold_key(escaped, "ip"));
        let o: JsonObject = serde_json::from_str(escaped).unwrap();
        assert_eq!(o.str_field("ip").as_deref(), Some("1.2.3.4"));
        assert!(
            may_hold_key("{}", "a\"b"),
            "keys that need escapes are not searched"
        );
        assert!(
            !may_hold_key(r#"{"a": "x\\", "i": "p"}"#, "ip"),
            "an escape other than \\u"
        );
        assert!(!may_hold_key("\"ip", "ip"), "no closing quote");
        assert!(!may_hold_key("{}", ""));
        assert!(may_hold_key(r#"{"": 1}"#, ""));
    }

    fn object(v: Value) -> JsonObject {
        JsonObject::try_from(v).unwrap()
    }

    #[test]
    fn fields_are_read_in_one_scan() {
        let o: JsonObject =
            serde_json::from_str(r#"{"a": 1, "b\u0021": {"x": [1, 2]}, "c": "t", "a": 2}"#)
                .unwrap();
        let [a, b, c, d] = o.fields(["a", "b!", "c", "d"]);
        assert_eq!(a.unwrap().get(), "2", "the last of a repeated key");
        assert_eq!(b.unwrap().get(), r#"{"x": [1, 2]}"#);
        assert_eq!(raw_string(c.unwrap()).as_deref(), Some("t"));
        assert!(d.is_none());
        assert_eq!(o.str_field("c").as_deref(), Some("t"));
        assert_eq!(o.str_field("a"), None, "not a string");
        assert!(object_fields("[1]", ["a"])[0].is_none());
    }

    #[test]
    fn only_objects_are_accepted() {
        let raw = |s: &str| RawValue::from_string(s.into()).unwrap();
        assert!(JsonObject::from_raw(&raw("{}")).is_some());
        assert_eq!(JsonObject::from_raw(&raw("null")).unwrap(), json!({}));
        assert!(JsonObject::from_raw(&raw("[1]")).is_none());
        assert!(JsonObject::from_raw(&raw("\"{}\"")).is_none());
        assert!(serde_json::from_str::<JsonObject>("5").is_err());
        assert!(JsonObject::try_from(json!([1])).is_err());
    }

    #[test]
    fn absent_keys_are_spliced_in_and_present_ones_kept() {
        let mut o = object(json!({"a": 1}));
        assert!(o.insert_if_absent("b", &json!({"name": "x\"y"})));
        assert!(!o.insert_if_absent("a", &json!(5)));
        assert_eq!(o, json!({"a": 1, "b": {"name": "x\"y"}}));
        let mut empty: JsonObject = serde_json::from_str("{ }").unwrap();
        assert!(empty.insert_if_absent("k", &json!(true)));
        assert_eq!(empty.as_str(), r#"{"k":true}"#);
        empty.prepend(&[("x", json!(1)), ("y", json!([]))]);
        assert_eq!(empty.as_str(), r#"{"x":1,"y":[],"k":true}"#);
        o.update(|m| {
            m.remove("a");
        });
        assert_eq!(o, json!({"b": {"name": "x\"y"}}));
    }

    #[test]
    fn serializes_as_the_object_it_holds() {
        let o = object(json!({"n": 1.5, "s": "é"}));
        let text = serde_json::to_string(&json!({"p": o.to_value()})).unwrap();
        #[derive(Deserialize, Serialize)]
        struct Holder {
            p: JsonObject,
        }
        let holder: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(holder.p, o);
        assert_eq!(serde_json::to_string(&holder).unwrap(), text);
    }
}
