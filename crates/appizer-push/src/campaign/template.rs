//! Message templates: text with `{{ ... }}` placeholders filled from the person's
//! properties and, for triggered campaigns, the trigger event's.
//!
//! ```text
//! Hi {{ person.first_name | default("there") }}, your {{ event.product | lower }} is waiting
//! ```
//!
//! A placeholder is a value and filters: `person.<property>`, `event.<property>` (only
//! where a trigger event exists), or a string literal; filters `default("text")`,
//! `upper`, `lower`, `capitalize`, `trim`, `truncate(n)`. There is nothing else: no
//! loops, calls or includes, so rendering is one pass over the parts and its work is
//! bounded by the template's size and [`MAX_VALUE_BYTES`] per value. A template that
//! does not parse, names an unknown root or filter, or uses `event` where there is no
//! event is refused when it is saved, with the offset of the fault.

use std::fmt::Write;

use serde_json::{Map, Value};

/// Longest template text.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// Most placeholders in one template.
pub const MAX_PLACEHOLDERS: usize = 64;
/// Most filters on one placeholder.
pub const MAX_FILTERS: usize = 8;
/// A property value is cut to this many bytes (at a character boundary) before filters.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Longest rendered text; a longer result is an error, never a cut message.
pub const MAX_OUTPUT_BYTES: usize = 8192;

/// Why a template was refused: the rule and the byte offset where it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {offset})")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// Why a rendering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the rendered text is longer than {MAX_OUTPUT_BYTES} bytes")]
    TooLong,
}

/// What a template may refer to where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// A trigger event exists (event-triggered campaigns).
    pub event: bool,
}

/// What a rendering reads.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub person: &'a Map<String, Value>,
    pub event: Option<&'a Map<String, Value>>,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value(Source, Vec<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Person(String),
    Event(String),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Default(String),
    Upper,
    Lower,
    Capitalize,
    Trim,
    Truncate(usize),
}

impl Template {
    pub fn parse(text: &str, scope: Scope) -> Result<Template, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(fault(
                MAX_TEMPLATE_BYTES,
                format!("a template is at most {MAX_TEMPLATE_BYTES} bytes"),
            ));
        }
        let mut parts = Vec::new();
        let mut rest = 0;
        let mut placeholders = 0;
        while let Some(found) = text[rest..].find("{{") {
            let open = rest + found;
            if let Some(stray) = text[rest..open].find("}}") {
                return Err(fault(rest + stray, "`}}` without its `{{`".into()));
            }
            if open > rest {
                parts.push(Part::Text(text[rest..open].to_string()));
            }
            let inner = open + 2;
            let close = find_close(text, inner)
                .ok_or_else(|| fault(open, "`{{` without its `}}`".into()))?;
            placeholders += 1;
            if placeholders > MAX_PLACEHOLDERS {
                return Err(fault(
                    open,
                    format!("at most {MAX_PLACEHOLDERS} placeholders"),
                ));
            }
            let mut lexer = Lexer {
                text,
                at: inner,
                end: close,
            };
            parts.push(placeholder(&mut lexer, scope)?);
            rest = close + 2;
        }
        if let Some(stray) = text[rest..].find("}}") {
            return Err(fault(rest + stray, "`}}` without its `{{`".into()));
        }
        if rest < text.len() {
            parts.push(Part::Text(text[rest..].to_string()));
        }
        Ok(Template { parts })
    }

    /// The text for one person (and event).
    pub fn render(&self, context: Context<'_>) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(source, filters) => {
                    let mut value = match source {
                        Source::Person(name) => context.person.get(name).and_then(text_of),
                        Source::Event(name) => {
                            context.event.and_then(|e| e.get(name)).and_then(text_of)
                        }
                        Source::Literal(text) => Some(text.clone()),
                    };
                    for filter in filters {
                        value = apply(filter, value);
                    }
                    out.push_str(value.as_deref().unwrap_or(""));
                }
            }
            if out.len() > MAX_OUTPUT_BYTES {
                return Err(RenderError::TooLong);
            }
        }
        Ok(out)
    }

    /// The person properties the template reads (for previews and audience checks).
    pub fn person_properties(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(Source::Person(name), _) => Some(name.as_str()),
            _ => None,
        })
    }
}

