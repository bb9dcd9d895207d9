//! Arithmetic on metrics queries, as Tempo's grammar has it: `({a} | rate()) / ({} | rate())`,
//! `({} | rate()) * 100`, `100 * ({} | rate())`, and constant scalars (`1 / 2`, `-(2 + 3)`)
//! there and after metrics comparisons (`| rate() > 1 / 2`).
//!
//! Only `+ - * /` exist here; they bind as usual (`* /` tighter, left-associative) and unary
//! minus applies to numbers only. Constants fold while parsing with Tempo's rules: two
//! integers give an integer (`1 / 2` is 0, dividing by 0 is an error), anything with a float
//! gives a float, durations cannot take part in arithmetic. A metrics query on either side of
//! a number gets the operation as a second stage (`SecondStage::Arith`); two metrics queries
//! make a `MetricsOp::Binary` node.

use super::lexer::{Pos, Tok};
use super::{PResult, ParseError, Parser};
use crate::ast::{
    ArithOp, MetricsBinary, MetricsOp, MetricsQuery, MetricsStage, Pipeline, SecondStage, SpansetExpr, Static,
};

const LVL_ADD: u8 = 1;
const LVL_MUL: u8 = 2;

/// Most metrics queries in one arithmetic expression: each is evaluated on every trace.
pub(crate) const MAX_METRICS_QUERIES: usize = 32;

/// An operand of metrics arithmetic.
pub(crate) enum Item {
    /// A folded constant: `Int`, `Float` or `Duration`.
    Number(Static, Pos),
    Metrics(Box<MetricsQuery>, Pos),
}

fn arith_op(tok: &Tok) -> Option<(ArithOp, u8)> {
    Some(match tok {
        Tok::Add => (ArithOp::Add, LVL_ADD),
        Tok::Sub => (ArithOp::Sub, LVL_ADD),
        Tok::Mul => (ArithOp::Mul, LVL_MUL),
        Tok::Div => (ArithOp::Div, LVL_MUL),
        _ => return None,
    })
}

/// How many metrics queries (leaves) a metrics query is made of.
fn leaves(m: &MetricsQuery) -> usize {
    match &m.stage.binary {
        Some(b) => leaves(&b.lhs) + leaves(&b.rhs),
        None => 1,
    }
}

/// `(a) || (b)`: matches the spans either side reads.
fn union(a: &Pipeline, b: &Pipeline) -> Pipeline {
    let side = |p: &Pipeline| match p.stages.is_empty() {
        true => p.head.clone(),
        false => SpansetExpr::Pipeline(Box::new(p.clone())),
    };
    Pipeline {
        head: SpansetExpr::Or(Box::new(side(a)), Box::new(side(b))),
        stages: Vec::new(),
    }
}

pub(crate) const COMPARE_ALONE: &str =
    "compare() cannot be used with second stage functions (topk, bottomk, comparisons) or arithmetic";

