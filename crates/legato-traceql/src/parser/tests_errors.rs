//! Parser unit tests: error messages and positions.

#![allow(clippy::unwrap_used)]

use crate::{ParseError, parse};

fn err(query: &str) -> ParseError {
    match parse(query) {
        Ok(q) => panic!("{query:?} should not parse, got {q:?}"),
        Err(e) => e,
    }
}

/// Asserts the position and that the message contains `needle`.
#[track_caller]
fn assert_err(query: &str, line: usize, col: usize, needle: &str) {
    let e = err(query);
    assert_eq!((e.line, e.col), (line, col), "{query:?}: {e}");
    assert!(
        e.message.contains(needle),
        "{query:?}: message {:?} lacks {needle:?}",
        e.message
    );
}

#[test]
fn display_format() {
    let e = err("{ .foo = }");
    assert_eq!(
        e.to_string(),
        "parse error at line 1, col 10: expected a value after '=', found '}'"
    );
    assert_eq!(
        e,
        ParseError {
            line: 1,
            col: 10,
            message: "expected a value after '=', found '}'".into()
        }
    );
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().starts_with("parse error at line 1, col 10"));
}

#[test]
fn empty_input() {
    assert_err("", 1, 1, "empty query");
    assert_err("  \n ", 2, 2, "empty query");
}

#[test]
fn positions_on_multi_line_queries() {
    let query = "{ resource.service.name = \"api\" }\n  | count() > 2\n  | avg(duration) > ";
    assert_err(query, 3, 21, "found end of input");
    let query = "{\n  span.http.method = \"GET\" &&\n  span.http.status_code = \n}";
    assert_err(query, 4, 1, "expected a value after '=', found '}'");
    let query = "{ .a = 1 }\n>>\n{ .b =~ \"(\" }";
    let e = err(query);
    assert_eq!((e.line, e.col), (3, 9));
    assert!(e.message.contains("invalid regular expression \"(\""), "{e}");
    // Columns count characters, not bytes.
    assert_err("{ .a = \"é✓\" } garbage", 1, 15, "found 'garbage'");
    assert_err("{ .é = 1 }\n{", 2, 1, "found '{'");
}

#[test]
fn unbalanced_braces_and_parentheses() {
    assert_err(
        "{ .a = 1",
        1,
        9,
        "expected an operator or '}' to close the spanset filter opened at line 1, col 1",
    );
    assert_err("{ 1 = 1", 1, 8, "found end of input");
    assert_err("{ .a = 1 }}", 1, 11, "found '}'");
    assert_err("{ (.a < 3 }", 1, 11, "')' to close the '(' at line 1, col 3");
    assert_err("({ .a = 1 }", 1, 12, "')' to close the '(' at line 1, col 1");
    assert_err("{ { } }", 1, 3, "found '{'");
}

#[test]
fn missing_operands_and_attribute_names() {
    assert_err("{ .foo = }", 1, 10, "expected a value after '='");
    assert_err("{ span. = 1 }", 1, 8, "expected an attribute name after 'span.'");
    assert_err("{ . }", 1, 4, "expected an attribute name after '.'");
    assert_err("{ parent.span. = 1 }", 1, 15, "after 'parent.span.'");
    assert_err("{ .a = 1 && }", 1, 13, "expected a value after '&&'");
    assert_err("{ .a = 1 } &&", 1, 14, "spanset filter such as '{ }' after '&&'");
    assert_err("{ = 1 }", 1, 3, "expected an expression or '}' after '{'");
}

