//! TraceQL lexer: turns the query text into tokens with 1-based line/column positions.
//!
//! Lexing stops at the first error, which becomes a [`Tok::Error`] token: the parser reports it
//! when it reaches that token, so errors come out in text order.

use crate::ast::{Attribute, AttributeScope};

/// A 1-based position in the query text; columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    And,
    Or,
    Not,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Re,
    Nre,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Desc,
    Ance,
    Tilde,
    NotChild,
    NotParent,
    NotDesc,
    NotAnce,
    UnionChild,
    UnionParent,
    UnionDesc,
    UnionAnce,
    UnionSibl,
    /// A bare word: keyword, function name, legacy intrinsic, hint name. Scoped intrinsics keep
    /// their colon: `span:name`.
    Ident(String),
    Attr(Attribute),
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Eof,
    /// A lexing error; always the last token.
    Error(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// Byte range of the token in the source.
    pub start: usize,
    pub end: usize,
}

/// Lexes the whole query. The returned vector always ends with `Eof` or `Error`.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_whitespace();
        let pos = lx.pos();
        let start = lx.i;
        let tok = match lx.next_token() {
            Ok(tok) => tok,
            Err((msg, at)) => {
                out.push(Token {
                    tok: Tok::Error(msg),
                    pos: at,
                    start,
                    end: lx.i,
                });
                return out;
            }
        };
        let done = tok == Tok::Eof;
        out.push(Token {
            tok,
            pos,
            start,
            end: lx.i,
        });
        if done {
            return out;
        }
    }
}

type LexResult<T> = Result<T, (String, Pos)>;

struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    i: usize,
    line: usize,
    col: usize,
}

/// Characters that end an unquoted attribute name (besides whitespace), as in Tempo.
fn is_attribute_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ','
        )
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

const MICRO_SIGN: char = '\u{00B5}';
const GREEK_MU: char = '\u{03BC}';

