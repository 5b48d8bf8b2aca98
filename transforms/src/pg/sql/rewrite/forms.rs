//! What the rewrite understands of expressions: the operands of a comparison (literals
//! through signs and casts, parameters, columns), and the expression forms around a
//! column reference, which say whether it selects rows by the column's value.

use sqlparser::ast::{
    DataType, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    ValueWithSpan, WindowType,
};

use super::*;

// ---------------------------------------------------------------------------------
// Operands

pub(super) fn addr<T>(node: &T) -> usize {
    std::ptr::from_ref(node) as usize
}

pub(super) fn peel(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// Short SQL text of an expression for messages.
pub(super) fn shown(expr: &Expr) -> String {
    let text = expr.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// A literal operand of a comparison.
pub(super) struct Literal<'e> {
    pub(super) value: &'e Value,
    pub(super) span: Span,
    /// A unary `-` (`Some(true)`) or `+` (`Some(false)`) right before the number.
    pub(super) sign: Option<bool>,
    /// A typed string (`int '20'`): the replacement must be a string literal.
    pub(super) quote: bool,
    /// Cast to an integer type on the way (numeric values would be rounded).
    pub(super) integer_cast: bool,
    /// The whole operand, for messages.
    pub(super) shown: String,
}

pub(super) enum Operand<'e> {
    Literal(Literal<'e>),
    Param(&'e str),
    /// A column reference (possibly cast).
    Column(&'e Expr),
    /// Cannot be proven: the message says why.
    Refuse(String),
    /// Anything else: an expression.
    Other,
}

enum CastClass {
    Transparent,
    Integer,
    Refuse,
}

/// How a cast to `data_type` may change a literal's value. Type modifiers
/// (`numeric(5,0)`, `varchar(2)`) round or truncate, and so do `char`/`character`
/// without a length (one character), `"char"`, `name` and `bit`: refused. Integer
/// types round non-integral numbers. Other types read the literal as the column's own
/// type would (an untyped literal is coerced the same way).
fn cast_class(data_type: &DataType) -> CastClass {
    let name = data_type.to_string().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if name.contains(['(', '[']) {
        return CastClass::Refuse;
    }
    match name {
        "int" | "integer" | "int2" | "int4" | "int8" | "smallint" | "bigint" => CastClass::Integer,
        "char" | "character" | "\"char\"" | "name" | "bit" | "nchar" => CastClass::Refuse,
        _ => CastClass::Transparent,
    }
}

fn is_string(value: &Value) -> bool {
    matches!(
        value,
        Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::UnicodeStringLiteral(_)
            | Value::NationalStringLiteral(_)
            | Value::DollarQuotedString(_)
    )
}

pub(super) fn operand<'e>(expr: &'e Expr) -> Operand<'e> {
    let expr = peel(expr);
    let literal = |value: &'e ValueWithSpan, sign| {
        Operand::Literal(Literal {
            value: &value.value,
            span: value.span,
            sign,
            quote: false,
            integer_cast: false,
            shown: shown(expr),
        })
    };
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => Operand::Param(p),
            _ => literal(v, None),
        },
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => {
            // `-20`, and `-20::int`, which is `-(20::int)`; not `-(20)`, whose sign
            // is not next to the literal.
            if matches!(inner.as_ref(), Expr::Nested(_)) {
                return Operand::Other;
            }
            match operand(inner) {
                Operand::Literal(mut l)
                    if l.sign.is_none()
                        && matches!(l.value, Value::Number(..) | Value::HexStringLiteral(_)) =>
                {
                    l.sign = Some(*op == UnaryOperator::Minus);
                    l.shown = shown(expr);
                    Operand::Literal(l)
                }
                Operand::Refuse(why) => Operand::Refuse(why),
                _ => Operand::Other,
            }
        }
        Expr::Cast {
            expr: inner,
            data_type,
            format: None,
            ..
        } => {
            let class = cast_class(data_type);
            match (operand(inner), class) {
                (Operand::Literal(_) | Operand::Param(_), CastClass::Refuse) => {
                    Operand::Refuse(format!("the cast to {data_type} may change the value"))
                }
                (Operand::Literal(mut l), class) => {
                    l.integer_cast |= matches!(class, CastClass::Integer);
                    l.shown = shown(expr);
                    Operand::Literal(l)
                }
                (other, _) => other,
            }
        }
        Expr::TypedString(ts) if is_string(&ts.value.value) => match cast_class(&ts.data_type) {
            CastClass::Refuse => {
                Operand::Refuse(format!("the type {} may change the value", ts.data_type))
            }
            class => Operand::Literal(Literal {
                value: &ts.value.value,
                span: ts.value.span,
                sign: None,
                quote: true,
                integer_cast: matches!(class, CastClass::Integer),
                shown: shown(expr),
            }),
        },
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Operand::Column(expr),
        _ => Operand::Other,
    }
}

