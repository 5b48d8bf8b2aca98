//! Tests of `$n` parameters: which are reported, and how their values are judged in
//! Bind (text and binary).

use super::super::*;
use super::tests_support::*;
use proptest::prelude::*;

#[test]
fn parameters_are_reported() {
    /// (predicate, rewritten predicate, parameters reported)
    type Case = (&'static str, Option<&'static str>, &'static [(u32, usize)]);
    let cases: &[Case] = &[
        ("dept = $1", None, &[(1, 0)]),
        ("$3 = dept", None, &[(3, 0)]),
        ("dept = $1::int", None, &[(1, 0)]),
        ("dept = CAST($2 AS bigint)", None, &[(2, 0)]),
        ("dept IN ($1, $2)", None, &[(1, 0), (2, 0)]),
        ("dept = ANY(ARRAY[$2, $1])", None, &[(1, 0), (2, 0)]),
        ("(dept) <> ($1)", None, &[(1, 0)]),
        ("dept = $1 AND id = $2", None, &[(1, 0)]),
        ("dept IN (20, $1)", Some("dept IN (21, $1)"), &[(1, 0)]),
        ("id = $1", None, &[]),
    ];
    for (predicate, text, params) in cases {
        let sql = format!("SELECT * FROM employee WHERE {predicate}");
        let plan = rewrite_plan(&sql, &dept()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            plan.text,
            text.map(|p| format!("SELECT * FROM employee WHERE {p}")),
            "{sql}"
        );
        assert_eq!(plan.params, *params, "{sql}");
        let parsed = ParsedSql::parse(&sql).unwrap();
        assert_eq!(parsed.rewrite_plan(&dept()), Ok(plan.clone()), "{sql}");
        // The text-only API cannot rewrite parameters: it refuses.
        if plan.params.is_empty() {
            assert_eq!(rewrite(&sql, &dept()), Ok(plan.text), "{sql}");
        } else {
            let why = reason(rewrite(&sql, &dept()));
            assert!(why.contains("parameter $"), "{sql}: {why}");
            assert!(why.contains("employee.dept"), "{sql}: {why}");
        }
    }
    for predicate in [
        "dept = $1::numeric(5,0)",
        "dept = $1::char",
        "dept BETWEEN $1 AND $2",
        "dept + 0 = $1",
        "dept = ANY($1)",
        "dept = ANY($1::int[])",
    ] {
        let sql = format!("SELECT * FROM employee WHERE {predicate}");
        reason(rewrite_plan(&sql, &dept()));
    }
    // SQL PREPARE: EXECUTE's values are never seen.
    for sql in [
        "PREPARE p AS SELECT * FROM employee WHERE dept = $1",
        "PREPARE p(int) AS SELECT * FROM employee WHERE dept IN (20, $1)",
        "PREPARE p(int) AS UPDATE employee SET x = 1 WHERE dept = $1::int",
    ] {
        let why = reason(rewrite_plan(sql, &dept()));
        assert!(why.contains("PREPARE"), "{sql}: {why}");
    }
}

#[test]
fn parameter_values() {
    let r = rule("employee", "dept", "20", "21");
    let text = |v: &str| rewrite_param(&r, v.as_bytes(), false);
    for v in [
        "20", " 20 ", "+20", "020", "2e1", "20.0", "0x14", "2_0", "\t20\n",
    ] {
        assert_eq!(text(v), Ok(Some(b"21".to_vec())), "{v:?}");
    }
    for v in ["21", "200", "-20", "abc", "", "NaN", "20x", "Infinity"] {
        assert_eq!(text(v), Ok(None), "{v:?}");
    }
    for v in ["20.000000000000001", "20.0000001"] {
        assert!(matches!(text(v), Err(SqlError::Unprovable { .. })), "{v:?}");
    }
    assert!(matches!(
        rewrite_param(&r, b"\xff20", false),
        Err(SqlError::Unprovable { .. })
    ));

    // Binary: integers of 2, 4 and 8 bytes, in the same width.
    let bin = |v: &[u8]| rewrite_param(&r, v, true);
    assert_eq!(
        bin(&20i16.to_be_bytes()),
        Ok(Some(21i16.to_be_bytes().to_vec()))
    );
    assert_eq!(
        bin(&20i32.to_be_bytes()),
        Ok(Some(21i32.to_be_bytes().to_vec()))
    );
    assert_eq!(
        bin(&20i64.to_be_bytes()),
        Ok(Some(21i64.to_be_bytes().to_vec()))
    );
    assert_eq!(bin(&19i32.to_be_bytes()), Ok(None));
    assert_eq!(bin(&(-20i64).to_be_bytes()), Ok(None));
    assert_eq!(bin(&(20i64 << 32).to_be_bytes()), Ok(None));
    // float4/float8 encodings of 20 cannot be told apart from integers: refused.
    assert!(matches!(
        bin(&20f32.to_be_bytes()),
        Err(SqlError::Unprovable { .. })
    ));
    assert!(matches!(
        bin(&20f64.to_be_bytes()),
        Err(SqlError::Unprovable { .. })
    ));
    // Other lengths (numeric, text, …) are refused.
    for v in [
        &b""[..],
        b"\x14",
        &[0, 0, 20],
        &[0; 10][..],
        b"0123456789abcdef",
    ] {
        assert!(matches!(bin(v), Err(SqlError::Unprovable { .. })), "{v:?}");
    }
    // The replacement must fit the width and be an integer.
    let big = rule("employee", "dept", "20", "70000");
    assert!(matches!(
        rewrite_param(&big, &20i16.to_be_bytes(), true),
        Err(SqlError::Unprovable { .. })
    ));
    assert_eq!(
        rewrite_param(&big, &20i32.to_be_bytes(), true),
        Ok(Some(70000i32.to_be_bytes().to_vec()))
    );
    let to_text = rule("employee", "dept", "20", "'x'");
    assert!(matches!(
        rewrite_param(&to_text, &20i32.to_be_bytes(), true),
        Err(SqlError::Unprovable { .. })
    ));
    assert_eq!(
        rewrite_param(&to_text, b"20", false),
        Ok(Some(b"x".to_vec()))
    );
    let negative = rule("employee", "dept", "-3", "- 4");
    assert_eq!(
        rewrite_param(&negative, b"-3.0", false),
        Ok(Some(b"-4".to_vec()))
    );
    assert_eq!(
        rewrite_param(&negative, &(-3i16).to_be_bytes(), true),
        Ok(Some((-4i16).to_be_bytes().to_vec()))
    );
    // Non-integer or string rules cannot judge binary values.
    for from in ["1.5", "'x'"] {
        let r = rule("employee", "dept", from, "2");
        assert!(matches!(
            rewrite_param(&r, &1i32.to_be_bytes(), true),
            Err(SqlError::Unprovable { .. })
        ));
    }
    let s = rule("t", "name", "'bob'", "'alice'");
    assert_eq!(
        rewrite_param(&s, b"bob", false),
        Ok(Some(b"alice".to_vec()))
    );
    assert_eq!(rewrite_param(&s, b"Bob", false), Ok(None));
    assert!(rewrite_param(&s, b"bob ", false).is_err());
    // Rules are validated.
    assert!(matches!(
        rewrite_param(&rule("t", "c", "x", "1"), b"1", false),
        Err(SqlError::NotALiteral { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parameter_text_values_rewrite_iff_equal(
        k in prop_oneof![Just(20i64), -100_000i64..100_000],
        which in any::<prop::sample::Index>(),
    ) {
        let r = rule("employee", "dept", "20", "21");
        let spellings = [format!("{k}"), format!(" {k} "), format!("{k}.00"), format!("{k}e0")];
        let value = &spellings[which.index(spellings.len())];
        let expected = (k == 20).then(|| b"21".to_vec());
        prop_assert_eq!(rewrite_param(&r, value.as_bytes(), false), Ok(expected));
        let binary = rewrite_param(&r, &i32::try_from(k).unwrap().to_be_bytes(), true);
        prop_assert_eq!(binary, Ok((k == 20).then(|| 21i32.to_be_bytes().to_vec())));
    }
}
