//! Field expressions (inside `{ }` and as arguments of `by`, `select` and aggregates), with the
//! light static type checking Tempo's validation performs.

use super::lexer::{Pos, Tok};
use super::{PResult, ParseError, Parser};
use crate::ast::{ArithOp, CmpOp, FieldExpr, Intrinsic, Kind, Static, Status};

/// What is statically known about the type of a field expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Num,
    Str,
    Status,
    Kind,
    Nil,
    /// Attributes: any type, known only at evaluation.
    Any,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Status => "a status",
            Ty::Kind => "a kind",
            Ty::Nil => "nil",
            Ty::Any => "an attribute",
        }
    }

    fn is(self, want: Ty) -> bool {
        self == want || self == Ty::Any
    }
}

/// Binding levels of field operators, loosest first.
const LVL_LOGIC: u8 = 1;
const LVL_CMP: u8 = 2;
const LVL_ADD: u8 = 3;
const LVL_NOT: u8 = 4;
const LVL_MUL: u8 = 5;
const LVL_POW: u8 = 6;
const LVL_UNARY_MINUS: u8 = 7;

enum FieldOp {
    And,
    Or,
    Cmp(CmpOp),
    Regex { negated: bool },
    Arith(ArithOp),
}

fn field_op(tok: &Tok) -> Option<(FieldOp, u8)> {
    Some(match tok {
        Tok::And => (FieldOp::And, LVL_LOGIC),
        Tok::Or => (FieldOp::Or, LVL_LOGIC),
        Tok::Re => (FieldOp::Regex { negated: false }, LVL_CMP),
        Tok::Nre => (FieldOp::Regex { negated: true }, LVL_CMP),
        Tok::Add => (FieldOp::Arith(ArithOp::Add), LVL_ADD),
        Tok::Sub => (FieldOp::Arith(ArithOp::Sub), LVL_ADD),
        Tok::Mul => (FieldOp::Arith(ArithOp::Mul), LVL_MUL),
        Tok::Div => (FieldOp::Arith(ArithOp::Div), LVL_MUL),
        Tok::Mod => (FieldOp::Arith(ArithOp::Mod), LVL_MUL),
        Tok::Pow => (FieldOp::Arith(ArithOp::Pow), LVL_POW),
        other => (FieldOp::Cmp(super::cmp_op(other)?), LVL_CMP),
    })
}

/// Which fields a comma-separated list accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `by(...)` of a pipeline: any expression that references the span.
    By,
    /// `select(...)`, metrics `by(...)`: attributes and intrinsics only.
    Attributes,
}

