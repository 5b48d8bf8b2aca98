//! Tests of values, not spellings: number and string spellings of a rule's value,
//! replacement spellings, exact decimals, splicing (the text around a rewrite, line
//! offsets) and hostile sizes.

use super::super::*;
use super::tests_support::*;
use super::*;
use proptest::prelude::*;

/// (predicate, expected predicate; `None` = unchanged) under `employee.dept 20 → 21`.
const VALUE_CASES: &[(&str, Option<&str>)] = &[
    // Number spellings of 20.
    ("dept = 20", Some("dept = 21")),
    ("dept = 020", Some("dept = 21")),
    ("dept = 20.0", Some("dept = 21")),
    ("dept = 20.", Some("dept = 21")),
    ("dept = 2e1", Some("dept = 21")),
    ("dept = 20e0", Some("dept = 21")),
    ("dept = 0.2e2", Some("dept = 21")),
    ("dept = .2E+2", Some("dept = 21")),
    ("dept = 200e-1", Some("dept = 21")),
    ("dept = +20", Some("dept = 21")),
    ("dept = + 20", Some("dept = 21")),
    ("dept = 2_0", Some("dept = 21")),
    ("dept = 0x14", Some("dept = 21")),
    (
        "dept = 000000000000000000000000000000020.000000000000000",
        Some("dept = 21"),
    ),
    // String spellings the server coerces to 20 for a numeric column.
    ("dept = '20'", Some("dept = 21")),
    ("dept = ' 20 '", Some("dept = 21")),
    ("dept = '+20'", Some("dept = 21")),
    ("dept = '020'", Some("dept = 21")),
    ("dept = '2e1'", Some("dept = 21")),
    ("dept = '0x14'", Some("dept = 21")),
    ("dept = '\t20\n'", Some("dept = 21")),
    ("dept = E'2\\x30'", Some("dept = 21")),
    ("dept = $$20$$", Some("dept = 21")),
    ("dept = $q$ 20$q$", Some("dept = 21")),
    ("dept = N'20'", Some("dept = 21")),
    // Casts count as the literal; its bytes are replaced.
    ("dept = 20::int", Some("dept = 21::int")),
    ("dept = '20'::int", Some("dept = 21::int")),
    (
        "dept = '20'::integer::bigint",
        Some("dept = 21::integer::bigint"),
    ),
    (
        "dept = CAST('20' AS integer)",
        Some("dept = CAST(21 AS integer)"),
    ),
    ("dept = 20::numeric", Some("dept = 21::numeric")),
    ("dept = 20.0::float8", Some("dept = 21::float8")),
    (
        "dept = 20::pg_catalog.int4",
        Some("dept = 21::pg_catalog.int4"),
    ),
    ("dept = int '20'", Some("dept = int '21'")),
    ("dept = integer ' 20'", Some("dept = integer '21'")),
    ("dept = ('20')::int", Some("dept = (21)::int")),
    // Other values stay.
    ("dept = 21", None),
    ("dept = 200", None),
    ("dept = 2", None),
    ("dept = 20.5", None),
    ("dept = 2e2", None),
    ("dept = -20", None),
    ("dept = - 20", None),
    ("dept = '21'", None),
    ("dept = '20x'", None),
    ("dept = 'abc'", None),
    ("dept = ''", None),
    ("dept = NULL", None),
    ("dept = true", None),
    ("dept = 21::int", None),
    ("dept = int '19'", None),
    ("dept = 0x15", None),
    ("dept = -20::int", None),
    ("dept = +20::int", Some("dept = 21::int")),
];

#[test]
fn values_not_spellings() {
    for (predicate, expected) in VALUE_CASES {
        let got = on_employee(predicate).unwrap_or_else(|e| panic!("{predicate}: {e}"));
        assert_eq!(got.as_deref(), *expected, "{predicate}");
    }
}

