//! Scalar filters (`| count() > 3`) and metrics stages (`| rate() by (x) | topk(5)`).

use super::field::ListKind;
use super::lexer::Tok;
use super::{PResult, ParseError, Parser};
use crate::ast::{AggregateOp, ArithOp, MetricsOp, MetricsStage, ScalarExpr, SecondStage, Stage};

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
                if *self.peek() != Tok::RParen {
                    return Err(self.unexpected(&format!(
                        "an operator or ')' to close the '(' at line {}, col {}",
                        open.pos.line, open.pos.col
                    )));
                }
                self.advance();
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

    /// `| topk(N)`, `| bottomk(N)` and comparisons (`> 10`, also written `| > 10`), in any
    /// order.
    pub(crate) fn second_stages(&mut self, stage: &mut MetricsStage) -> PResult<()> {
        loop {
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
                        && (metrics_op(name).is_some() || name == "compare")
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