impl Parser<'_> {
    /// Whether a query (or parenthesised part) starting here is metrics arithmetic with a
    /// number first (`100 * ({} | rate())`, `(1 + 2) * (...)`) rather than a pipeline starting
    /// with a scalar filter (`count() > 1 | ...`, `(count() + 1) > 2`): a scalar filter never
    /// contains `{`, so a `{` before any `|` decides.
    pub(crate) fn starts_metrics_arith(&self) -> bool {
        if !matches!(
            self.peek(),
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub | Tok::LParen
        ) {
            return false;
        }
        for t in &self.tokens[self.idx..] {
            match t.tok {
                Tok::LBrace => return true,
                Tok::Pipe | Tok::Eof | Tok::Error(_) => return false,
                _ => {}
            }
        }
        false
    }

    /// A metrics arithmetic expression that must contain a metrics query.
    pub(crate) fn metrics_arith_query(&mut self) -> PResult<MetricsQuery> {
        match self.metrics_arith(0, None)? {
            Item::Metrics(m, _) => Ok(*m),
            Item::Number(..) => {
                Err(self
                    .unexpected("an arithmetic operator and a metrics query in parentheses, e.g. 100 * ({ } | rate())"))
            }
        }
    }

    /// A constant number after a metrics comparison (`> 10`, `> 1 / 2`, `> 1.5s`), as f64;
    /// durations in seconds.
    pub(crate) fn metrics_constant(&mut self, expected: &str) -> PResult<f64> {
        match self.metrics_arith(0, Some(expected))? {
            Item::Number(Static::Duration(ns), _) => Ok(ns as f64 / 1e9),
            Item::Number(n, _) => Ok(number(&n)),
            Item::Metrics(_, pos) => Err(ParseError::at(pos, format!("expected {expected}"))),
        }
    }

    /// Continues arithmetic after a parsed metrics query `lhs` (`(A) / (B) * 2`).
    pub(crate) fn metrics_arith_after(&mut self, lhs: MetricsQuery, pos: Pos) -> PResult<MetricsQuery> {
        match self.metrics_arith_from(Item::Metrics(Box::new(lhs), pos), 0, None)? {
            Item::Metrics(m, _) => Ok(*m),
            Item::Number(_, pos) => Err(ParseError::at(pos, "expected a metrics query")),
        }
    }

    /// Precedence climbing. `constants` is `Some(what is expected)` where only numbers may
    /// appear (after a comparison).
    fn metrics_arith(&mut self, min_level: u8, constants: Option<&str>) -> PResult<Item> {
        self.enter()?;
        let result = self
            .metrics_operand(constants)
            .and_then(|lhs| self.metrics_arith_from(lhs, min_level, constants));
        self.leave();
        result
    }

    fn metrics_arith_from(&mut self, mut lhs: Item, min_level: u8, constants: Option<&str>) -> PResult<Item> {
        loop {
            if matches!(self.peek(), Tok::Mod | Tok::Pow) {
                return Err(ParseError::at(
                    self.pos(),
                    format!(
                        "'{}' is not supported in metrics arithmetic: use + - * /",
                        if *self.peek() == Tok::Mod { "%" } else { "^" }
                    ),
                ));
            }
            let Some((op, level)) = arith_op(self.peek()) else {
                return Ok(lhs);
            };
            if level < min_level {
                return Ok(lhs);
            }
            let op_pos = self.advance().pos;
            let rhs = self.metrics_arith(level + 1, constants)?;
            lhs = combine(op, op_pos, lhs, rhs)?;
        }
    }

    fn metrics_operand(&mut self, constants: Option<&str>) -> PResult<Item> {
        let pos = self.pos();
        let expected = constants.unwrap_or("a number or a metrics query in parentheses such as ({ } | rate())");
        match self.peek().clone() {
            Tok::Int(i) => {
                self.advance();
                Ok(Item::Number(Static::Int(i), pos))
            }
            Tok::Float(f) => {
                self.advance();
                Ok(Item::Number(Static::Float(f), pos))
            }
            Tok::Duration(d) => {
                self.advance();
                Ok(Item::Number(Static::Duration(d), pos))
            }
            Tok::Sub => {
                self.advance();
                self.enter()?;
                let operand = self.metrics_operand(constants);
                self.leave();
                match operand? {
                    Item::Number(n, _) => Ok(Item::Number(negate(n), pos)),
                    Item::Metrics(..) => Err(ParseError::at(
                        pos,
                        "a metrics query cannot be negated: multiply it by -1, e.g. -1 * ({ } | rate())",
                    )),
                }
            }
            Tok::LParen if self.starts_spanset() => {
                if constants.is_some() {
                    return Err(self.unexpected(expected));
                }
                match self.spanset_expr(0)? {
                    super::Operand::Metrics(m) => Ok(Item::Metrics(m, pos)),
                    super::Operand::Spanset(_) => Err(ParseError::at(
                        pos,
                        "arithmetic needs a metrics query such as ({ } | rate()) on each side, found a spanset",
                    )),
                }
            }
            Tok::LParen => {
                let open = self.advance();
                let inner = self.metrics_arith(0, constants)?;
                self.close_paren(open.pos)?;
                Ok(inner)
            }
            Tok::LBrace if constants.is_none() => Err(ParseError::at(
                pos,
                "arithmetic needs a metrics query in parentheses on each side, e.g. ({ } | rate()), found a spanset filter",
            )),
            _ => Err(self.unexpected(expected)),
        }
    }
}