impl<'a> Lexer<'a> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.i..].chars().next()
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.src[self.i..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    fn next_token(&mut self) -> LexResult<Tok> {
        let pos = self.pos();
        let Some(c) = self.peek() else { return Ok(Tok::Eof) };
        if c == '"' {
            return self.string().map(Tok::Str);
        }
        if c == '`' {
            return self.raw_string().map(Tok::Str);
        }
        if c.is_ascii_digit() || (c == '.' && self.peek_nth(1).is_some_and(|d| d.is_ascii_digit())) {
            return self.number();
        }
        if c == '.' {
            self.bump();
            return self.attribute(AttributeScope::Unscoped, false, ".");
        }
        if is_word_start(c) {
            return self.word();
        }
        self.operator(pos)
    }

    fn operator(&mut self, pos: Pos) -> LexResult<Tok> {
        const OPS: &[(&str, Tok)] = &[
            ("&>>", Tok::UnionDesc),
            ("&<<", Tok::UnionAnce),
            ("!>>", Tok::NotDesc),
            ("!<<", Tok::NotAnce),
            ("&&", Tok::And),
            ("&>", Tok::UnionChild),
            ("&<", Tok::UnionParent),
            ("&~", Tok::UnionSibl),
            ("||", Tok::Or),
            ("!=", Tok::Neq),
            ("!~", Tok::Nre),
            ("!>", Tok::NotChild),
            ("!<", Tok::NotParent),
            ("=~", Tok::Re),
            (">>", Tok::Desc),
            (">=", Tok::Gte),
            ("<<", Tok::Ance),
            ("<=", Tok::Lte),
            ("{", Tok::LBrace),
            ("}", Tok::RBrace),
            ("(", Tok::LParen),
            (")", Tok::RParen),
            (",", Tok::Comma),
            ("|", Tok::Pipe),
            ("!", Tok::Not),
            ("=", Tok::Eq),
            (">", Tok::Gt),
            ("<", Tok::Lt),
            ("~", Tok::Tilde),
            ("+", Tok::Add),
            ("-", Tok::Sub),
            ("*", Tok::Mul),
            ("/", Tok::Div),
            ("%", Tok::Mod),
            ("^", Tok::Pow),
        ];
        let rest = self.rest();
        if rest.starts_with("==") {
            return Err(("'==' is not a TraceQL operator; use '=' for equality".into(), pos));
        }
        for (text, tok) in OPS {
            if rest.starts_with(text) {
                for _ in 0..text.len() {
                    self.bump();
                }
                return Ok(tok.clone());
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        let hint = match c {
            '&' => " (did you mean '&&'?)",
            '\'' => " (strings use double quotes or backticks)",
            _ => "",
        };
        Err((format!("unexpected character '{c}'{hint}"), pos))
    }

    /// A bare word, a scoped attribute (`span.x`, `parent.resource.x`) or a scoped intrinsic
    /// (`span:name`).
    fn word(&mut self) -> LexResult<Tok> {
        let start = self.i;
        while self.peek().is_some_and(is_word_char) {
            self.bump();
        }
        let word = &self.src[start..self.i];
        let scope = match word {
            "span" => Some(AttributeScope::Span),
            "resource" => Some(AttributeScope::Resource),
            "event" => Some(AttributeScope::Event),
            "link" => Some(AttributeScope::Link),
            "instrumentation" => Some(AttributeScope::Instrumentation),
            "parent" => Some(AttributeScope::Unscoped),
            _ => None,
        };
        match (self.peek(), scope) {
            (Some('.'), Some(scope)) => {
                self.bump();
                if word == "parent" {
                    for (prefix, scope) in [("span.", AttributeScope::Span), ("resource.", AttributeScope::Resource)] {
                        if self.rest().starts_with(prefix) {
                            for _ in 0..prefix.len() {
                                self.bump();
                            }
                            return self.attribute(scope, true, &format!("parent.{prefix}"));
                        }
                    }
                    return self.attribute(scope, true, "parent.");
                }
                self.attribute(scope, false, &format!("{word}."))
            }
            (Some(':'), _) if matches!(word, "span" | "trace" | "event" | "link" | "instrumentation") => {
                self.bump();
                let name_start = self.i;
                while self.peek().is_some_and(is_word_char) {
                    self.bump();
                }
                if name_start == self.i {
                    return Err((format!("expected an intrinsic name after '{word}:'"), self.pos()));
                }
                Ok(Tok::Ident(self.src[start..self.i].to_string()))
            }
            _ => Ok(Tok::Ident(word.to_string())),
        }
    }

    /// The name part of an attribute, after its scope prefix (already consumed). Unquoted runs
    /// end at whitespace or an operator character; `"..."` segments may contain anything and
    /// accept the escapes `\"` and `\\`.
    fn attribute(&mut self, scope: AttributeScope, parent: bool, prefix: &str) -> LexResult<Tok> {
        let mut name = String::new();
        loop {
            match self.peek() {
                Some('"') => {
                    let quote_pos = self.pos();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(("unterminated quoted attribute name".into(), quote_pos)),
                            Some('"') => break,
                            Some('\\') => {
                                let esc_pos = self.pos();
                                match self.bump() {
                                    Some(c @ ('"' | '\\')) => name.push(c),
                                    other => {
                                        let shown = other.map(String::from).unwrap_or_default();
                                        return Err((
                                            format!(
                                                "invalid escape sequence '\\{shown}' in quoted attribute name \
                                                 (only \\\" and \\\\ are allowed)"
                                            ),
                                            esc_pos,
                                        ));
                                    }
                                }
                            }
                            Some(c) => name.push(c),
                        }
                    }
                }
                Some(c) if is_attribute_char(c) => {
                    name.push(c);
                    self.bump();
                }
                _ => break,
            }
        }
        if name.is_empty() {
            return Err((format!("expected an attribute name after '{prefix}'"), self.pos()));
        }
        Ok(Tok::Attr(Attribute { scope, parent, name }))
    }

    /// A double-quoted string with Go escape sequences.
    fn string(&mut self) -> LexResult<String> {
        let open = self.pos();
        self.bump();
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            let here = self.pos();
            match self.bump() {
                None => return Err(("unterminated string: missing closing '\"'".into(), open)),
                Some('\n') => return Err(("unterminated string: newline inside a string literal".into(), open)),
                Some('"') => break,
                Some('\\') => self.escape(&mut bytes, here)?,
                Some(c) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        String::from_utf8(bytes).map_err(|_| ("string escape sequences do not form valid UTF-8".to_string(), open))
    }

    fn escape(&mut self, out: &mut Vec<u8>, at: Pos) -> LexResult<()> {
        let c = self.bump();
        let simple = match c {
            Some('a') => Some(0x07),
            Some('b') => Some(0x08),
            Some('f') => Some(0x0c),
            Some('n') => Some(b'\n'),
            Some('r') => Some(b'\r'),
            Some('t') => Some(b'\t'),
            Some('v') => Some(0x0b),
            Some('\\') => Some(b'\\'),
            Some('"') => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let digits = |lx: &mut Self, n: usize, radix: u32| -> Option<u32> {
            let mut v: u32 = 0;
            for _ in 0..n {
                let d = lx.peek()?.to_digit(radix)?;
                lx.bump();
                v = v.checked_mul(radix)?.checked_add(d)?;
            }
            Some(v)
        };
        let bad = |c: Option<char>| {
            let shown = c.map(String::from).unwrap_or_default();
            (
                format!(
                    "invalid escape sequence '\\{shown}' in string (write '\\\\' for a backslash, \
                     or use a `raw string`)"
                ),
                at,
            )
        };
        match c {
            Some('x') => {
                let v = digits(self, 2, 16).ok_or_else(|| bad(c))?;
                out.push(v as u8);
            }
            Some(d @ '0'..='7') => {
                let rest = digits(self, 2, 8).ok_or_else(|| bad(c))?;
                let v = (d as u32 - '0' as u32) * 64 + rest;
                out.push(u8::try_from(v).map_err(|_| bad(c))?);
            }
            Some('u') | Some('U') => {
                let n = if c == Some('u') { 4 } else { 8 };
                let v = digits(self, n, 16).ok_or_else(|| bad(c))?;
                let ch = char::from_u32(v).ok_or_else(|| bad(c))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            other => return Err(bad(other)),
        }
        Ok(())
    }

    /// A backtick raw string: no escapes, may span lines; carriage returns are dropped (as in Go).
    fn raw_string(&mut self) -> LexResult<String> {
        let open = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(("unterminated raw string: missing closing '`'".into(), open)),
                Some('`') => return Ok(s),
                Some('\r') => {}
                Some(c) => s.push(c),
            }
        }
    }

    /// Integers, floats (`1.5`, `.5`, `1e9`) and durations (`100ms`, `1.5s`, `1h30m`, `1d`).
    fn number(&mut self) -> LexResult<Tok> {
        let pos = self.pos();
        let start = self.i;
        let mut is_float = false;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') && self.peek_nth(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let exp_digit_at = match (self.peek(), self.peek_nth(1)) {
            (Some('e' | 'E'), Some('+' | '-')) => 2,
            (Some('e' | 'E'), _) => 1,
            _ => 0,
        };
        if exp_digit_at > 0 && self.peek_nth(exp_digit_at).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            for _ in 0..exp_digit_at {
                self.bump();
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let number_end = self.i;
        if self
            .peek()
            .is_some_and(|c| matches!(c, 'n' | 'u' | 'm' | 's' | 'h' | 'd' | 'w' | 'y' | MICRO_SIGN | GREEK_MU))
            && !is_float_with_exponent(&self.src[start..number_end])
        {
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == MICRO_SIGN || c == GREEK_MU)
            {
                self.bump();
            }
            let text = &self.src[start..self.i];
            return parse_duration(text).map(Tok::Duration).ok_or_else(|| {
                (
                    format!("invalid duration '{text}' (units: ns, us, µs, ms, s, m, h, d, w, y)"),
                    pos,
                )
            });
        }
        if self.peek().is_some_and(|c| is_word_char(c) || c == '.') {
            while self.peek().is_some_and(|c| is_word_char(c) || c == '.') {
                self.bump();
            }
            return Err((format!("invalid number '{}'", &self.src[start..self.i]), pos));
        }
        let text = &self.src[start..number_end];
        if is_float {
            text.parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| (format!("invalid number '{text}'"), pos))
        } else {
            text.parse::<i64>()
                .map(Tok::Int)
                .map_err(|_| (format!("integer '{text}' is out of range"), pos))
        }
    }
}

fn is_float_with_exponent(text: &str) -> bool {
    text.contains(['e', 'E'])
}

/// Parses a Go/Prometheus-style duration (`1.5s`, `1h30m`, `250µs`, `2d`) into nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    const UNITS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("\u{00B5}s", 1_000),
        ("\u{03BC}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
        ("w", 604_800_000_000_000),
        ("y", 31_536_000_000_000_000),
    ];
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        // The longest matching unit wins: "ms" rather than "m".
        let (unit_len, scale) = UNITS
            .iter()
            .filter(|(u, _)| after.starts_with(u))
            .map(|(u, s)| (u.len(), *s))
            .max_by_key(|(len, _)| *len)?;
        let whole: u128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
        let mut value = whole.checked_mul(scale)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().ok()?;
            let denom = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            value = value.checked_add(frac.checked_mul(scale)? / denom)?;
        }
        total = total.checked_add(value)?;
        rest = &after[unit_len..];
    }
    i64::try_from(total).ok()
}