#[test]
fn string_values() {
    let rules = [rule("t", "name", "'bob'", "'alice'")];
    let cases: &[(&str, Option<&str>)] = &[
        ("name = 'bob'", Some("name = 'alice'")),
        ("name = E'b\\x6fb'", Some("name = 'alice'")),
        ("name = $$bob$$", Some("name = 'alice'")),
        ("name = N'bob'", Some("name = 'alice'")),
        ("name = 'bob'::text", Some("name = 'alice'::text")),
        (
            "name = CAST('bob' AS varchar)",
            Some("name = CAST('alice' AS varchar)"),
        ),
        ("name = text 'bob'", Some("name = text 'alice'")),
        ("name IN ('ann', 'bob')", Some("name IN ('ann', 'alice')")),
        ("'bob' <> name", Some("'alice' <> name")),
        ("name = 'Bob'", None),
        ("name = ' bob'", None),
        ("name = 'bobby'", None),
        ("name = bob", None),
    ];
    for (predicate, expected) in cases {
        let sql = format!("SELECT * FROM t WHERE {predicate}");
        let got = rewrite(&sql, &rules).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let expected = expected.map(|p| format!("SELECT * FROM t WHERE {p}"));
        assert_eq!(got, expected, "{sql}");
    }
    for predicate in [
        "name = 'bob '",
        "name = 'bob'::char(3)",
        "name = 'bobby'::varchar(3)",
        "name = 'bobby'::char",
        "name LIKE 'bob'",
        "lower(name) = 'bob'",
    ] {
        let sql = format!("SELECT * FROM t WHERE {predicate}");
        reason(rewrite(&sql, &rules));
    }
    // A string rule whose content is a number matches that number.
    let numeric = [rule("t", "n", "'20'", "'21'")];
    assert_eq!(
        rewrite("SELECT * FROM t WHERE n = 2e1", &numeric),
        Ok(Some("SELECT * FROM t WHERE n = '21'".into()))
    );
    assert!(reason(rewrite("SELECT * FROM t WHERE n = '020'", &numeric)).contains("same number"));
    // Booleans.
    let flag = [rule("t", "f", "'true'", "'false'")];
    assert!(reason(rewrite("SELECT * FROM t WHERE f = true", &flag)).contains("boolean"));
    assert_eq!(rewrite("SELECT * FROM t WHERE f = false", &flag), Ok(None));
}

#[test]
fn replacement_spellings() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (from, to, predicate, expected)
        ("20", "-5", "dept = +20", "dept = -5"),
        ("20", "-5", "dept=20", "dept=-5"),
        ("20", "-5", "dept = int '20'", "dept = int '-5'"),
        ("20", "'x'", "dept = int '20'", "dept = int 'x'"),
        ("20", "$$x$$", "dept = varchar '20'", "dept = varchar $$x$$"),
        ("-3", "4", "dept = -3.0", "dept = 4"),
        ("-3", "4", "dept = - 03", "dept = 4"),
        ("-3", "4", "dept = '-3'", "dept = 4"),
        ("-3", "4", "dept = 3", "dept = 3"),
        ("1.5", "2.5", "dept = 1.50", "dept = 2.5"),
        ("1.5", "2.5", "dept = 15e-1", "dept = 2.5"),
        (
            "1.5",
            "2.5",
            "dept = ' 1.5'::numeric",
            "dept = 2.5::numeric",
        ),
        ("1.5", "2.5", "dept = 1.5::int", "REFUSED"),
        ("0", "1", "dept = -0", "dept = 1"),
        ("0", "1", "dept = 0e999999999999999999999", "dept = 1"),
        ("0", "1", "dept = 1e-99999", "REFUSED"),
        (
            "20",
            "21",
            "dept = 1e999999999999999999999",
            "dept = 1e999999999999999999999",
        ),
    ];
    for (from, to, predicate, expected) in cases {
        let rules = [rule("employee", "dept", from, to)];
        let sql = format!("SELECT * FROM employee WHERE {predicate}");
        let got = rewrite(&sql, &rules);
        if *expected == "REFUSED" {
            reason(got);
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got = got.as_deref().unwrap_or(&sql);
        assert_eq!(
            got,
            format!("SELECT * FROM employee WHERE {expected}"),
            "{from} → {to}"
        );
    }
}

