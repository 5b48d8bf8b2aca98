//! Helpers shared by the rewrite's tests: rules, the `employee.dept 20 → 21` rule, and
//! the reason of a refusal.

use super::super::*;

pub(super) fn rule(table: &str, column: &str, from: &str, to: &str) -> PredicateRewrite {
    PredicateRewrite {
        table: table.into(),
        column: column.into(),
        from: from.into(),
        to: to.into(),
    }
}

pub(super) fn dept() -> Vec<PredicateRewrite> {
    vec![rule("employee", "dept", "20", "21")]
}

/// `SELECT * FROM employee WHERE <predicate>` under `employee.dept 20 → 21`.
pub(super) fn on_employee(predicate: &str) -> Result<Option<String>, SqlError> {
    rewrite(
        &format!("SELECT * FROM employee WHERE {predicate}"),
        &dept(),
    )
    .map(|new| new.map(|sql| sql["SELECT * FROM employee WHERE ".len()..].to_owned()))
}

pub(super) fn reason(result: Result<impl std::fmt::Debug, SqlError>) -> String {
    match result {
        Err(SqlError::Unprovable { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
