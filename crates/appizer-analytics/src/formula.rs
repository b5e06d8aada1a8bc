//! Formulas across series: `A / B * 100`, `(A + B) / 2`. Letters name series in query
//! order; numbers, `+ - * /`, unary minus and parentheses. A value that is undefined
//! (a missing average, a division by zero) makes the result undefined.

use crate::{AnalyticsError, Result};

/// Longest formula, in characters.
pub const MAX_FORMULA_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    Number(f64),
    Series(usize),
    Neg(Box<Formula>),
    Binary(Box<Formula>, char, Box<Formula>),
}

impl Formula {
    /// Parses `text` over `series` series.
    pub fn parse(text: &str, series: usize) -> Result<Self> {
        if text.chars().count() > MAX_FORMULA_CHARS {
            return Err(AnalyticsError::invalid(
                "formula",
                format!("must be at most {MAX_FORMULA_CHARS} characters"),
            ));
        }
        let mut parser = Parser {
            chars: text.chars().filter(|c| !c.is_whitespace()).collect(),
            at: 0,
            series,
        };
        let formula = parser.sum()?;
        if parser.at != parser.chars.len() {
            return Err(parser.error("unexpected text"));
        }
        Ok(formula)
    }

    pub fn eval(&self, values: &[Option<f64>]) -> Option<f64> {
        match self {
            Formula::Number(n) => Some(*n),
            Formula::Series(i) => values.get(*i).copied().flatten(),
            Formula::Neg(f) => f.eval(values).map(|v| -v),
            Formula::Binary(a, op, b) => {
                let (a, b) = (a.eval(values)?, b.eval(values)?);
                let v = match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ if b == 0.0 => return None,
                    _ => a / b,
                };
                v.is_finite().then_some(v)
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    series: usize,
}

impl Parser {
    fn error(&self, what: &str) -> AnalyticsError {
        AnalyticsError::invalid(
            "formula",
            format!(
                "{what} at character {}: use series letters A to {}, numbers, + - * / and parentheses",
                self.at + 1,
                (b'A' + (self.series.clamp(1, 26) - 1) as u8) as char
            ),
        )
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<Formula> {
        let mut left = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            left = Formula::Binary(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Formula> {
        let mut left = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            left = Formula::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Formula> {
        match self.peek() {
            Some('-') => {
                self.at += 1;
                Ok(Formula::Neg(Box::new(self.unary()?)))
            }
            Some('(') => {
                self.at += 1;
                let inner = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(self.error("missing `)`"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(c) if c.is_ascii_uppercase() || c.is_ascii_lowercase() => {
                let index = (c.to_ascii_uppercase() as u8 - b'A') as usize;
                if index >= self.series {
                    return Err(self.error(&format!("no series {c}")));
                }
                self.at += 1;
                Ok(Formula::Series(index))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                text.parse()
                    .map(Formula::Number)
                    .map_err(|_| self.error("bad number"))
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_follow_precedence_and_leave_undefined_values_undefined() {
        let f = Formula::parse("A / B * 100", 2).unwrap();
        assert_eq!(f.eval(&[Some(1.0), Some(4.0)]), Some(25.0));
        assert_eq!(f.eval(&[Some(1.0), Some(0.0)]), None, "division by zero");
        assert_eq!(f.eval(&[None, Some(4.0)]), None);
        let g = Formula::parse("-(a + b) / 2 - 0.5", 2).unwrap();
        assert_eq!(g.eval(&[Some(1.0), Some(3.0)]), Some(-2.5));
        assert_eq!(
            Formula::parse("2 + 3 * 4", 1).unwrap().eval(&[]),
            Some(14.0)
        );
    }

    #[test]
    fn malformed_formulas_are_refused_with_the_position() {
        for (text, what) in [
            ("A +", "unexpected end"),
            ("C", "no series C"),
            ("(A", "missing `)`"),
            ("A $ B", "unexpected"),
            ("1..2", "bad number"),
        ] {
            let e = Formula::parse(text, 2).unwrap_err().to_string();
            assert!(e.starts_with("formula:") && e.contains(what), "{text}: {e}");
        }
    }
}