impl Parser<'_> {
    /// The body of `{ ... }` after the opening brace, including the closing brace.
    pub(crate) fn spanset_filter_body(&mut self, open: Pos) -> PResult<FieldExpr> {
        if self.eat(&Tok::RBrace) {
            return Ok(FieldExpr::Static(Static::Bool(true)));
        }
        self.enter()?;
        let start = self.pos();
        let (expr, ty) = self.field_expr(0, "an expression or '}' after '{'")?;
        self.leave();
        if !ty.is(Ty::Bool) {
            return Err(ParseError::at(
                start,
                format!(
                    "a spanset filter must be a boolean expression (e.g. '{{ span.x = 1 }}'), found {}",
                    ty.name()
                ),
            ));
        }
        if *self.peek() != Tok::RBrace {
            return Err(self.unexpected(&format!(
                "an operator or '}}' to close the spanset filter opened at line {}, col {}",
                open.line, open.col
            )));
        }
        self.advance();
        Ok(expr)
    }

    /// Precedence climbing; `expected` describes what must come first (for error messages).
    pub(crate) fn field_expr(&mut self, min_level: u8, expected: &str) -> PResult<(FieldExpr, Ty)> {
        self.enter()?;
        let result = self.field_expr_inner(min_level, expected);
        self.leave();
        result
    }

    fn field_expr_inner(&mut self, min_level: u8, expected: &str) -> PResult<(FieldExpr, Ty)> {
        let (mut lhs, mut lty) = self.field_prefix(expected)?;
        while let Some((op, level)) = field_op(self.peek()) {
            if level < min_level {
                break;
            }
            let op_tok = self.advance();
            let op_text = self.src[op_tok.start..op_tok.end].to_string();
            let pos = op_tok.pos;
            if let FieldOp::Regex { negated } = op {
                if !lty.is(Ty::Str) {
                    return Err(ParseError::at(
                        pos,
                        format!("'{op_text}' needs a string on its left side, found {}", lty.name()),
                    ));
                }
                let pattern = match self.peek() {
                    Tok::Str(s) => s.clone(),
                    _ => {
                        return Err(
                            self.unexpected(&format!("a string literal (the regular expression) after '{op_text}'"))
                        );
                    }
                };
                let pattern_pos = self.pos();
                self.advance();
                check_regex(&pattern, pattern_pos)?;
                if field_op(self.peek()).is_some_and(|(_, l)| l > LVL_CMP) {
                    return Err(ParseError::at(
                        self.pos(),
                        format!("the right side of '{op_text}' must be a single string literal"),
                    ));
                }
                lhs = FieldExpr::Regex {
                    negated,
                    lhs: Box::new(lhs),
                    pattern,
                };
                lty = Ty::Bool;
                continue;
            }
            // Left-associative except `^`.
            let next_min = if level == LVL_POW { level } else { level + 1 };
            let (rhs, rty) = self.field_expr(next_min, &format!("a value after '{op_text}'"))?;
            let (l, r) = (Box::new(lhs), Box::new(rhs));
            (lhs, lty) = match op {
                FieldOp::And | FieldOp::Or => {
                    for t in [lty, rty] {
                        if !t.is(Ty::Bool) {
                            return Err(ParseError::at(
                                pos,
                                format!("'{op_text}' needs booleans, found {}", t.name()),
                            ));
                        }
                    }
                    (
                        if matches!(op, FieldOp::And) {
                            FieldExpr::And(l, r)
                        } else {
                            FieldExpr::Or(l, r)
                        },
                        Ty::Bool,
                    )
                }
                FieldOp::Cmp(cmp) => {
                    check_comparison(cmp, lty, rty, pos, &op_text)?;
                    (
                        FieldExpr::Compare {
                            op: cmp,
                            lhs: l,
                            rhs: r,
                        },
                        Ty::Bool,
                    )
                }
                FieldOp::Arith(arith) => {
                    for t in [lty, rty] {
                        if !t.is(Ty::Num) {
                            return Err(ParseError::at(
                                pos,
                                format!("'{op_text}' needs numbers, found {}", t.name()),
                            ));
                        }
                    }
                    (
                        FieldExpr::Arith {
                            op: arith,
                            lhs: l,
                            rhs: r,
                        },
                        Ty::Num,
                    )
                }
                FieldOp::Regex { .. } => unreachable!("handled above"),
            };
        }
        Ok((lhs, lty))
    }

    /// Prefix operators and operands.
    fn field_prefix(&mut self, expected: &str) -> PResult<(FieldExpr, Ty)> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Sub => {
                self.advance();
                let (operand, ty) = self.field_expr(LVL_UNARY_MINUS + 1, "a value after '-'")?;
                if !ty.is(Ty::Num) {
                    return Err(ParseError::at(pos, format!("'-' needs a number, found {}", ty.name())));
                }
                Ok((negate(operand), ty))
            }
            Tok::Not => {
                self.advance();
                let (operand, ty) = self.field_expr(LVL_NOT + 1, "a value after '!'")?;
                if !ty.is(Ty::Bool) {
                    return Err(ParseError::at(pos, format!("'!' needs a boolean, found {}", ty.name())));
                }
                Ok((FieldExpr::Not(Box::new(operand)), Ty::Bool))
            }
            Tok::LParen => {
                let open = self.advance();
                let inner = self.field_expr(0, "an expression after '('")?;
                self.close_paren(open.pos)?;
                Ok(inner)
            }
            Tok::Str(s) => {
                self.advance();
                Ok((FieldExpr::Static(Static::String(s)), Ty::Str))
            }
            Tok::Int(i) => {
                self.advance();
                Ok((FieldExpr::Static(Static::Int(i)), Ty::Num))
            }
            Tok::Float(f) => {
                self.advance();
                Ok((FieldExpr::Static(Static::Float(f)), Ty::Num))
            }
            Tok::Duration(d) => {
                self.advance();
                Ok((FieldExpr::Static(Static::Duration(d)), Ty::Num))
            }
            Tok::Attr(attr) => {
                self.advance();
                Ok((FieldExpr::Attribute(attr), Ty::Any))
            }
            Tok::Ident(word) => {
                if let Some(value) = keyword_static(&word) {
                    self.advance();
                    let ty = static_type(&value);
                    return Ok((FieldExpr::Static(value), ty));
                }
                if let Some(intrinsic) = intrinsic(&word) {
                    self.advance();
                    return Ok((FieldExpr::Intrinsic(intrinsic), intrinsic_type(intrinsic)));
                }
                Err(ParseError::at(pos, unknown_word_message(&word)))
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    /// `( field, field, ... )` after `by`/`select`; at least one field.
    pub(crate) fn field_list(&mut self, func: &str, kind: ListKind) -> PResult<Vec<FieldExpr>> {
        self.expect(&Tok::LParen, &format!("'(' after '{func}'"))?;
        let mut fields = Vec::new();
        loop {
            let pos = self.pos();
            let what = match kind {
                ListKind::By => format!("a field expression in {func}(...)"),
                ListKind::Attributes => format!("an attribute or intrinsic in {func}(...)"),
            };
            if *self.peek() == Tok::RParen {
                return Err(self.unexpected(&what));
            }
            let (expr, _) = self.field_expr(0, &what)?;
            match kind {
                ListKind::Attributes if !matches!(expr, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) => {
                    return Err(ParseError::at(
                        pos,
                        format!("{func}() accepts only attributes and intrinsics"),
                    ));
                }
                ListKind::By if !references_span(&expr) => {
                    return Err(ParseError::at(
                        pos,
                        format!("the expression in {func}() must reference an attribute or intrinsic"),
                    ));
                }
                _ => {}
            }
            fields.push(expr);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen, &format!("',' or ')' to close '{func}('"))?;
        Ok(fields)
    }

    /// A single attribute or intrinsic (argument of the `*_over_time` functions).
    pub(crate) fn attribute_or_intrinsic(&mut self, func: &str) -> PResult<FieldExpr> {
        let pos = self.pos();
        let what = format!("an attribute or intrinsic in {func}(...)");
        if *self.peek() == Tok::RParen {
            return Err(self.unexpected(&what));
        }
        let (expr, _) = self.field_expr(0, &what)?;
        if !matches!(expr, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) {
            return Err(ParseError::at(
                pos,
                format!("{func}() accepts only an attribute or intrinsic"),
            ));
        }
        Ok(expr)
    }

    /// The argument of `avg`/`min`/`max`/`sum`: numeric and referencing the span.
    pub(crate) fn aggregate_argument(&mut self, func: &str) -> PResult<FieldExpr> {
        let pos = self.pos();
        if *self.peek() == Tok::RParen {
            return Err(self.unexpected(&format!("a field such as 'duration' in {func}(...)")));
        }
        let (expr, ty) = self.field_expr(0, &format!("a field expression in {func}(...)"))?;
        if !ty.is(Ty::Num) {
            return Err(ParseError::at(
                pos,
                format!("{func}() needs a numeric expression, found {}", ty.name()),
            ));
        }
        if !references_span(&expr) {
            return Err(ParseError::at(
                pos,
                format!("the expression in {func}() must reference an attribute or intrinsic"),
            ));
        }
        Ok(expr)
    }
}

