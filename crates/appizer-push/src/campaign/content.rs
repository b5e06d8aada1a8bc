//! A variant's content: a title and a body as templates, in a default language and
//! optional translations, chosen by the person's `$locale`.
//!
//! A locale is chosen exactly (`fr-CH`), then by its language (`fr`, or any `fr-*`
//! translation when there is no plain `fr`), then the variant's default. Every template
//! is parsed when the campaign is saved, so a fault is a 400 naming its field
//! (`variants[1].translations.de.body`) and the byte where it broke.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::{Context, RenderError, Scope, Template};
use crate::devices::Refused;
use crate::message::{MAX_BODY_CHARS, MAX_TITLE_CHARS};

/// Most translations of one variant.
pub const MAX_TRANSLATIONS: usize = 64;

/// Title and body, as sent in a campaign's request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub title: String,
    pub body: String,
}

/// A variant's text: the default and translations by locale (`fr`, `pt-BR`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Localized {
    #[serde(flatten)]
    pub default: Text,
    #[serde(default)]
    pub translations: BTreeMap<String, Text>,
}

/// Parsed title and body.
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    title: Template,
    body: Template,
}

/// A variant's text, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    default: Parsed,
    /// By lowercase locale.
    translations: BTreeMap<String, Parsed>,
}

/// A rendered title and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub body: String,
    /// The translation used; `None` for the default.
    pub locale: Option<String>,
}

fn parse(text: &Text, field: &str, scope: Scope) -> Result<Parsed, Refused> {
    let one = |value: &str, name: &str| {
        Template::parse(value, scope).map_err(|e| Refused {
            field: format!("{field}.{name}"),
            rule: e.to_string(),
        })
    };
    if text.title.trim().is_empty() && text.body.trim().is_empty() {
        return Err(Refused {
            field: format!("{field}.body"),
            rule: "a notification needs a title or a body".into(),
        });
    }
    Ok(Parsed {
        title: one(&text.title, "title")?,
        body: one(&text.body, "body")?,
    })
}

/// A locale tag as stored: lowercase, `-` between parts (`pt_BR` is `pt-br`).
fn normal(locale: &str) -> String {
    locale.trim().replace('_', "-").to_ascii_lowercase()
}

