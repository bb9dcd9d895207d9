//! TraceQL parser: a hand-written recursive-descent / precedence-climbing parser over the tokens
//! of [`lexer`]. Entry point: [`parse`].
//!
//! Grammar decisions (see also the crate tests and `tests/corpus/*.txt`):
//! * Spanset operators: `&&` and `||` share the loosest level; the structural operators (`>`,
//!   `<`, `>>`, `<<`, `~`, their `!` and `&` variants) bind tighter; all are left-associative,
//!   as in Tempo's grammar. So `{a} && {b} > {c}` is `{a} && ({b} > {c})`.
//! * Field expressions, loosest first: `&&` = `||`; comparisons and regex matches; `+ -`; `!`;
//!   `* / %`; `^` (right-associative); unary minus. Unary minus applied to a number or duration
//!   literal is folded into the literal (`-5` is `Static::Int(-5)`).
//! * A query may start with a scalar filter, `by(...)` or `select(...)` (Tempo accepts these);
//!   the pipeline then starts with `{ }`.
//! * A parenthesised metrics query (`({} | rate()) > 10`) is unwrapped. Metrics queries in
//!   parentheses combine with `+ - * /` and with constant numbers (`arith.rs`); a bare
//!   `{ } | rate() * 2` is an error, as in Tempo. `compare()` stands alone: no `by`, second
//!   stages or arithmetic.
//! * Light type checking rejects what Tempo's validation rejects: non-boolean filters
//!   (`{ 1 }`), mismatched comparisons (`{ 1 = "a" }`), arithmetic on strings, regexes on
//!   numbers, aggregates or `by()` that do not reference the span (`sum(3)`), invalid regexes.
//!
//! Deliberate differences from Tempo's grammar: a parenthesised pipeline may be combined with a
//! bare filter (`({...} | count() > 1) && {...}`; Tempo wants both sides parenthesised);
//! metrics comparisons may also be written after a pipe (`| rate() | > 10`); second stages may
//! follow a parenthesised metrics expression inside further parentheses
//! (`((A) > 10) * 2`, which Tempo writes `({...} | rate() > 10) * 2`); `parent.x` is
//! accepted (Tempo parses it but reports it as unsupported); unary minus binds tighter than `^`
//! (`-2 ^ 2` is 4), whereas Tempo's yacc rule gives it the precedence of binary `-`.

mod arith;
mod field;
mod lexer;
mod metrics;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_metrics;
#[cfg(test)]
mod tests_pipeline;

use crate::ast::{MetricsQuery, Pipeline, Query, SpansetExpr, Stage, Static, StructuralMode, StructuralOp};
use lexer::{Pos, Tok, Token};

/// A TraceQL syntax or validation error, with the 1-based line and column (in characters) where
/// it was detected and a message saying what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    fn at(pos: Pos, message: impl Into<String>) -> Self {
        ParseError {
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

/// Parses a TraceQL query (search or metrics, with optional hints).
pub fn parse(query: &str) -> Result<Query, ParseError> {
    let mut p = Parser {
        src: query,
        tokens: lexer::tokenize(query),
        idx: 0,
        depth: 0,
    };
    p.query()
}

pub(crate) type PResult<T> = Result<T, ParseError>;

/// Deepest nesting of parentheses, braces and prefix operators accepted; protects the stack.
const MAX_DEPTH: usize = 128;

pub(crate) struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    idx: usize,
    depth: usize,
}

/// What a spanset-position expression turned out to be: a spanset, or a parenthesised metrics
/// query (only valid as the whole query).
pub(crate) enum Operand {
    Spanset(SpansetExpr),
    /// Boxed: operands travel through every level of the recursion.
    Metrics(Box<MetricsQuery>),
}

impl<'a> Parser<'a> {
    // ----- token helpers -------------------------------------------------------------------

    fn peek(&self) -> &Tok {
        &self.tokens[self.idx].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let i = (self.idx + n).min(self.tokens.len() - 1);
        &self.tokens[i].tok
    }

