//! Scalar filters (`| count() > 3`) and metrics stages (`| rate() by (x) | topk(5)`).

use super::field::ListKind;
use super::lexer::Tok;
use super::{PResult, ParseError, Parser};
use crate::ast::{AggregateOp, ArithOp, Compare, MetricsOp, MetricsStage, ScalarExpr, SecondStage, Stage};

const LVL_ADD: u8 = 1;
const LVL_MUL: u8 = 2;
const LVL_POW: u8 = 3;

fn scalar_op(tok: &Tok) -> Option<(ArithOp, u8)> {
    Some(match tok {
        Tok::Add => (ArithOp::Add, LVL_ADD),
        Tok::Sub => (ArithOp::Sub, LVL_ADD),
        Tok::Mul => (ArithOp::Mul, LVL_MUL),
        Tok::Div => (ArithOp::Div, LVL_MUL),
        Tok::Mod => (ArithOp::Mod, LVL_MUL),
        Tok::Pow => (ArithOp::Pow, LVL_POW),
        _ => return None,
    })
}

fn metrics_op(name: &str) -> Option<MetricsOp> {
    Some(match name {
        "rate" => MetricsOp::Rate,
        "count_over_time" => MetricsOp::CountOverTime,
        "sum_over_time" => MetricsOp::SumOverTime,
        "avg_over_time" => MetricsOp::AvgOverTime,
        "min_over_time" => MetricsOp::MinOverTime,
        "max_over_time" => MetricsOp::MaxOverTime,
        "quantile_over_time" => MetricsOp::QuantileOverTime,
        "histogram_over_time" => MetricsOp::HistogramOverTime,
        "compare" => MetricsOp::Compare,
        _ => return None,
    })
}

fn contains_aggregate(e: &ScalarExpr) -> bool {
    match e {
        ScalarExpr::Static(_) => false,
        ScalarExpr::Aggregate { .. } => true,
        ScalarExpr::Binary { lhs, rhs, .. } => contains_aggregate(lhs) || contains_aggregate(rhs),
    }
}