fn fault(offset: usize, message: String) -> TemplateError {
    TemplateError { offset, message }
}

/// The `}}` closing a placeholder opened before `from`, skipping string literals.
fn find_close(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    let mut quoted = false;
    while i + 1 < bytes.len() || (quoted && i < bytes.len()) {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted && bytes[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn placeholder(lexer: &mut Lexer<'_>, scope: Scope) -> Result<Part, TemplateError> {
    let start = lexer.skip_space();
    let source = match lexer.token()? {
        Token::Str(text) => Source::Literal(text),
        Token::Ident(root) => {
            if !lexer.eat('.') {
                return Err(fault(
                    start,
                    format!("`{root}` needs a property: `{root}.name`"),
                ));
            }
            let at = lexer.skip_space();
            let Token::Ident(name) = lexer.token()? else {
                return Err(fault(at, "a property name".into()));
            };
            match root.as_str() {
                "person" => Source::Person(name),
                "event" if scope.event => Source::Event(name),
                "event" => {
                    return Err(fault(
                        start,
                        "`event` exists only in event-triggered campaigns".into(),
                    ))
                }
                _ => {
                    return Err(fault(
                        start,
                        format!("unknown `{root}`: a value is `person.*`, `event.*` or a string"),
                    ))
                }
            }
        }
        Token::End => return Err(fault(start, "an empty placeholder".into())),
        other => return Err(fault(start, format!("unexpected {}", other.describe()))),
    };
    let mut filters = Vec::new();
    loop {
        let at = lexer.skip_space();
        match lexer.token()? {
            Token::End => break,
            Token::Pipe => {}
            other => {
                return Err(fault(
                    at,
                    format!("expected `|` or `}}}}`, found {}", other.describe()),
                ))
            }
        }
        if filters.len() == MAX_FILTERS {
            return Err(fault(at, format!("at most {MAX_FILTERS} filters")));
        }
        filters.push(filter(lexer)?);
    }
    Ok(Part::Value(source, filters))
}

fn filter(lexer: &mut Lexer<'_>) -> Result<Filter, TemplateError> {
    let at = lexer.skip_space();
    let Token::Ident(name) = lexer.token()? else {
        return Err(fault(at, "a filter name after `|`".into()));
    };
    let argument = |lexer: &mut Lexer<'_>| -> Result<Token, TemplateError> {
        let open = lexer.skip_space();
        if !lexer.eat('(') {
            return Err(fault(open, format!("`{name}` takes one argument in `( )`")));
        }
        lexer.skip_space();
        let value = lexer.token()?;
        let close = lexer.skip_space();
        if !lexer.eat(')') {
            return Err(fault(close, "`)`".into()));
        }
        Ok(value)
    };
    Ok(match name.as_str() {
        "default" => match argument(lexer)? {
            Token::Str(text) => Filter::Default(text),
            _ => return Err(fault(at, "`default` takes a string".into())),
        },
        "truncate" => match argument(lexer)? {
            Token::Number(n) if n > 0 => Filter::Truncate(n),
            _ => return Err(fault(at, "`truncate` takes a length above 0".into())),
        },
        "upper" => Filter::Upper,
        "lower" => Filter::Lower,
        "capitalize" => Filter::Capitalize,
        "trim" => Filter::Trim,
        other => {
            return Err(fault(
                at,
                format!(
                    "unknown filter `{other}`: default, upper, lower, capitalize, trim, truncate"
                ),
            ))
        }
    })
}

fn apply(filter: &Filter, value: Option<String>) -> Option<String> {
    match filter {
        Filter::Default(fallback) => match value {
            Some(v) if !v.trim().is_empty() => Some(v),
            _ => Some(fallback.clone()),
        },
        Filter::Upper => value.map(|v| v.to_uppercase()),
        Filter::Lower => value.map(|v| v.to_lowercase()),
        Filter::Capitalize => value.map(|v| {
            let mut chars = v.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => v,
            }
        }),
        Filter::Trim => value.map(|v| v.trim().to_string()),
        Filter::Truncate(n) => value.map(|v| match v.char_indices().nth(*n) {
            Some((cut, _)) => format!("{}…", &v[..cut]),
            None => v,
        }),
    }
}

/// A property as text: strings as they are, numbers and booleans as JSON writes them,
/// arrays and objects as JSON; null is no value. Cut to [`MAX_VALUE_BYTES`].
fn text_of(value: &Value) -> Option<String> {
    let mut text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => {
            let mut s = String::new();
            let _ = write!(s, "{other}");
            s
        }
    };
    if text.len() > MAX_VALUE_BYTES {
        let mut cut = MAX_VALUE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Some(text)
}

#[derive(Debug)]
enum Token {
    Ident(String),
    Str(String),
    Number(usize),
    Pipe,
    Other(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("`{name}`"),
            Token::Str(_) => "a string".into(),
            Token::Number(n) => format!("`{n}`"),
            Token::Pipe => "`|`".into(),
            Token::Other(c) => format!("`{c}`"),
            Token::End => "`}}`".into(),
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    at: usize,
    end: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..self.end].chars().next()
    }

    fn skip_space(&mut self) -> usize {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
        self.at
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn token(&mut self) -> Result<Token, TemplateError> {
        let start = self.at;
        let Some(c) = self.peek() else {
            return Ok(Token::End);
        };
        if c == '|' {
            self.at += 1;
            return Ok(Token::Pipe);
        }
        if c == '"' {
            self.at += 1;
            let mut out = String::new();
            loop {
                let Some(c) = self.peek() else {
                    return Err(fault(start, "a string without its closing `\"`".into()));
                };
                self.at += c.len_utf8();
                match c {
                    '"' => return Ok(Token::Str(out)),
                    '\\' => {
                        let Some(next) = self.peek() else {
                            return Err(fault(start, "a string without its closing `\"`".into()));
                        };
                        self.at += next.len_utf8();
                        match next {
                            '"' | '\\' => out.push(next),
                            'n' => out.push('\n'),
                            _ => {
                                return Err(fault(
                                    self.at - 2,
                                    "escapes are `\\\"`, `\\\\` and `\\n`".into(),
                                ))
                            }
                        }
                    }
                    c => out.push(c),
                }
            }
        }
        if c.is_ascii_digit() {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
            return self.text[start..self.at]
                .parse()
                .map(Token::Number)
                .map_err(|_| fault(start, "a number too large".into()));
        }
        if c.is_alphanumeric() || c == '_' || c == '$' {
            while self
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-')
            {
                self.at += self.peek().map_or(1, char::len_utf8);
            }
            return Ok(Token::Ident(self.text[start..self.at].to_string()));
        }
        self.at += c.len_utf8();
        Ok(Token::Other(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Scope = Scope { event: false };
    const TRIGGERED: Scope = Scope { event: true };

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn render(text: &str, person: Value, event: Option<Value>) -> String {
        let person = map(person);
        let event = event.map(map);
        Template::parse(text, TRIGGERED)
            .unwrap()
            .render(Context {
                person: &person,
                event: event.as_ref(),
            })
            .unwrap()
    }

    #[test]
    fn placeholders_take_person_and_event_properties_with_defaults_and_filters() {
        let text = r#"Hi {{ person.first_name | default("there") }}, your {{event.product|lower}} is waiting"#;
        assert_eq!(
            render(
                text,
                json!({"first_name": "Ada"}),
                Some(json!({"product": "Red SHOES"}))
            ),
            "Hi Ada, your red shoes is waiting"
        );
        // Missing, null and blank take the default; no default is empty.
        for person in [
            json!({}),
            json!({"first_name": null}),
            json!({"first_name": "  "}),
        ] {
            assert_eq!(
                render(text, person, Some(json!({}))),
                "Hi there, your  is waiting"
            );
        }
        assert_eq!(
            render(
                "{{ person.plan | upper }} {{ person.visits }} {{ person.pro }} {{ person.tags }}",
                json!({"plan": "gold", "visits": 12, "pro": true, "tags": ["a", "b"]}),
                None
            ),
            r#"GOLD 12 true ["a","b"]"#
        );
        assert_eq!(
            render(
                r#"{{ person.city | trim | capitalize }}|{{ person.bio | truncate(5) }}|{{ "{{" }}"#,
                json!({"city": "  zürich ", "bio": "Ångström units"}),
                None
            ),
            "Zürich|Ångst…|{{"
        );
        assert_eq!(
            render("{{ person.$locale }}", json!({"$locale": "fr-CH"}), None),
            "fr-CH"
        );
        assert_eq!(render("no placeholder", json!({}), None), "no placeholder");
        let t = Template::parse("{{ person.a }}{{ person.b | upper }}", PLAIN).unwrap();
        assert_eq!(t.person_properties().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn faults_are_refused_with_their_offset() {
        let refused = |text: &str, scope: Scope| Template::parse(text, scope).unwrap_err();
        let e = refused("Hi {{ person.name ", PLAIN);
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("without its `}}`"), "{e}");
        let e = refused("Hi {{ event.product }}", PLAIN);
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("event-triggered"), "{e}");
        assert!(Template::parse("Hi {{ event.product }}", TRIGGERED).is_ok());
        let e = refused("{{ user.name }}", PLAIN);
        assert!(e.message.contains("unknown `user`"), "{e}");
        let e = refused("{{ person.name | shout }}", PLAIN);
        assert_eq!(e.offset, 17);
        assert!(e.message.contains("unknown filter `shout`"), "{e}");
        for (text, rule) in [
            ("{{ person }}", "needs a property"),
            ("{{ }}", "empty placeholder"),
            ("{{ person.name | default(3) }}", "takes a string"),
            ("{{ person.name | default(\"x\" }}", "`)`"),
            ("{{ person.name | truncate(0) }}", "above 0"),
            ("{{ person.name person.age }}", "expected `|`"),
            ("{{ \"open }}", "`}}`"),
            ("a }} b", "without its `{{`"),
            ("a }} {{ person.x }}", "without its `{{`"),
            ("{{ \"\\t\" }}", "escapes"),
        ] {
            let e = refused(text, PLAIN);
            assert!(e.message.contains(rule), "{text}: {e}");
        }
    }

    #[test]
    fn limits_on_size_work_and_output() {
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(Template::parse(&long, PLAIN)
            .unwrap_err()
            .message
            .contains("at most"));
        let many = "{{ person.a }}".repeat(MAX_PLACEHOLDERS + 1);
        assert!(Template::parse(&many, PLAIN)
            .unwrap_err()
            .message
            .contains("placeholders"));
        let filters = format!("{{{{ person.a{} }}}}", " | upper".repeat(MAX_FILTERS + 1));
        assert!(Template::parse(&filters, PLAIN)
            .unwrap_err()
            .message
            .contains("filters"));
        // A huge property is cut before it is used; many of them overflow the output,
        // which is an error rather than a message cut short.
        let big = json!({"a": "é".repeat(MAX_VALUE_BYTES)});
        let one = render("{{ person.a }}", big.clone(), None);
        assert_eq!(one.len(), MAX_VALUE_BYTES);
        let person = map(big);
        let nine = Template::parse(&"{{ person.a }}".repeat(9), PLAIN).unwrap();
        assert_eq!(
            nine.render(Context {
                person: &person,
                event: None
            }),
            Err(RenderError::TooLong)
        );
    }
}
