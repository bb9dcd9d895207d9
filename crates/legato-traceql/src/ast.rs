//! The TraceQL syntax tree. The parser (`parser.rs`) produces it; the evaluator consumes it.
//! It is a plain data structure: no evaluation logic lives here.

/// A whole query: a spanset pipeline, optionally ending in a metrics function.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub pipeline: Pipeline,
    /// `| rate() by (...)` etc.; `None` for search queries.
    pub metrics: Option<MetricsStage>,
    /// `with(name=value, ...)` at the end of the query, in order.
    pub hints: Vec<(String, Static)>,
}

/// `expr | stage | stage ...`. The first element is always a spanset expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub head: SpansetExpr,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// A further spanset filter or spanset expression: `| { ... }`.
    Spanset(SpansetExpr),
    /// A scalar filter over each spanset: `count() > 3`, `avg(duration) > 1s`,
    /// `count() * 2 > sum(span.x)`. Either side may be an aggregate or a static.
    ScalarFilter {
        op: CmpOp,
        lhs: ScalarExpr,
        rhs: ScalarExpr,
    },
    /// `by(field, ...)`.
    By(Vec<FieldExpr>),
    /// `select(field, ...)`.
    Select(Vec<FieldExpr>),
    /// `coalesce()`.
    Coalesce,
}