fn number(s: &Static) -> f64 {
    match s {
        Static::Int(i) => *i as f64,
        Static::Float(f) => *f,
        Static::Duration(d) => *d as f64,
        _ => f64::NAN,
    }
}

fn negate(s: Static) -> Static {
    match s {
        Static::Int(i) => Static::Int(i.wrapping_neg()),
        Static::Float(f) => Static::Float(-f),
        Static::Duration(d) => Static::Duration(d.wrapping_neg()),
        other => other,
    }
}

/// `lhs op rhs` for two parsed operands.
fn combine(op: ArithOp, op_pos: Pos, lhs: Item, rhs: Item) -> PResult<Item> {
    let no_duration = |n: &Static, pos: Pos| match n {
        Static::Duration(_) => Err(ParseError::at(
            pos,
            "a duration cannot be used in arithmetic with metrics queries or numbers",
        )),
        _ => Ok(number(n)),
    };
    let no_compare = |m: &MetricsQuery| match m.stage.op {
        MetricsOp::Compare => Err(ParseError::at(op_pos, COMPARE_ALONE)),
        _ => Ok(()),
    };
    match (lhs, rhs) {
        (Item::Number(l, lpos), Item::Number(r, rpos)) => {
            no_duration(&l, lpos)?;
            no_duration(&r, rpos)?;
            Ok(Item::Number(fold(op, op_pos, l, r)?, lpos))
        }
        (Item::Metrics(m, pos), Item::Number(n, npos)) => {
            no_compare(&m)?;
            with_scalar(m, pos, op, no_duration(&n, npos)?, false)
        }
        (Item::Number(n, npos), Item::Metrics(m, _)) => {
            no_compare(&m)?;
            with_scalar(m, npos, op, no_duration(&n, npos)?, true)
        }
        (Item::Metrics(l, lpos), Item::Metrics(r, _)) => {
            no_compare(&l)?;
            no_compare(&r)?;
            if leaves(&l) + leaves(&r) > MAX_METRICS_QUERIES {
                return Err(ParseError::at(
                    op_pos,
                    format!("at most {MAX_METRICS_QUERIES} metrics queries may be combined in one query"),
                ));
            }
            let mut stage = MetricsStage::new(MetricsOp::Binary);
            let pipeline = union(&l.pipeline, &r.pipeline);
            stage.binary = Some(Box::new(MetricsBinary { op, lhs: *l, rhs: *r }));
            Ok(Item::Metrics(Box::new(MetricsQuery { pipeline, stage }), lpos))
        }
    }
}

/// `m op value` (or `value op m`): a second stage of `m`, as in Tempo.
fn with_scalar(mut m: Box<MetricsQuery>, pos: Pos, op: ArithOp, value: f64, scalar_on_left: bool) -> PResult<Item> {
    m.stage.second_stage.push(SecondStage::Arith {
        op,
        value,
        scalar_on_left,
    });
    Ok(Item::Metrics(m, pos))
}

/// Folds `l op r` as Tempo does: integer arithmetic when both are integers (truncating
/// division, an error when dividing by zero), float arithmetic otherwise.
fn fold(op: ArithOp, op_pos: Pos, l: Static, r: Static) -> PResult<Static> {
    if let (Static::Int(a), Static::Int(b)) = (&l, &r) {
        let (a, b) = (*a, *b);
        return Ok(Static::Int(match op {
            ArithOp::Add => a.wrapping_add(b),
            ArithOp::Sub => a.wrapping_sub(b),
            ArithOp::Mul => a.wrapping_mul(b),
            _ if b == 0 => return Err(ParseError::at(op_pos, "division by zero")),
            _ => a.wrapping_div(b),
        }));
    }
    let (a, b) = (number(&l), number(&r));
    Ok(Static::Float(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        _ => a / b,
    }))
}