impl Parser<'_> {
    /// The metrics function at the current token, if any.
    pub(crate) fn peek_metrics_function(&self) -> Option<MetricsOp> {
        match self.peek() {
            Tok::Ident(name) => metrics_op(name),
            _ => None,
        }
    }

    /// `lhs op rhs` where at least one side contains an aggregate.
    pub(crate) fn scalar_filter(&mut self) -> PResult<Stage> {
        let start_idx = self.idx;
        let start = self.pos();
        let lhs = self.scalar_expr(0)?;
        let Some(op) = super::cmp_op(self.peek()) else {
            return Err(self.unexpected(&format!(
                "a comparison such as '> 3' after '{}'",
                super::shorten(self.text_since(start_idx))
            )));
        };
        self.advance();
        let rhs = self.scalar_expr(0)?;
        if !contains_aggregate(&lhs) && !contains_aggregate(&rhs) {
            return Err(ParseError::at(
                start,
                "a scalar filter needs an aggregate such as count() or avg(duration) on one side",
            ));
        }
        Ok(Stage::ScalarFilter { op, lhs, rhs })
    }

    fn scalar_expr(&mut self, min_level: u8) -> PResult<ScalarExpr> {
        self.enter()?;
        let result = self.scalar_expr_inner(min_level);
        self.leave();
        result
    }

    fn scalar_expr_inner(&mut self, min_level: u8) -> PResult<ScalarExpr> {
        let mut lhs = self.scalar_primary()?;
        while let Some((op, level)) = scalar_op(self.peek()) {
            if level < min_level {
                break;
            }
            self.advance();
            let next_min = if level == LVL_POW { level } else { level + 1 };
            let rhs = self.scalar_expr(next_min)?;
            lhs = ScalarExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn scalar_primary(&mut self) -> PResult<ScalarExpr> {
        const EXPECTED: &str = "an aggregate (count(), avg(...), min(...), max(...), sum(...)) or a number";
        match self.peek().clone() {
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub => {
                let value = self.static_literal(EXPECTED)?;
                Ok(ScalarExpr::Static(value))
            }
            Tok::LParen => {
                if self.starts_spanset() {
                    return Err(ParseError::at(
                        self.pos(),
                        "arithmetic between metrics or spanset queries and numbers is not supported",
                    ));
                }
                let open = self.advance();
                let inner = self.scalar_expr(0)?;
                self.close_paren(open.pos)?;
                Ok(inner)
            }
            Tok::Ident(name) => {
                let op = match name.as_str() {
                    "count" => AggregateOp::Count,
                    "avg" => AggregateOp::Avg,
                    "min" => AggregateOp::Min,
                    "max" => AggregateOp::Max,
                    "sum" => AggregateOp::Sum,
                    _ if *self.peek_at(1) == Tok::LParen && self.peek_metrics_function().is_none() => {
                        return Err(ParseError::at(self.pos(), format!("unknown function '{name}'")));
                    }
                    _ => return Err(self.unexpected(EXPECTED)),
                };
                self.advance();
                self.expect(&Tok::LParen, &format!("'(' after '{name}'"))?;
                let field = if op == AggregateOp::Count {
                    None
                } else {
                    Some(self.aggregate_argument(&name)?)
                };
                let close = if op == AggregateOp::Count {
                    "')': count() takes no arguments"
                } else {
                    "')'"
                };
                self.expect(&Tok::RParen, close)?;
                Ok(ScalarExpr::Aggregate { op, field })
            }
            _ => Err(self.unexpected(EXPECTED)),
        }
    }

    /// A metrics function at the current token, its `by(...)` and its second stages.
    pub(crate) fn metrics_stage(&mut self) -> PResult<MetricsStage> {
        let Some(op) = self.peek_metrics_function() else {
            return Err(self.unexpected("a metrics function"));
        };
        let name = match self.advance().tok {
            Tok::Ident(name) => name,
            _ => String::new(),
        };
        self.expect(&Tok::LParen, &format!("'(' after '{name}'"))?;
        let mut stage = MetricsStage::new(op);
        match op {
            MetricsOp::Rate | MetricsOp::CountOverTime => {
                self.expect(&Tok::RParen, &format!("')': {name}() takes no arguments"))?;
            }
            MetricsOp::Compare => {
                stage.compare = Some(self.compare_arguments()?);
                if self.is_ident("by") {
                    return Err(ParseError::at(
                        self.pos(),
                        "compare() takes no by(...): it compares every attribute",
                    ));
                }
                self.second_stages(&mut stage)?;
                return Ok(stage);
            }
            MetricsOp::QuantileOverTime => {
                stage.field = Some(self.attribute_or_intrinsic(&name)?);
                if *self.peek() != Tok::Comma {
                    return Err(self.unexpected(&format!(
                        "',' and at least one quantile, e.g. {name}(duration, .5, .99)"
                    )));
                }
                while self.eat(&Tok::Comma) {
                    let pos = self.pos();
                    let q = match self.peek() {
                        Tok::Int(i) => *i as f64,
                        Tok::Float(f) => *f,
                        _ => return Err(self.unexpected("a quantile between 0 and 1")),
                    };
                    if !(0.0..=1.0).contains(&q) {
                        return Err(ParseError::at(pos, format!("quantile {q} is not between 0 and 1")));
                    }
                    self.advance();
                    stage.quantiles.push(q);
                }
                self.expect(&Tok::RParen, &format!("',' or ')' to close '{name}('"))?;
            }
            _ => {
                stage.field = Some(self.attribute_or_intrinsic(&name)?);
                self.expect(&Tok::RParen, &format!("')': {name}() takes one attribute or intrinsic"))?;
            }
        }
        if self.is_ident("by") {
            self.advance();
            stage.by = self.field_list("by", ListKind::Attributes)?;
        }
        self.second_stages(&mut stage)?;
        Ok(stage)
    }

    /// `{ selection }`, then optionally `, topN` and `, start, end` (unix nanoseconds), and
    /// `)`: Tempo's three forms, checked as Tempo checks them.
    fn compare_arguments(&mut self) -> PResult<Compare> {
        if *self.peek() != Tok::LBrace {
            return Err(self.unexpected(
                "a spanset filter such as { status = error }: compare() needs the filter that picks the selection",
            ));
        }
        let open = self.advance();
        let selection = self.spanset_filter_body(open.pos)?;
        if super::spanset_op(self.peek()).is_some() {
            return Err(ParseError::at(
                self.pos(),
                "compare() takes a single spanset filter: combine conditions inside it, e.g. { status = error && duration > 1s }",
            ));
        }
        let mut compare = Compare {
            selection,
            top_n: 10,
            start_ns: 0,
            end_ns: 0,
        };
        if self.eat(&Tok::Comma) {
            let (top_n, pos) = self.compare_integer("the number of values per attribute")?;
            if !(1..=1000).contains(&top_n) {
                return Err(ParseError::at(
                    pos,
                    "compare() top number of values must be an integer between 1 and 1000",
                ));
            }
            compare.top_n = top_n as u32;
            if self.eat(&Tok::Comma) {
                let (start, start_pos) = self.compare_integer("a start timestamp in unix nanoseconds")?;
                self.expect(
                    &Tok::Comma,
                    "',' and an end timestamp: compare() takes both a start and an end, or neither",
                )?;
                let (end, end_pos) = self.compare_integer("an end timestamp in unix nanoseconds")?;
                if start != 0 || end != 0 {
                    if start == 0 || end == 0 {
                        let pos = if start == 0 { start_pos } else { end_pos };
                        return Err(ParseError::at(
                            pos,
                            "compare() timestamps must be positive integer unix nanoseconds",
                        ));
                    }
                    if end <= start {
                        return Err(ParseError::at(
                            end_pos,
                            "compare() end timestamp must be greater than start timestamp",
                        ));
                    }
                }
                (compare.start_ns, compare.end_ns) = (start as u64, end as u64);
            }
        }
        self.expect(&Tok::RParen, "',' or ')' to close 'compare('")?;
        Ok(compare)
    }

    /// A non-negative integer literal argument of compare().
    fn compare_integer(&mut self, what: &str) -> PResult<(i64, super::lexer::Pos)> {
        let pos = self.pos();
        match self.peek() {
            Tok::Int(i) => {
                let i = *i;
                self.advance();
                Ok((i, pos))
            }
            Tok::Sub | Tok::Float(_) => Err(ParseError::at(
                pos,
                format!("compare() expects a positive integer as {what}"),
            )),
            _ => Err(self.unexpected(&format!("{what} (a positive integer)"))),
        }
    }

    /// `| topk(N)`, `| bottomk(N)` and comparisons (`> 10`, also written `| > 10`), in any
    /// order.
    pub(crate) fn second_stages(&mut self, stage: &mut MetricsStage) -> PResult<()> {
        loop {
            let starts_stage = super::cmp_op(self.peek()).is_some()
                || (*self.peek() == Tok::Pipe
                    && (matches!(self.peek_at(1), Tok::Ident(n) if n == "topk" || n == "bottomk")
                        || super::cmp_op(self.peek_at(1)).is_some()));
            if starts_stage && stage.op == MetricsOp::Compare {
                return Err(ParseError::at(self.pos(), super::arith::COMPARE_ALONE));
            }
            if let Some(op) = super::cmp_op(self.peek()) {
                let op_tok = self.advance();
                let expected = format!("a number or duration after '{}'", &self.src[op_tok.start..op_tok.end]);
                if !matches!(
                    self.peek(),
                    Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub | Tok::LParen
                ) {
                    return Err(self.unexpected(&expected));
                }
                let value = self.metrics_constant(&expected)?;
                stage.second_stage.push(SecondStage::Filter { op, value });
                continue;
            }
            if *self.peek() != Tok::Pipe {
                return Ok(());
            }
            let func = match self.peek_at(1) {
                Tok::Ident(name) if name == "topk" || name == "bottomk" => name.clone(),
                t if super::cmp_op(t).is_some() => {
                    self.advance();
                    continue;
                }
                _ => {
                    self.advance();
                    if let Tok::Ident(name) = self.peek()
                        && metrics_op(name).is_some()
                    {
                        return Err(ParseError::at(
                            self.pos(),
                            "only one metrics function is allowed per query",
                        ));
                    }
                    return Err(self.unexpected(
                        "topk(...), bottomk(...) or a comparison: a metrics function must be the last stage",
                    ));
                }
            };
            self.advance();
            self.advance();
            self.expect(&Tok::LParen, &format!("'(' after '{func}'"))?;
            let pos = self.pos();
            let k = match self.peek() {
                Tok::Int(i) if *i > 0 && *i <= i64::from(u32::MAX) => *i as u32,
                Tok::Int(_) => return Err(ParseError::at(pos, format!("{func}() needs a positive integer"))),
                _ => return Err(self.unexpected(&format!("a positive integer in {func}(...)"))),
            };
            self.advance();
            self.expect(&Tok::RParen, &format!("')' to close '{func}('"))?;
            stage.second_stage.push(if func == "topk" {
                SecondStage::TopK(k)
            } else {
                SecondStage::BottomK(k)
            });
        }
    }
}