fn valid_locale(locale: &str) -> bool {
    let mut parts = locale.split('-');
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Content {
    /// Checks the variant at `field` (e.g. `variants[0]`).
    pub fn check(text: &Localized, field: &str, scope: Scope) -> Result<Content, Refused> {
        let default = parse(&text.default, field, scope)?;
        if text.translations.len() > MAX_TRANSLATIONS {
            return Err(Refused {
                field: format!("{field}.translations"),
                rule: format!("at most {MAX_TRANSLATIONS} translations"),
            });
        }
        let mut translations = BTreeMap::new();
        for (locale, text) in &text.translations {
            let key = normal(locale);
            let at = format!("{field}.translations.{locale}");
            if !valid_locale(&key) {
                return Err(Refused {
                    field: at,
                    rule: "a locale is a language code with optional parts, as fr or pt-BR".into(),
                });
            }
            if translations.insert(key, parse(text, &at, scope)?).is_some() {
                return Err(Refused {
                    field: at,
                    rule: "the same locale twice".into(),
                });
            }
        }
        Ok(Content {
            default,
            translations,
        })
    }

    /// The translation for `locale` by the rule of this module.
    fn choose(&self, locale: Option<&str>) -> (Option<&str>, &Parsed) {
        let Some(locale) = locale.map(normal).filter(|l| !l.is_empty()) else {
            return (None, &self.default);
        };
        if let Some((key, parsed)) = self.translations.get_key_value(&locale) {
            return (Some(key), parsed);
        }
        let language = locale.split('-').next().unwrap_or_default();
        if let Some((key, parsed)) = self.translations.get_key_value(language) {
            return (Some(key), parsed);
        }
        let prefix = format!("{language}-");
        match self
            .translations
            .iter()
            .find(|(key, _)| key.starts_with(&prefix))
        {
            Some((key, parsed)) => (Some(key), parsed),
            None => (None, &self.default),
        }
    }

    /// The text for a person (their properties, `$locale` among them) and, for
    /// triggered campaigns, the trigger event's properties. Title and body are cut to
    /// the send API's limits, at a character.
    pub fn render(
        &self,
        person: &Map<String, Value>,
        event: Option<&Map<String, Value>>,
    ) -> Result<Rendered, RenderError> {
        let locale = person.get("$locale").and_then(Value::as_str);
        let (chosen, parsed) = self.choose(locale);
        let context = Context { person, event };
        Ok(Rendered {
            title: cut(parsed.title.render(context)?, MAX_TITLE_CHARS),
            body: cut(parsed.body.render(context)?, MAX_BODY_CHARS),
            locale: chosen.map(str::to_string),
        })
    }
}

fn cut(mut text: String, chars: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(chars) {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Scope = Scope { event: false };

    fn content(value: Value) -> Result<Content, Refused> {
        let text: Localized = serde_json::from_value(value).unwrap();
        Content::check(&text, "variants[0]", PLAIN)
    }

    fn person(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_locale_chooses_the_translation_with_fallbacks() {
        let c = content(json!({
            "title": "Hi {{ person.name | default(\"there\") }}",
            "body": "Sale today",
            "translations": {
                "fr": {"title": "Salut {{ person.name | default(\"toi\") }}", "body": "Soldes"},
                "pt_BR": {"title": "Oi", "body": "Promoção"},
                "de-CH": {"title": "Grüezi", "body": "Ausverkauf"}
            }
        }))
        .unwrap();
        let render = |p: Value| c.render(&person(p), None).unwrap();
        let r = render(json!({"$locale": "fr-CA", "name": "Léa"}));
        assert_eq!(
            (r.title.as_str(), r.body.as_str(), r.locale.as_deref()),
            ("Salut Léa", "Soldes", Some("fr"))
        );
        assert_eq!(
            render(json!({"$locale": "pt-BR"})).locale.as_deref(),
            Some("pt-br")
        );
        // `pt` alone finds the only Portuguese translation; `de-DE` the Swiss one.
        assert_eq!(render(json!({"$locale": "pt"})).title, "Oi");
        assert_eq!(render(json!({"$locale": "de-DE"})).title, "Grüezi");
        let r = render(json!({"$locale": "ja-JP"}));
        assert_eq!((r.title.as_str(), r.locale), ("Hi there", None));
        assert_eq!(render(json!({})).title, "Hi there");
        assert_eq!(render(json!({"$locale": 7})).title, "Hi there");
    }

    #[test]
    fn faults_name_their_field() {
        let refused = |v: Value| content(v).unwrap_err();
        let e = refused(json!({"title": "Hi {{ person.name", "body": "x"}));
        assert_eq!(e.field, "variants[0].title");
        assert!(e.rule.contains("at byte 3"), "{e}");
        let e = refused(json!({"title": "a", "body": "b",
                               "translations": {"de": {"title": "x", "body": "{{ event.sku }}"}}}));
        assert_eq!(e.field, "variants[0].translations.de.body");
        assert!(e.rule.contains("event-triggered"), "{e}");
        let e = refused(json!({"title": "a", "body": "b",
                               "translations": {"english": {"title": "x", "body": "y"}}}));
        assert_eq!(e.field, "variants[0].translations.english");
        let e = refused(json!({"title": "a", "body": "b",
                               "translations": {"fr-FR": {"title": "x", "body": "y"},
                                                "fr_FR": {"title": "x", "body": "y"}}}));
        assert!(e.rule.contains("twice"), "{e}");
        // Unknown keys are refused by the request's parser.
        assert!(serde_json::from_value::<Localized>(
            json!({"title": "a", "body": "b", "subtitle": "c"})
        )
        .is_err());
        let e = refused(json!({"title": " ", "body": ""}));
        assert_eq!(e.field, "variants[0].body");
        // With a trigger event, `event` is allowed.
        let text: Localized =
            serde_json::from_value(json!({"title": "{{ event.sku }}", "body": "b"})).unwrap();
        let c = Content::check(&text, "variants[0]", Scope { event: true }).unwrap();
        let event = person(json!({"sku": "RED-42"}));
        assert_eq!(
            c.render(&person(json!({})), Some(&event)).unwrap().title,
            "RED-42"
        );
    }

    #[test]
    fn rendered_text_is_cut_to_the_send_limits() {
        let c = content(json!({"title": "{{ person.a }}{{ person.a }}", "body": "b"})).unwrap();
        let long = "ü".repeat(200);
        let r = c.render(&person(json!({ "a": long })), None).unwrap();
        assert_eq!(r.title.chars().count(), MAX_TITLE_CHARS);
    }
}