fn negate(operand: FieldExpr) -> FieldExpr {
    match operand {
        FieldExpr::Static(Static::Int(i)) if i != i64::MIN => FieldExpr::Static(Static::Int(-i)),
        FieldExpr::Static(Static::Float(f)) => FieldExpr::Static(Static::Float(-f)),
        FieldExpr::Static(Static::Duration(d)) if d != i64::MIN => FieldExpr::Static(Static::Duration(-d)),
        other => FieldExpr::Negate(Box::new(other)),
    }
}

fn check_comparison(op: CmpOp, l: Ty, r: Ty, pos: Pos, op_text: &str) -> PResult<()> {
    let ordering = matches!(op, CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte);
    if ordering {
        for t in [l, r] {
            if !matches!(t, Ty::Num | Ty::Str | Ty::Any) {
                return Err(ParseError::at(pos, format!("'{op_text}' cannot order {}", t.name())));
            }
        }
    }
    let compatible = l == Ty::Any || r == Ty::Any || l == r || (!ordering && (l == Ty::Nil || r == Ty::Nil));
    if !compatible {
        return Err(ParseError::at(
            pos,
            format!("cannot compare {} with {} using '{op_text}'", l.name(), r.name()),
        ));
    }
    Ok(())
}

fn check_regex(pattern: &str, pos: Pos) -> PResult<()> {
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Ok(_) => Ok(()),
        Err(err) => {
            let detail = match &err {
                regex::Error::Syntax(s) => {
                    let line = s
                        .lines()
                        .rev()
                        .find(|l| l.trim_start().starts_with("error:"))
                        .unwrap_or(s);
                    line.trim().trim_start_matches("error:").trim().to_string()
                }
                other => other.to_string(),
            };
            Err(ParseError::at(
                pos,
                format!("invalid regular expression \"{pattern}\": {detail}"),
            ))
        }
    }
}

