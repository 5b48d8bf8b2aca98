//! Masking: which result columns a mask covers, found by name in a statement that
//! touches the table and, from the learning query on, by (table OID, column number),
//! so aliases are covered from the first query.

use super::{rule_error, Expect, PgSession, RowMask, TEXTUAL_TYPES};
use crate::pg::message as msg;
use crate::RuleError;

impl PgSession {
    /// Column masks for a row description, given the masks whose table the statement
    /// touches. Learns (table OID, column) identities for later aliases.
    pub(super) fn columns_for(
        &mut self,
        fields: &[msg::Field<'_>],
        touched: &[usize],
    ) -> Vec<Option<(usize, u32)>> {
        fields
            .iter()
            .map(|f| {
                let by_name = touched
                    .iter()
                    .copied()
                    .find(|&i| self.masks[i].column == f.name.to_lowercase());
                if let Some(i) = by_name {
                    if f.table_oid != 0 {
                        self.learned.insert((f.table_oid, f.column, i));
                    }
                    return Some((i, f.type_oid));
                }
                self.learned
                    .iter()
                    .find(|(oid, col, _)| {
                        *oid == f.table_oid && *col == f.column && f.table_oid != 0
                    })
                    .map(|&(_, _, i)| (i, f.type_oid))
            })
            .collect()
    }

    pub(super) fn row_mask(
        columns: &[Option<(usize, u32)>],
        formats: impl Fn(usize) -> i16,
    ) -> Option<RowMask> {
        if columns.iter().all(Option::is_none) {
            return None;
        }
        Some(
            columns
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    c.map(|(i, oid)| (i, formats(n) == 0 || TEXTUAL_TYPES.contains(&oid)))
                })
                .collect(),
        )
    }

    /// The mask for rows of the Execute being answered, from its portal or statement.
    pub(super) fn execute_mask(&self) -> Option<RowMask> {
        let Some(Expect::Execute(portal)) = self.expect.front() else {
            return None;
        };
        let portal = self.portals.get(portal)?;
        let columns = portal
            .columns
            .clone()
            .or_else(|| self.statements.get(&portal.statement)?.columns.clone())?;
        let formats = &portal.result_formats;
        Self::row_mask(&columns, |n| match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => formats.get(n).copied().unwrap_or(0),
        })
    }

    /// The query that tells which (table OID, column number) each mask names, so the
    /// column is recognised under any alias from the first result on.
    pub(super) fn learn_query(&self) -> String {
        let quote = |s: &str| s.replace('\'', "''");
        let pairs: Vec<String> = self
            .masks
            .iter()
            .map(|m| format!("('{}','{}')", quote(&m.table), quote(&m.column)))
            .collect();
        format!(
            "SELECT c.oid::int8, a.attnum, c.relname, a.attname FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             WHERE (c.relname::text, a.attname::text) IN ({}) AND a.attnum > 0 AND NOT a.attisdropped",
            pairs.join(",")
        )
    }

    /// A reply to the learning query: rows are learned, nothing reaches the client.
    pub(super) fn learn_reply(&mut self, tag: u8, body: &[u8]) -> Result<(), RuleError> {
        match tag {
            b'D' => {
                let values = msg::parse_data_row(body).map_err(rule_error)?;
                let text = |n: usize| {
                    values
                        .get(n)
                        .copied()
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok())
                };
                let (Some(oid), Some(attnum), Some(table), Some(column)) =
                    (text(0), text(1), text(2), text(3))
                else {
                    return Ok(());
                };
                let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
                    return Ok(());
                };
                for i in 0..self.masks.len() {
                    if self.masks[i].table == table && self.masks[i].column == column {
                        self.learned.insert((oid, attnum, i));
                    }
                }
            }
            b'Z' => {
                self.expect.pop_front();
            }
            _ => {}
        }
        Ok(())
    }
}
