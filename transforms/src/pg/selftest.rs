//! A rule's self-test: statements that must meet the rule, replayed through the same
//! judgement the session uses (`Policy::judge`), with only this rule in force. A rule
//! whose fixture does not come out as the rule promises fails, with both in the
//! message. Pure: no I/O.

use super::policy::{Learned, Policy, Verdict};
use super::session::PgRule;
use super::sql::MaskedColumn;

/// Replays `rule`'s fixtures; `Ok` says what was checked.
pub fn replay(rule: &PgRule) -> Result<String, String> {
    let mut policy = Policy {
        learned: Some(Ok(Learned::default())),
        ..Policy::default()
    };
    let (sql, expect): (String, fn(&Verdict) -> bool) = match rule {
        PgRule::Deny { objects, .. } => {
            let object = objects.first().ok_or("a deny rule without objects")?;
            policy.deny = objects.clone();
            (format!("SELECT * FROM {object}"), |v| {
                matches!(v, Verdict::Refuse(_))
            })
        }
        PgRule::DropSession { objects, .. } => {
            let object = objects
                .first()
                .ok_or("a drop-session rule without objects")?;
            policy.drop = objects.clone();
            (format!("SELECT * FROM {object}"), |v| {
                matches!(v, Verdict::Drop(_))
            })
        }
        PgRule::Mask { table, column, .. } => {
            policy.masked.push(MaskedColumn {
                table: table.clone(),
                column: column.clone(),
            });
            // A value computed from the masked column cannot be masked: refused.
            (format!("SELECT upper({column}) FROM {table}"), |v| {
                matches!(v, Verdict::Refuse(_))
            })
        }
        PgRule::Rewrite { rewrite, .. } => {
            policy.rewrites.push(rewrite.clone());
            (
                format!(
                    "SELECT * FROM {} WHERE {} = {}",
                    rewrite.table, rewrite.column, rewrite.from
                ),
                |v| matches!(v, Verdict::Replace { .. } | Verdict::WithParams { .. }),
            )
        }
        PgRule::Allow { .. } => {
            return Err("allow rules relax other rules; they have no fixture of their own".into())
        }
    };
    let verdict = policy.judge(&sql, Some(true));
    if expect(&verdict) {
        Ok(format!("{sql:?} → {}", describe(&verdict)))
    } else {
        Err(format!(
            "{sql:?} came out as {}, not as the rule promises",
            describe(&verdict)
        ))
    }
}

/// Whether `rule` has fixtures (allow rules do not).
pub fn has_fixtures(rule: &PgRule) -> bool {
    !matches!(rule, PgRule::Allow { .. })
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Forward { .. } => "forwarded unchanged".into(),
        Verdict::Replace { sql, .. } => format!("rewritten to {sql:?}"),
        Verdict::WithParams { .. } => "forwarded with parameters rewritten".into(),
        Verdict::Refuse(reason) => format!("refused ({reason})"),
        Verdict::Drop(reason) => format!("session dropped ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::session::Condition;
    use crate::pg::sql::PredicateRewrite;

    #[test]
    fn each_kind_of_rule_meets_its_fixture() {
        let when = Condition::default();
        let rules = [
            PgRule::Deny {
                when: when.clone(),
                objects: vec!["salaries".into()],
            },
            PgRule::DropSession {
                when: when.clone(),
                objects: vec!["audit_log".into()],
            },
            PgRule::Mask {
                when: when.clone(),
                table: "employee".into(),
                column: "ssn".into(),
                replacement: "x".into(),
            },
            PgRule::Rewrite {
                when: when.clone(),
                rewrite: PredicateRewrite {
                    table: "employee".into(),
                    column: "dept".into(),
                    from: "20".into(),
                    to: "21".into(),
                },
            },
        ];
        for rule in &rules {
            let outcome = replay(rule);
            assert!(outcome.is_ok(), "{rule:?}: {outcome:?}");
        }
    }

    #[test]
    fn a_rule_that_does_not_keep_its_promise_fails() {
        // A deny rule whose object is a name the reader folds differently from the
        // fixture (an impossible object) does not refuse its own fixture.
        let broken = PgRule::Deny {
            when: Condition::default(),
            objects: vec!["Salaries".into()],
        };
        let outcome = replay(&broken);
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(outcome.unwrap_err().contains("not as the rule promises"));
    }
}