    fn pos(&self) -> Pos {
        self.tokens[self.idx].pos
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.idx].clone();
        if !matches!(t.tok, Tok::Eof | Tok::Error(_)) {
            self.idx += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    /// Consumes the `)` closing the `(` at `open`, or says an operator or that `)` was
    /// expected there.
    fn close_paren(&mut self, open: Pos) -> Result<(), ParseError> {
        if *self.peek() != Tok::RParen {
            return Err(self.unexpected(&format!(
                "an operator or ')' to close the '(' at line {}, col {}",
                open.line, open.col
            )));
        }
        self.advance();
        Ok(())
    }

    fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == name)
    }

    /// Describes the current token for "found ..." messages.
    fn describe_current(&self) -> String {
        let t = &self.tokens[self.idx];
        match &t.tok {
            Tok::Eof => "end of input".to_string(),
            Tok::Str(_) => format!("string {}", shorten(&self.src[t.start..t.end])),
            _ => format!("'{}'", shorten(&self.src[t.start..t.end])),
        }
    }

    /// "expected X, found Y" at the current token; a lexing error at this point wins.
    fn unexpected(&self, expected: &str) -> ParseError {
        if let Tok::Error(msg) = self.peek() {
            return ParseError::at(self.pos(), msg.clone());
        }
        ParseError::at(
            self.pos(),
            format!("expected {expected}, found {}", self.describe_current()),
        )
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> PResult<Token> {
        if self.peek() == tok {
            Ok(self.advance())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Source text from the start of token `from` to the end of the previous token.
    fn text_since(&self, from: usize) -> &'a str {
        let end_idx = self.idx.saturating_sub(1).max(from);
        let (s, e) = (self.tokens[from].start, self.tokens[end_idx].end);
        if s <= e { &self.src[s..e] } else { "" }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::at(
                self.pos(),
                format!("query is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ----- query and pipelines -------------------------------------------------------------

    fn query(&mut self) -> PResult<crate::ast::Query> {
        if *self.peek() == Tok::Eof {
            return Err(ParseError::at(
                self.pos(),
                "empty query: expected a spanset filter such as '{ }'",
            ));
        }
        let (pipeline, metrics) = self.pipeline()?;
        let mut hints = Vec::new();
        while self.is_ident("with") {
            self.hints(&mut hints)?;
        }
        if *self.peek() != Tok::Eof {
            return Err(self.trailing_error(metrics.is_some()));
        }
        Ok(Query {
            pipeline,
            metrics,
            hints,
        })
    }

    fn trailing_error(&self, is_metrics: bool) -> ParseError {
        if is_arith(self.peek()) {
            return ParseError::at(
                self.pos(),
                "arithmetic needs metrics queries in parentheses, before any second stage: \
                 ({ } | rate()) * 2, ({ status = error } | rate()) / ({ } | rate())",
            );
        }
        if is_metrics && spanset_op(self.peek()).is_some() {
            return ParseError::at(
                self.pos(),
                "combining metrics queries with spanset operators is not supported",
            );
        }
        if is_metrics {
            return self.unexpected("'| topk(...)', '| bottomk(...)', a comparison, 'with(...)' or end of query");
        }
        self.unexpected("'|', a spanset operator (&&, ||, >, >>, ~, ...), 'with(...)' or end of query")
    }

    /// `head | stage | ...`, optionally ending in a metrics function. Inside parentheses the
    /// caller checks the closing parenthesis.
    fn pipeline(&mut self) -> PResult<(Pipeline, Option<crate::ast::MetricsStage>)> {
        let mut stages = Vec::new();
        let head = if self.starts_spanset() {
            let pos = self.pos();
            match self.spanset_expr(0)? {
                Operand::Spanset(e) => e,
                Operand::Metrics(m) => return self.metrics_expression(Some((m, pos))),
            }
        } else if self.starts_metrics_arith() {
            return self.metrics_expression(None);
        } else if self.starts_headless_stage() {
            // `count() > 1 | ...`, `by(x) | ...`, `select(x)`: Tempo runs these over all spans.
            stages.push(
                self.stage()?
                    .ok_or_else(|| self.unexpected("a spanset filter such as '{ }'"))?,
            );
            SpansetExpr::Filter(crate::ast::FieldExpr::Static(Static::Bool(true)))
        } else if self.peek_metrics_function().is_some() {
            return Err(ParseError::at(
                self.pos(),
                "a metrics function must follow a spanset filter and '|', e.g. '{ } | rate()'",
            ));
        } else {
            return Err(self.unexpected("a spanset filter such as '{ }'"));
        };
        while *self.peek() == Tok::Pipe {
            self.advance();
            if self.peek_metrics_function().is_some() {
                // Inside parentheses, `spanset_primary` turns this into `Operand::Metrics`.
                let metrics = self.metrics_stage()?;
                return Ok((Pipeline { head, stages }, Some(metrics)));
            }
            match self.stage()? {
                Some(stage) => stages.push(stage),
                None => return Err(self.stage_error()),
            }
        }
        Ok((Pipeline { head, stages }, None))
    }

    /// A metrics expression: arithmetic continuing after a parenthesised metrics query
    /// (`(A) / (B)`), or starting with a number (`100 * (A)`, `(1 + 2) * (A)`); then second
    /// stages of the whole (`(A) / (B) > 1`). Kept out of `pipeline` so that the recursion
    /// through nested parentheses stays light on the stack.
    #[inline(never)]
    fn metrics_expression(
        &mut self,
        first: Option<(Box<MetricsQuery>, Pos)>,
    ) -> PResult<(Pipeline, Option<crate::ast::MetricsStage>)> {
        let mut m = match first {
            Some((m, pos)) => self.metrics_arith_after(*m, pos)?,
            None => self.metrics_arith_query()?,
        };
        self.second_stages(&mut m.stage)?;
        Ok((m.pipeline, Some(m.stage)))
    }

    fn starts_spanset(&self) -> bool {
        let mut n = 0;
        while *self.peek_at(n) == Tok::LParen {
            n += 1;
        }
        *self.peek_at(n) == Tok::LBrace
    }

    fn starts_headless_stage(&self) -> bool {
        match self.peek() {
            Tok::Ident(s) => matches!(s.as_str(), "count" | "avg" | "min" | "max" | "sum" | "by" | "select"),
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub | Tok::LParen => true,
            _ => false,
        }
    }

    /// One pipeline stage after `|`; `None` if the current token cannot start one.
    fn stage(&mut self) -> PResult<Option<Stage>> {
        if self.starts_spanset() {
            let start = self.pos();
            return match self.spanset_expr(0)? {
                Operand::Spanset(e) => Ok(Some(Stage::Spanset(e))),
                Operand::Metrics(..) => Err(ParseError::at(
                    start,
                    "a metrics query cannot be used as a pipeline stage (not supported)",
                )),
            };
        }
        let name = match self.peek() {
            Tok::Ident(s) => s.clone(),
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub | Tok::LParen => {
                return self.scalar_filter().map(Some);
            }
            _ => return Ok(None),
        };
        match name.as_str() {
            "count" | "avg" | "min" | "max" | "sum" => self.scalar_filter().map(Some),
            "by" => {
                self.advance();
                let fields = self.field_list("by", field::ListKind::By)?;
                Ok(Some(Stage::By(fields)))
            }
            "select" => {
                self.advance();
                let fields = self.field_list("select", field::ListKind::Attributes)?;
                Ok(Some(Stage::Select(fields)))
            }
            "coalesce" => {
                self.advance();
                self.expect(&Tok::LParen, "'(' after 'coalesce'")?;
                self.expect(&Tok::RParen, "')': coalesce() takes no arguments")?;
                Ok(Some(Stage::Coalesce))
            }
            _ => Ok(None),
        }
    }

    /// The error for a token after `|` that starts no stage.
    fn stage_error(&self) -> ParseError {
        if let Tok::Ident(name) = self.peek() {
            match name.as_str() {
                "with" => {
                    return ParseError::at(
                        self.pos(),
                        "hints go at the very end of the query, without '|': '{ } with(most_recent=true)'",
                    );
                }
                "topk" | "bottomk" => {
                    return ParseError::at(
                        self.pos(),
                        format!("{name}() must follow a metrics function, e.g. '{{ }} | rate() | {name}(5)'"),
                    );
                }
                _ if *self.peek_at(1) == Tok::LParen => {
                    return ParseError::at(self.pos(), format!("unknown function '{name}'"));
                }
                _ => {}
            }
        }
        if cmp_op(self.peek()).is_some() {
            return ParseError::at(
                self.pos(),
                "a comparison after '|' must follow a metrics function, e.g. '{ } | rate() > 10'",
            );
        }
        self.unexpected("a spanset filter, an aggregate (count(), avg(...), ...), by(), select(), coalesce() or a metrics function after '|'")
    }

    // ----- spanset expressions -------------------------------------------------------------

    /// Precedence climbing over spanset operators: `&&`/`||` (level 1) and structural operators
    /// (level 2), all left-associative.
    fn spanset_expr(&mut self, min_level: u8) -> PResult<Operand> {
        self.enter()?;
        let result = self.spanset_expr_inner(min_level);
        self.leave();
        result
    }

    fn spanset_expr_inner(&mut self, min_level: u8) -> PResult<Operand> {
        let mut lhs = self.spanset_primary()?;
        while let Some(op) = spanset_op(self.peek()) {
            if op.level() < min_level {
                break;
            }
            let Operand::Spanset(left) = lhs else {
                // The caller reports what may follow a metrics query.
                return Ok(lhs);
            };
            let op_tok = self.advance();
            if !self.starts_spanset() {
                return Err(self.unexpected(&format!(
                    "a spanset filter such as '{{ }}' after '{}'",
                    &self.src[op_tok.start..op_tok.end]
                )));
            }
            let rhs_pos = self.pos();
            let right = match self.spanset_expr(op.level() + 1)? {
                Operand::Spanset(e) => e,
                Operand::Metrics(..) => {
                    return Err(ParseError::at(
                        rhs_pos,
                        "combining metrics queries with spanset operators is not supported",
                    ));
                }
            };
            lhs = Operand::Spanset(op.build(left, right));
        }
        Ok(lhs)
    }

    fn spanset_primary(&mut self) -> PResult<Operand> {
        match self.peek() {
            Tok::LBrace => {
                let open = self.advance();
                let filter = self.spanset_filter_body(open.pos)?;
                Ok(Operand::Spanset(SpansetExpr::Filter(filter)))
            }
            Tok::LParen => {
                let open = self.advance();
                let (pipeline, metrics) = self.pipeline()?;
                if *self.peek() != Tok::RParen {
                    if metrics.is_some() {
                        return Err(self.unexpected(&format!(
                            "')' to close the '(' at line {}, col {}, or a second-stage function",
                            open.pos.line, open.pos.col
                        )));
                    }
                    return Err(self.unexpected(&format!(
                        "'|', a spanset operator or ')' to close the '(' at line {}, col {}",
                        open.pos.line, open.pos.col
                    )));
                }
                self.advance();
                if let Some(stage) = metrics {
                    return Ok(Operand::Metrics(Box::new(MetricsQuery { pipeline, stage })));
                }
                if pipeline.stages.is_empty() {
                    Ok(Operand::Spanset(pipeline.head))
                } else {
                    Ok(Operand::Spanset(SpansetExpr::Pipeline(Box::new(pipeline))))
                }
            }
            _ => Err(self.unexpected("a spanset filter such as '{ }'")),
        }
    }

    // ----- hints ---------------------------------------------------------------------------

    /// `with(name=value, ...)`.
    fn hints(&mut self, out: &mut Vec<(String, Static)>) -> PResult<()> {
        self.advance();
        self.expect(&Tok::LParen, "'(' after 'with'")?;
        loop {
            let name = match self.peek() {
                Tok::Ident(s) if !s.contains(':') => s.clone(),
                _ => return Err(self.unexpected("a hint name such as 'most_recent'")),
            };
            self.advance();
            self.expect(&Tok::Eq, &format!("'=' after the hint name '{name}'"))?;
            let value = self.static_literal(&format!("a literal value for the hint '{name}'"))?;
            out.push((name, value));
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen, "',' or ')' to close 'with('")?;
        Ok(())
    }

    /// A literal: string, number, duration (optionally negative), or a keyword literal.
    pub(crate) fn static_literal(&mut self, expected: &str) -> PResult<Static> {
        let negative = self.eat(&Tok::Sub);
        let value = match self.peek().clone() {
            Tok::Int(i) => Static::Int(if negative { -i } else { i }),
            Tok::Float(f) => Static::Float(if negative { -f } else { f }),
            Tok::Duration(d) => Static::Duration(if negative { -d } else { d }),
            Tok::Str(s) if !negative => Static::String(s),
            Tok::Ident(word) if !negative => match field::keyword_static(&word) {
                Some(v) => v,
                None => return Err(self.unexpected(expected)),
            },
            _ => return Err(self.unexpected(expected)),
        };
        self.advance();
        Ok(value)
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[derive(Clone, Copy)]
pub(crate) enum SpansetOp {
    And,
    Or,
    Structural(StructuralOp, StructuralMode),
}

impl SpansetOp {
    fn level(self) -> u8 {
        match self {
            SpansetOp::And | SpansetOp::Or => 1,
            SpansetOp::Structural(..) => 2,
        }
    }

    fn build(self, lhs: SpansetExpr, rhs: SpansetExpr) -> SpansetExpr {
        let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
        match self {
            SpansetOp::And => SpansetExpr::And(lhs, rhs),
            SpansetOp::Or => SpansetExpr::Or(lhs, rhs),
            SpansetOp::Structural(op, mode) => SpansetExpr::Structural { op, mode, lhs, rhs },
        }
    }
}

pub(crate) fn spanset_op(tok: &Tok) -> Option<SpansetOp> {
    use StructuralMode::{Normal, Not, Union};
    use StructuralOp::{Ancestor, Child, Descendant, Parent, Sibling};
    let s = |op, mode| Some(SpansetOp::Structural(op, mode));
    match tok {
        Tok::And => Some(SpansetOp::And),
        Tok::Or => Some(SpansetOp::Or),
        Tok::Gt => s(Child, Normal),
        Tok::Lt => s(Parent, Normal),
        Tok::Desc => s(Descendant, Normal),
        Tok::Ance => s(Ancestor, Normal),
        Tok::Tilde => s(Sibling, Normal),
        Tok::NotChild => s(Child, Not),
        Tok::NotParent => s(Parent, Not),
        Tok::NotDesc => s(Descendant, Not),
        Tok::NotAnce => s(Ancestor, Not),
        Tok::Nre => s(Sibling, Not),
        Tok::UnionChild => s(Child, Union),
        Tok::UnionParent => s(Parent, Union),
        Tok::UnionDesc => s(Descendant, Union),
        Tok::UnionAnce => s(Ancestor, Union),
        Tok::UnionSibl => s(Sibling, Union),
        _ => None,
    }
}

pub(crate) fn cmp_op(tok: &Tok) -> Option<crate::ast::CmpOp> {
    use crate::ast::CmpOp;
    Some(match tok {
        Tok::Eq => CmpOp::Eq,
        Tok::Neq => CmpOp::Neq,
        Tok::Lt => CmpOp::Lt,
        Tok::Lte => CmpOp::Lte,
        Tok::Gt => CmpOp::Gt,
        Tok::Gte => CmpOp::Gte,
        _ => return None,
    })
}

fn is_arith(tok: &Tok) -> bool {
    matches!(tok, Tok::Add | Tok::Sub | Tok::Mul | Tok::Div | Tok::Mod | Tok::Pow)
}
