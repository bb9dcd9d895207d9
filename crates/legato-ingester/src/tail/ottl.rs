//! The Collector's `ottl_condition` policy, for the conditions users write most: OTTL
//! boolean expressions over span (or span event) names, kinds, status codes and attributes
//! are translated to a TraceQL filter, which Legato evaluates. Anything else is refused at
//! start-up, naming the condition.
//!
//! Supported: paths `attributes["k"]`, `resource.attributes["k"]`, `name`, `kind`,
//! `status.code` (span conditions) and `attributes["k"]`, `name` (span-event conditions);
//! `==`, `!=`, `<`, `<=`, `>`, `>=`; `and`, `or`, `not`, parentheses; string, integer, float
//! and boolean literals, `nil`, the `SPAN_KIND_*` and `STATUS_CODE_*` enums; and
//! `IsMatch(path, "regex")`. Span conditions match a span, event conditions an event of a
//! span; the policy samples when any condition of either list matches (as the Collector).

/// Which OTTL context a condition is written in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Span,
    SpanEvent,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Dot,
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '[' => (out.push(Tok::LBracket), i += 1).1,
            ']' => (out.push(Tok::RBracket), i += 1).1,
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => (out.push(Tok::Dot), i += 1).1,
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            s.push(*chars.get(i + 1).ok_or("unterminated string")?);
                            i += 2;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "==" => "==",
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    _ if c == '<' => "<",
                    _ if c == '>' => ">",
                    _ => return Err(format!("unexpected {c:?}")),
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == 'e' || *d == 'E')
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|d| d.is_alphanumeric() || *d == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

/// A TraceQL operand and whether it is an attribute (whose enum-like literals stay strings).
struct Operand {
    text: String,
    field: Option<&'static str>,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    ctx: Context,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!("expected {want:?}, found {other:?}")),
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<String, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = format!("({left} || {})", self.and()?);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<String, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            left = format!("({left} && {})", self.not()?);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<String, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(format!("!({})", self.not()?));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<String, String> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(format!("({inner})"));
        }
        if self.keyword("IsMatch") {
            self.pos += 1;
            self.expect(Tok::LParen)?;
            let target = self.path()?;
            self.expect(Tok::Comma)?;
            let Some(Tok::Str(pattern)) = self.next() else {
                return Err("IsMatch takes a path and a string pattern".into());
            };
            self.expect(Tok::RParen)?;
            // OTTL's IsMatch finds the pattern anywhere; TraceQL's =~ matches the whole value.
            return Ok(format!("{} =~ {}", target.text, quote(&format!(".*(?:{pattern}).*"))));
        }
        let left = self.operand()?;
        let Some(Tok::Op(op)) = self.next() else {
            return Err("expected a comparison (==, !=, <, <=, >, >=)".into());
        };
        let right = self.operand()?;
        let field = left.field.or(right.field);
        let fix = |o: Operand| match (field, o.field) {
            (Some(f), None) => enum_literal(f, &o.text).unwrap_or(o.text),
            _ => o.text,
        };
        let (l, r) = (fix(left), fix(right));
        let op = match op {
            "==" => "=",
            other => other,
        };
        Ok(format!("{l} {op} {r}"))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Operand {
                    text: quote(&s),
                    field: None,
                })
            }
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Operand { text: n, field: None })
            }
            Some(Tok::Ident(w)) if matches!(w.as_str(), "true" | "false" | "nil") => {
                self.pos += 1;
                Ok(Operand { text: w, field: None })
            }
            Some(Tok::Ident(w)) if w.starts_with("SPAN_KIND_") || w.starts_with("STATUS_CODE_") => {
                self.pos += 1;
                Ok(Operand { text: w, field: None })
            }
            _ => self.path(),
        }
    }

    fn path(&mut self) -> Result<Operand, String> {
        let Some(Tok::Ident(first)) = self.next() else {
            return Err("expected a path such as attributes[\"key\"] or name".into());
        };
        let mut parts = vec![first];
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(w)) => parts.push(w),
                other => return Err(format!("expected a name after '.', found {other:?}")),
            }
        }
        let key = if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let Some(Tok::Str(key)) = self.next() else {
                return Err("attribute keys are strings: attributes[\"key\"]".into());
            };
            self.expect(Tok::RBracket)?;
            Some(key)
        } else {
            None
        };
        let path: Vec<&str> = parts.iter().map(String::as_str).collect();
        let (text, field) = match (self.ctx, path.as_slice(), key) {
            (Context::Span, ["attributes"], Some(k)) => (format!("span.{}", attribute(&k)), None),
            (Context::Span, ["resource", "attributes"], Some(k)) => (format!("resource.{}", attribute(&k)), None),
            (Context::Span, ["name"], None) => ("name".into(), None),
            (Context::Span, ["kind"], None) => ("kind".into(), Some("kind")),
            (Context::Span, ["status", "code"], None) => ("status".into(), Some("status")),
            (Context::SpanEvent, ["attributes"], Some(k)) => (format!("event.{}", attribute(&k)), None),
            (Context::SpanEvent, ["name"], None) => ("event:name".into(), None),
            (_, p, _) => return Err(format!("path {} is not supported", p.join("."))),
        };
        Ok(Operand { text, field })
    }
}

/// An attribute name in TraceQL: bare when it can be, quoted otherwise.
fn attribute(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        key.to_string()
    } else {
        quote(key)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// OTTL's kind and status enums (names or numbers) as TraceQL's.
fn enum_literal(field: &str, literal: &str) -> Option<String> {
    let name = match (field, literal) {
        ("kind", "SPAN_KIND_UNSPECIFIED" | "0") => "unspecified",
        ("kind", "SPAN_KIND_INTERNAL" | "1") => "internal",
        ("kind", "SPAN_KIND_SERVER" | "2") => "server",
        ("kind", "SPAN_KIND_CLIENT" | "3") => "client",
        ("kind", "SPAN_KIND_PRODUCER" | "4") => "producer",
        ("kind", "SPAN_KIND_CONSUMER" | "5") => "consumer",
        ("status", "STATUS_CODE_UNSET" | "0") => "unset",
        ("status", "STATUS_CODE_OK" | "1") => "ok",
        ("status", "STATUS_CODE_ERROR" | "2") => "error",
        _ => return None,
    };
    Some(name.to_string())
}

/// One OTTL condition as a TraceQL field expression.
pub fn condition(text: &str, ctx: Context) -> Result<String, String> {
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
        ctx,
    };
    let expr = p.or()?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {t:?} after the condition")),
    }
}

/// The policy's span and span-event conditions as one TraceQL query.
pub fn query(span: &[String], spanevent: &[String]) -> Result<String, String> {
    let set = |conds: &[String], ctx: Context| -> Result<Option<String>, String> {
        if conds.is_empty() {
            return Ok(None);
        }
        let parts = conds
            .iter()
            .map(|c| condition(c, ctx).map_err(|e| format!("condition {c:?}: {e}")))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(format!("{{ {} }}", parts.join(" || "))))
    };
    match (set(span, Context::Span)?, set(spanevent, Context::SpanEvent)?) {
        (Some(a), Some(b)) => Ok(format!("{a} || {b}")),
        (Some(a), None) | (None, Some(a)) => Ok(a),
        (None, None) => Err("ottl_condition needs span or spanevent conditions".into()),
    }
}