#[test]
fn exact_decimals() {
    let d = |s: &str| match parse_number(s) {
        Num::Dec(d) => d,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(d("20"), d("2e1"));
    assert_eq!(d("20"), d("0020.000"));
    assert_eq!(d("-0"), d("0"));
    assert_eq!(d("0e99999999999999999999"), d("0"));
    assert_eq!(d("0x_1F"), d("31"));
    assert_eq!(d("0o17"), d("15"));
    assert_eq!(d("0b101"), d("5"));
    assert_eq!(d("1_000.000_1"), d("1000.0001"));
    assert_ne!(d("20"), d("20.000000000000000000000000000001"));
    assert_ne!(d("1e9223372036854775807"), d("1"));
    for bad in [
        "", "+", "-", ".", "e1", "1e", "1_", "_1", "1__0", "1.2.3", "0x", "0xg", "1 2", "--1",
    ] {
        assert_eq!(parse_number(bad), Num::NotANumber, "{bad:?}");
    }
    assert_eq!(
        parse_number(&format!("0x{}", "f".repeat(40))),
        Num::Unbounded
    );
}

#[test]
fn rewritten_text_keeps_every_other_byte() {
    let sql = "/* a */ SELECT 'dept = 20' AS \"dept = 20\", * -- 20\n\
               FROM employee e\r\n WHERE e.dept\t=\n 020 /* 20 */ AND ü = 'ß' OR dept IN ( '20' , 21 );";
    assert_eq!(
        rewrite(sql, &dept()),
        Ok(Some(
            "/* a */ SELECT 'dept = 20' AS \"dept = 20\", * -- 20\n\
             FROM employee e\r\n WHERE e.dept\t=\n 21 /* 20 */ AND ü = 'ß' OR dept IN ( 21 , 21 );"
                .into()
        ))
    );
}

/// Spellings of the integer `k` as `(literal, literal after rewrite 20 → 21)`.
fn spellings(k: i64) -> Vec<(String, String)> {
    let abs = k.unsigned_abs();
    let minus = if k < 0 { "-" } else { "" };
    let mut out = vec![
        (format!("{k}"), "21".to_owned()),
        (format!("{minus}0{abs}"), "21".to_owned()),
        (format!("{k}.0"), "21".to_owned()),
        (format!("{k}e0"), "21".to_owned()),
        (format!("{minus}{abs}0e-1"), "21".to_owned()),
        (format!("'{k}'"), "21".to_owned()),
        (format!("' {k} '"), "21".to_owned()),
        (format!("{k}::int"), "21::int".to_owned()),
        (format!("'{k}'::bigint"), "21::bigint".to_owned()),
        (
            format!("CAST('{k}' AS integer)"),
            "CAST(21 AS integer)".to_owned(),
        ),
        (format!("int '{k}'"), "int '21'".to_owned()),
        (format!("({k})"), "(21)".to_owned()),
    ];
    if k >= 0 {
        out.push((format!("+{k}"), "21".to_owned()));
        out.push((format!("0x{k:x}"), "21".to_owned()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn integers_rewrite_iff_equal(
        k in prop_oneof![Just(20i64), -100_000i64..100_000, any::<i64>()],
        which in any::<prop::sample::Index>(),
        swap in any::<bool>(),
        form in 0usize..3,
    ) {
        let spellings = spellings(k);
        let (literal, replaced) = &spellings[which.index(spellings.len())];
        let predicate = |lit: &str| match (form, swap) {
            (0, false) => format!("dept = {lit}"),
            (0, true) => format!("{lit} = dept"),
            (1, _) => format!("dept IN (1, {lit})"),
            _ => format!("dept <> ALL(ARRAY[{lit}])"),
        };
        let got = on_employee(&predicate(literal));
        if k == 20 {
            prop_assert_eq!(got, Ok(Some(predicate(replaced))));
        } else {
            prop_assert_eq!(got, Ok(None));
        }
    }


    #[test]
    fn random_decimals_compare_exactly(a in -10_000i64..10_000, b in -10_000i64..10_000, e in 0u32..5) {
        // a / 10^e written with a fraction equals b exactly iff a == b·10^e.
        let scale = 10i64.pow(e);
        let text = format!("{}{}.{:0width$}", if a < 0 { "-" } else { "" }, a.abs() / scale, a.abs() % scale, width = e as usize);
        let text = text.trim_end_matches('.').to_owned();
        let equal = a == b * scale;
        prop_assert_eq!(parse_number(&text) == parse_number(&b.to_string()), equal, "{} vs {}", text, b);
    }
}

#[test]
fn hostile_sizes_stay_cheap() {
    // Many occurrences deep in long chains: each expression frame is walked once.
    let chain = vec!["dept"; 900].join("+");
    let items = vec![chain.as_str(); 200].join(", ");
    let sql = format!("SELECT {items} FROM employee");
    assert!(sql.len() < MAX_SQL_LEN);
    let started = std::time::Instant::now();
    assert_eq!(rewrite(&sql, &dept()), Ok(None));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // A long IN list of equal values.
    let list = vec!["'20'"; 50_000].join(",");
    let sql = format!("SELECT * FROM employee WHERE dept IN ({list})");
    let new = rewrite(&sql, &dept()).unwrap().unwrap();
    assert_eq!(new, sql.replace("'20'", "21"));
}

#[test]
fn batch_offsets_agree_with_single_ones() {
    let sql = "ab\nä€x\n\nz";
    let index = LineIndex::new(sql);
    let mut locations = Vec::new();
    for line in 0..6 {
        for column in 0..6 {
            locations.push(Location { line, column });
        }
    }
    locations.reverse();
    let single: Vec<Option<usize>> = locations.iter().map(|&at| index.offset(at)).collect();
    assert_eq!(index.offsets(&locations), single);
}