/// `=`, `<>`, `!=`, also as `OPERATOR(pg_catalog.=)`.
pub(super) fn is_eq_like(op: &BinaryOperator) -> bool {
    match op {
        BinaryOperator::Eq | BinaryOperator::NotEq => true,
        BinaryOperator::PGCustomBinaryOperator(parts) => {
            matches!(parts.last().map(String::as_str), Some("=" | "<>" | "!="))
                && (parts.len() == 1 || parts[0].eq_ignore_ascii_case("pg_catalog"))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Expression frames

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FnClass {
    /// Aggregates a bare column without selecting rows by its value.
    Aggregate,
    /// Per-row functions that select nothing.
    Scalar,
    Unknown,
}

const AGGREGATES: &[&str] = &[
    "count",
    "min",
    "max",
    "sum",
    "avg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "any_value",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
];

const SCALARS: &[&str] = &[
    "coalesce",
    "lower",
    "upper",
    "length",
    "char_length",
    "to_char",
    "abs",
    "round",
    "trunc",
    "floor",
    "ceil",
    "ceiling",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "format",
];

/// A form that compares or selects: a column under it is refused.
#[derive(Debug, Clone)]
pub(super) enum Form {
    Op(BinaryOperator),
    Between,
    Distinct,
    In,
    InSubquery,
    AnyAll,
    Like,
    Case,
    Row,
    Array,
    Not,
    Other,
}

impl Form {
    /// The refusal, for `subject` (the column or an expression over it).
    pub(super) fn refusal(&self, subject: &str) -> String {
        match self {
            Form::Op(op) => format!("compares {subject} with the operator {op}"),
            Form::Between => format!("compares {subject} with BETWEEN"),
            Form::Distinct => format!("compares {subject} with IS DISTINCT FROM"),
            Form::In => format!("compares {subject} with IN (…)"),
            Form::InSubquery => format!("compares {subject} with IN (a subquery)"),
            Form::AnyAll => format!("compares {subject} with ANY/ALL"),
            Form::Like => format!("compares {subject} with a pattern"),
            Form::Case => format!("uses {subject} in CASE"),
            Form::Row => format!("uses {subject} in a row constructor"),
            Form::Array => format!("uses {subject} in an array"),
            Form::Not => format!("uses {subject} as a boolean under NOT"),
            Form::Other => format!("uses {subject} in an expression"),
        }
    }
}

pub(super) enum FrameKind {
    Nested,
    /// Arithmetic, casts, concatenation, signs: per-row values.
    Scalar,
    /// `IS [NOT] NULL`: selects nothing by value.
    Sink,
    Function {
        name: String,
        class: FnClass,
        args: Vec<usize>,
        filter: Option<usize>,
        /// `OVER (PARTITION BY … ORDER BY …)`, `WITHIN GROUP`, `ORDER BY` in arguments.
        ordering: Vec<usize>,
    },
    Selecting(Form),
}

pub(super) struct Frame {
    pub(super) addr: usize,
    pub(super) kind: FrameKind,
    /// A walk from below that is past the column itself (not bare) was found
    /// allowed from this frame up: later walks stop here (linear cost in total).
    pub(super) clear_above: bool,
}

fn function_frame(f: &Function) -> FrameKind {
    let name = object_last(&f.name);
    let class = if AGGREGATES.contains(&name.as_str()) {
        FnClass::Aggregate
    } else if SCALARS.contains(&name.as_str()) {
        FnClass::Scalar
    } else {
        FnClass::Unknown
    };
    let mut args = Vec::new();
    let mut ordering: Vec<usize> = f.within_group.iter().map(|o| addr(&o.expr)).collect();
    if let FunctionArguments::List(list) = &f.args {
        for arg in &list.args {
            let (FunctionArg::Unnamed(a)
            | FunctionArg::Named { arg: a, .. }
            | FunctionArg::ExprNamed { arg: a, .. }) = arg;
            if let FunctionArgExpr::Expr(e) = a {
                args.push(addr(e));
            }
        }
        for clause in &list.clauses {
            if let FunctionArgumentClause::OrderBy(order) = clause {
                ordering.extend(order.iter().map(|o| addr(&o.expr)));
            }
        }
    }
    if let Some(WindowType::WindowSpec(spec)) = &f.over {
        ordering.extend(spec.partition_by.iter().map(addr));
        ordering.extend(spec.order_by.iter().map(|o| addr(&o.expr)));
    }
    FrameKind::Function {
        name,
        class,
        args,
        filter: f.filter.as_deref().map(addr),
        ordering,
    }
}

pub(super) fn frame_kind(expr: &Expr) -> FrameKind {
    use BinaryOperator as B;
    match expr {
        // Grouping sets only list `GROUP BY` keys.
        Expr::Nested(_) | Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
            FrameKind::Nested
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            ..
        }
        | Expr::Cast { .. }
        | Expr::Collate { .. } => FrameKind::Scalar,
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => FrameKind::Selecting(Form::Not),
        Expr::BinaryOp { op, .. } => match op {
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::StringConcat => {
                FrameKind::Scalar
            }
            other => FrameKind::Selecting(Form::Op(other.clone())),
        },
        Expr::IsNull(_) | Expr::IsNotNull(_) => FrameKind::Sink,
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => {
            FrameKind::Selecting(Form::Distinct)
        }
        Expr::Between { .. } => FrameKind::Selecting(Form::Between),
        Expr::InList { .. } => FrameKind::Selecting(Form::In),
        Expr::InSubquery { .. } => FrameKind::Selecting(Form::InSubquery),
        Expr::AnyOp { .. } | Expr::AllOp { .. } => FrameKind::Selecting(Form::AnyAll),
        Expr::Like { .. } | Expr::ILike { .. } | Expr::SimilarTo { .. } | Expr::RLike { .. } => {
            FrameKind::Selecting(Form::Like)
        }
        Expr::Case { .. } => FrameKind::Selecting(Form::Case),
        Expr::Tuple(_) => FrameKind::Selecting(Form::Row),
        Expr::Array(_) => FrameKind::Selecting(Form::Array),
        Expr::Function(f) => function_frame(f),
        _ => FrameKind::Selecting(Form::Other),
    }
}