#[test]
fn lexical_errors() {
    assert_err("{ .a = \"abc }", 1, 8, "unterminated string");
    assert_err("{ .a = \"ab\nc\" }", 1, 8, "newline inside a string literal");
    assert_err("{ .a = `abc }", 1, 8, "unterminated raw string");
    assert_err(r#"{ .a = "x\d" }"#, 1, 10, r"invalid escape sequence '\d'");
    assert_err(r#"{ span."a\nb" = 1 }"#, 1, 11, "invalid escape sequence");
    assert_err("{ span.\"abc = 1 }", 1, 8, "unterminated quoted attribute name");
    assert_err("{ .a == 1 }", 1, 6, "'==' is not a TraceQL operator");
    assert_err("{ .a & .b }", 1, 6, "did you mean '&&'");
    assert_err("{ .a = 'x' }", 1, 8, "double quotes or backticks");
    assert_err("{ .a = 99999999999999999999 }", 1, 8, "out of range");
    assert_err("{ .a = 12abc }", 1, 8, "invalid number '12abc'");
    assert_err("{ duration > 5min }", 1, 14, "invalid duration '5min'");
    assert_err("{ duration > 99999999999h }", 1, 14, "invalid duration");
    assert_err("{ span:foo = 1 }", 1, 3, "unknown intrinsic 'foo'");
    assert_err("{ span: = 1 }", 1, 8, "expected an intrinsic name after 'span:'");
    // The first error in text order wins, even when a later token does not lex.
    assert_err("{ .a = } \"unterminated", 1, 8, "expected a value after '='");
}

#[test]
fn unknown_identifiers() {
    assert_err("{ foo = 1 }", 1, 3, "unknown identifier 'foo'; attributes need a scope");
    assert_err("{ foo.bar = 1 }", 1, 3, "unknown identifier 'foo'");
    assert_err("{ parent = 1 }", 1, 3, "'parent' on its own is not supported");
    assert_err("{ count() > 1 }", 1, 3, "cannot be used inside a spanset filter");
    assert_err(
        "{ trace:status = error }",
        1,
        3,
        "unknown intrinsic 'status' for scope 'trace:'",
    );
}

#[test]
fn regex_errors() {
    assert_err(
        "{ .a =~ 1 }",
        1,
        9,
        "expected a string literal (the regular expression) after '=~', found '1'",
    );
    assert_err("{ .a !~ .b }", 1, 9, "after '!~'");
    assert_err("{ .a =~ \"[\" }", 1, 9, "invalid regular expression \"[\"");
    assert_err("{ .a =~ \"x\" + \"y\" }", 1, 13, "must be a single string literal");
    assert_err("{ 1 =~ \"x\" }", 1, 5, "needs a string on its left side");
}

#[test]
fn type_errors() {
    assert_err("{ 1 }", 1, 3, "must be a boolean expression");
    assert_err("{ duration }", 1, 3, "found a number");
    assert_err("{ 1 = \"a\" }", 1, 5, "cannot compare a number with a string");
    assert_err("{ status > ok }", 1, 10, "cannot order a status");
    assert_err("{ .a > nil }", 1, 6, "cannot order nil");
    assert_err("{ .a + \"x\" = 1 }", 1, 6, "'+' needs numbers, found a string");
    assert_err("{ !.a * 2 }", 1, 3, "'!' needs a boolean, found a number");
    assert_err("{ -true }", 1, 3, "'-' needs a number");
    assert_err("{ 1 && .a }", 1, 5, "'&&' needs booleans");
}

#[test]
fn pipeline_errors() {
    assert_err(
        "{ } | count()",
        1,
        14,
        "expected a comparison such as '> 3' after 'count()', found end of input",
    );
    assert_err("{ } | avg(span.x + 1) |", 1, 23, "after 'avg(span.x + 1)'");
    assert_err("{ } | foo()", 1, 7, "unknown function 'foo'");
    assert_err("{ } | foo", 1, 7, "expected a spanset filter, an aggregate");
    assert_err("{ } | 3 > 2", 1, 7, "needs an aggregate");
    assert_err("{ } | sum(3) > 1", 1, 11, "must reference an attribute or intrinsic");
    assert_err("{ } | max(name) > 1", 1, 11, "needs a numeric expression");
    assert_err("{ } | count(duration) > 1", 1, 13, "count() takes no arguments");
    assert_err("{ } | by()", 1, 10, "expected a field expression in by(...)");
    assert_err(
        "{ } | select(.a = 1)",
        1,
        14,
        "select() accepts only attributes and intrinsics",
    );
    assert_err("{ } | topk(5)", 1, 7, "topk() must follow a metrics function");
    assert_err("{ } | > 1", 1, 7, "must follow a metrics function");
    assert_err("coalesce()", 1, 1, "expected a spanset filter such as '{ }'");
    assert_err("{ } garbage", 1, 5, "found 'garbage'");
    assert_err("{ } | count() > 1 | ", 1, 21, "found end of input");
    assert_err(
        "{ } | with(most_recent=true)",
        1,
        7,
        "hints go at the very end of the query",
    );
    assert_err("{ } | ({ } | rate())", 1, 7, "cannot be used as a pipeline stage");
}

#[test]
fn metrics_errors() {
    assert_err("rate()", 1, 1, "a metrics function must follow a spanset filter");
    assert_err("{ } | rate(duration)", 1, 12, "rate() takes no arguments");
    assert_err("{ } | quantile_over_time(duration)", 1, 34, "at least one quantile");
    assert_err(
        "{ } | quantile_over_time(duration, 2)",
        1,
        36,
        "quantile 2 is not between 0 and 1",
    );
    assert_err(
        "{ } | sum_over_time(span.a + 1)",
        1,
        21,
        "accepts only an attribute or intrinsic",
    );
    assert_err(
        "{ } | rate() by ()",
        1,
        18,
        "expected an attribute or intrinsic in by(...)",
    );
    assert_err("{ } | rate() | topk(0)", 1, 21, "positive integer");
    assert_err(
        "{ } | rate() | count() > 1",
        1,
        16,
        "a metrics function must be the last stage",
    );
    assert_err("{ } | rate() | rate()", 1, 16, "only one metrics function");
    assert_err("{ } | rate() > \"x\"", 1, 16, "expected a number or duration after '>'");
    assert_err("({ } | rate()) && { }", 1, 16, "spanset operators is not supported");
    assert_err("{ } || ({ } | rate())", 1, 8, "not supported");
    // Metrics arithmetic and compare(): tests_metrics.rs.
}

#[test]
fn hint_errors() {
    assert_err("{ } with()", 1, 10, "expected a hint name");
    assert_err(
        "{ } with(most_recent)",
        1,
        21,
        "expected '=' after the hint name 'most_recent'",
    );
    assert_err("{ } with(a=.b)", 1, 12, "a literal value for the hint 'a'");
    assert_err("{ } with(a=1", 1, 13, "',' or ')' to close 'with('");
    assert_err("{ } with(a=1) | { }", 1, 15, "found '|'");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}{{ }}{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).message.contains("nested too deeply"));
    let deep = format!("{{ {}.a }}", "!".repeat(10_000));
    assert!(err(&deep).message.contains("nested too deeply"));
    let deep = format!("{{ {}.a = 1 }}", "-".repeat(10_000));
    assert!(err(&deep).message.contains("nested too deeply"));
    let deep = format!("{{ {}.a{} }}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).message.contains("nested too deeply"));
    let deep = format!("{{ }} | {}count(){} > 1", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).message.contains("nested too deeply"));
    // Long flat chains are fine.
    let long = vec!["{ .a = 1 }"; 2_000].join(" && ");
    assert!(parse(&long).is_ok());
}