/// Whether an expression reads something from the span (an attribute or intrinsic).
pub(crate) fn references_span(e: &FieldExpr) -> bool {
    match e {
        FieldExpr::Static(_) => false,
        FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_) => true,
        FieldExpr::Negate(x) | FieldExpr::Not(x) => references_span(x),
        FieldExpr::Regex { lhs, .. } => references_span(lhs),
        FieldExpr::Arith { lhs, rhs, .. } | FieldExpr::Compare { lhs, rhs, .. } => {
            references_span(lhs) || references_span(rhs)
        }
        FieldExpr::And(l, r) | FieldExpr::Or(l, r) => references_span(l) || references_span(r),
    }
}

fn static_type(s: &Static) -> Ty {
    match s {
        Static::Nil => Ty::Nil,
        Static::Bool(_) => Ty::Bool,
        Static::Int(_) | Static::Float(_) | Static::Duration(_) => Ty::Num,
        Static::String(_) => Ty::Str,
        Static::Status(_) => Ty::Status,
        Static::Kind(_) => Ty::Kind,
    }
}

/// Keyword literals: `true`, `nil`, `error`, `server`, `maxInt`, ...
pub(crate) fn keyword_static(word: &str) -> Option<Static> {
    Some(match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "nil" => Static::Nil,
        "ok" => Static::Status(Status::Ok),
        "error" => Static::Status(Status::Error),
        "unset" => Static::Status(Status::Unset),
        "unspecified" => Static::Kind(Kind::Unspecified),
        "internal" => Static::Kind(Kind::Internal),
        "server" => Static::Kind(Kind::Server),
        "client" => Static::Kind(Kind::Client),
        "producer" => Static::Kind(Kind::Producer),
        "consumer" => Static::Kind(Kind::Consumer),
        "minInt" => Static::Int(i64::MIN),
        "maxInt" => Static::Int(i64::MAX),
        _ => return None,
    })
}

/// Scoped (`span:name`) and legacy (`name`) intrinsic names.
pub(crate) fn intrinsic(word: &str) -> Option<Intrinsic> {
    use Intrinsic as I;
    Some(match word {
        "span:name" | "name" => I::Name,
        "span:status" | "status" => I::Status,
        "span:statusMessage" | "statusMessage" => I::StatusMessage,
        "span:kind" | "kind" => I::Kind,
        "span:duration" | "duration" => I::Duration,
        "span:id" => I::SpanId,
        "span:parentID" => I::ParentId,
        "span:childCount" => I::ChildCount,
        "trace:duration" | "traceDuration" => I::TraceDuration,
        "trace:rootName" | "rootName" => I::RootName,
        "trace:rootService" | "rootServiceName" => I::RootService,
        "trace:id" => I::TraceId,
        "event:name" => I::EventName,
        "event:timeSinceStart" => I::EventTimeSinceStart,
        "link:traceID" => I::LinkTraceId,
        "link:spanID" => I::LinkSpanId,
        "instrumentation:name" => I::InstrumentationName,
        "instrumentation:version" => I::InstrumentationVersion,
        "nestedSetLeft" => I::NestedSetLeft,
        "nestedSetRight" => I::NestedSetRight,
        "nestedSetParent" => I::NestedSetParent,
        _ => return None,
    })
}

fn intrinsic_type(i: Intrinsic) -> Ty {
    use Intrinsic as I;
    match i {
        I::Status => Ty::Status,
        I::Kind => Ty::Kind,
        I::Duration | I::TraceDuration | I::EventTimeSinceStart => Ty::Num,
        I::ChildCount | I::NestedSetLeft | I::NestedSetRight | I::NestedSetParent => Ty::Num,
        I::Name
        | I::StatusMessage
        | I::SpanId
        | I::ParentId
        | I::RootName
        | I::RootService
        | I::TraceId
        | I::EventName
        | I::LinkTraceId
        | I::LinkSpanId
        | I::InstrumentationName
        | I::InstrumentationVersion => Ty::Str,
    }
}

fn unknown_word_message(word: &str) -> String {
    if let Some((scope, name)) = word.split_once(':') {
        return format!("unknown intrinsic '{name}' for scope '{scope}:'");
    }
    match word {
        "parent" => "'parent' on its own is not supported; use 'parent.<attribute>'".to_string(),
        "count" | "avg" | "min" | "max" | "sum" => {
            format!("the aggregate '{word}' cannot be used inside a spanset filter; use '{{ ... }} | {word}(...) > N'")
        }
        _ => format!("unknown identifier '{word}'; attributes need a scope, e.g. '.{word}' or 'span.{word}'"),
    }
}