/// Expressions over spansets (between `{...}`s).
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ field-expr }`; `{ }` is `Filter(FieldExpr::Static(Static::Bool(true)))`.
    Filter(FieldExpr),
    /// `A && B`: both must match in the trace; returns the union.
    And(Box<SpansetExpr>, Box<SpansetExpr>),
    /// `A || B`: union.
    Or(Box<SpansetExpr>, Box<SpansetExpr>),
    /// Structural operators: `A > B`, `A !>> B`, `A &~ B`, ...
    Structural {
        op: StructuralOp,
        mode: StructuralMode,
        lhs: Box<SpansetExpr>,
        rhs: Box<SpansetExpr>,
    },
    /// A parenthesised pipeline used as a spanset: `({...} | count() > 1) && {...}`.
    Pipeline(Box<Pipeline>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuralOp {
    /// `>`: rhs spans whose parent matches lhs.
    Child,
    /// `<`: rhs spans that are the parent of an lhs span.
    Parent,
    /// `>>`: rhs spans that descend from an lhs span.
    Descendant,
    /// `<<`: rhs spans that are ancestors of an lhs span.
    Ancestor,
    /// `~`: rhs spans with a sibling matching lhs.
    Sibling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuralMode {
    /// `>` etc.: matching rhs spans.
    Normal,
    /// `!>` etc.: rhs spans with no such relation.
    Not,
    /// `&>` etc.: matching spans from both sides.
    Union,
}

/// Scalar expressions of pipeline filters.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarExpr {
    Static(Static),
    /// `count()`, `avg(field)`, ...; `field` is `None` only for `count()`.
    Aggregate {
        op: AggregateOp,
        field: Option<FieldExpr>,
    },
    Binary {
        op: ArithOp,
        lhs: Box<ScalarExpr>,
        rhs: Box<ScalarExpr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateOp {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

/// Expressions evaluated on one span (inside `{ }`, and arguments of `by`, `select`, aggregates).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    Static(Static),
    Attribute(Attribute),
    Intrinsic(Intrinsic),
    /// `-x`.
    Negate(Box<FieldExpr>),
    /// `!x`.
    Not(Box<FieldExpr>),
    Arith {
        op: ArithOp,
        lhs: Box<FieldExpr>,
        rhs: Box<FieldExpr>,
    },
    Compare {
        op: CmpOp,
        lhs: Box<FieldExpr>,
        rhs: Box<FieldExpr>,
    },
    /// `=~` (`negated: false`) and `!~` with an anchored RE2-style pattern; the right side is
    /// always a string literal.
    Regex {
        negated: bool,
        lhs: Box<FieldExpr>,
        pattern: String,
    },
    And(Box<FieldExpr>, Box<FieldExpr>),
    Or(Box<FieldExpr>, Box<FieldExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl ArithOp {
    /// The operator as written: `+`, `-`, `*`, `/`, `%`, `^`.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
            ArithOp::Pow => "^",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// Literals.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Nanoseconds.
    Duration(i64),
    Status(Status),
    Kind(Kind),
}

/// Span status: OTLP codes are Unset 0, Ok 1, Error 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unset,
    Ok,
    Error,
}

/// Span kind: OTLP codes Unspecified 0 .. Consumer 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeScope {
    /// `.name`: span, then resource (then link, event).
    Unscoped,
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub scope: AttributeScope,
    /// `parent.` prefix: the attribute of the span's parent.
    pub parent: bool,
    /// The full dotted name, quotes removed: `http.status_code`, `name with spaces`.
    pub name: String,
}

/// Intrinsics; legacy unscoped names map to the same variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intrinsic {
    /// `span:name`, `name`.
    Name,
    /// `span:status`, `status`.
    Status,
    /// `span:statusMessage`, `statusMessage`.
    StatusMessage,
    /// `span:kind`, `kind`.
    Kind,
    /// `span:duration`, `duration`.
    Duration,
    /// `span:id`.
    SpanId,
    /// `span:parentID`.
    ParentId,
    /// `span:childCount`.
    ChildCount,
    /// `trace:duration`, `traceDuration`.
    TraceDuration,
    /// `trace:rootName`, `rootName`.
    RootName,
    /// `trace:rootService`, `rootServiceName`.
    RootService,
    /// `trace:id`.
    TraceId,
    /// `event:name`.
    EventName,
    /// `event:timeSinceStart`.
    EventTimeSinceStart,
    /// `link:traceID`.
    LinkTraceId,
    /// `link:spanID`.
    LinkSpanId,
    /// `instrumentation:name`.
    InstrumentationName,
    /// `instrumentation:version`.
    InstrumentationVersion,
    /// `nestedSetLeft`, `nestedSetRight`, `nestedSetParent` (internal).
    NestedSetLeft,
    NestedSetRight,
    NestedSetParent,
}

/// `| rate()`, `| quantile_over_time(duration, .9, .99) by (x)`, `| compare({...})`, or
/// arithmetic between parenthesised metrics queries, followed by optional second-stage
/// operations.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsStage {
    pub op: MetricsOp,
    /// The measured field (`sum_over_time(span.bytes)`), `None` for `rate()`/`count_over_time()`.
    pub field: Option<FieldExpr>,
    /// Quantiles of `quantile_over_time`.
    pub quantiles: Vec<f64>,
    pub by: Vec<FieldExpr>,
    /// The arguments of `compare(...)`; set exactly when `op` is `MetricsOp::Compare`.
    pub compare: Option<Compare>,
    /// The two sides of `(A) / (B)`; set exactly when `op` is `MetricsOp::Binary`.
    pub binary: Option<Box<MetricsBinary>>,
    /// `| topk(5)`, `| bottomk(3)`, `| > 10`, `* 100`, in the order they apply.
    pub second_stage: Vec<SecondStage>,
}

impl MetricsStage {
    /// A stage with only a function: no field, quantiles, grouping or second stages.
    pub fn new(op: MetricsOp) -> Self {
        Self {
            op,
            field: None,
            quantiles: Vec::new(),
            by: Vec::new(),
            compare: None,
            binary: None,
            second_stage: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsOp {
    Rate,
    CountOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    QuantileOverTime,
    HistogramOverTime,
    /// `compare({selection}, topN, start, end)`.
    Compare,
    /// Arithmetic between two metrics queries (`MetricsStage::binary`).
    Binary,
}

/// `compare({ selection }, top_n, start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    /// The inside of the `{ ... }` filter: matching spans are the selection, the others the
    /// baseline.
    pub selection: FieldExpr,
    /// Values kept per attribute and group (1..=1000, default 10).
    pub top_n: u32,
    /// Selection window in unix nanoseconds, `start < span start <= end`; both 0 = no window.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// `lhs op rhs` between metrics queries. Series are matched on identical label sets (the
/// `__name__` label aside); an ungrouped side applies to every series of the other side.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsBinary {
    /// `Add`, `Sub`, `Mul` or `Div`.
    pub op: ArithOp,
    pub lhs: MetricsQuery,
    pub rhs: MetricsQuery,
}

/// A metrics query with its own pipeline: one side of metrics arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsQuery {
    /// For an arithmetic node, the union of both sides' pipelines (`(a) || (b)`), so that
    /// whoever reads data for the whole query reads what either side needs.
    pub pipeline: Pipeline,
    pub stage: MetricsStage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecondStage {
    TopK(u32),
    BottomK(u32),
    /// `> 10`, `| <= 2.5`: keeps series points whose value compares true with `value`.
    /// Int and float literals are stored as written; duration literals are converted to
    /// seconds (`1500ms` becomes `1.5`), as Tempo reports duration series in seconds.
    Filter {
        op: CmpOp,
        value: f64,
    },
    /// `(...) * 100`, `1 - (...)`: every point becomes `point op value` (or `value op point`
    /// when `scalar_on_left`). `op` is `Add`, `Sub`, `Mul` or `Div`; dividing by zero gives
    /// no point, as in Tempo.
    Arith {
        op: ArithOp,
        value: f64,
        scalar_on_left: bool,
    },
}
