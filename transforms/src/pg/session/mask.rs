//! Masking: which result columns a mask covers. A column is recognised by the
//! RowDescription's (table OID, column number), learned from the catalog at the
//! session's start (so aliases, cursors, prepared statements and RETURNING are
//! covered), and by name in a result of a statement that names the masked table.
//!
//! The shape of every result is the supervisor's own knowledge, never the client's: a
//! simple Query's rows follow their RowDescription; an Execute's rows follow the
//! RowDescription of the supervisor's own Describe of that portal, sent just before the
//! Execute and hidden from the client (see `PgSession::client_message`). Rows whose
//! shape is unknown have every value withheld (NULL), never passed in clear.

use super::{PgSession, RowMask, TEXTUAL_TYPES};
use crate::pg::message as msg;

/// Per result column: the mask index and the column's type OID.
pub(super) type Columns = Vec<Option<(usize, u32)>>;

impl PgSession {
    /// Column masks for a row description, given the masks whose table the statement
    /// names.
    pub(super) fn columns_for(&self, fields: &[msg::Field<'_>], named: &[usize]) -> Columns {
        fields
            .iter()
            .map(|f| {
                let by_identity = self
                    .learned_columns
                    .iter()
                    .find(|(oid, col, _)| {
                        f.table_oid != 0 && *oid == f.table_oid && *col == f.column
                    })
                    .map(|&(_, _, i)| i);
                let by_name = || {
                    named
                        .iter()
                        .copied()
                        .find(|&i| self.policy.masked[i].column == f.name.to_lowercase())
                };
                by_identity.or_else(by_name).map(|i| (i, f.type_oid))
            })
            .collect()
    }

    /// The row mask for `columns` in `formats` (per column), or `None` when nothing is
    /// masked.
    pub(super) fn row_mask(columns: &Columns, formats: &[i16]) -> Option<RowMask> {
        if columns.iter().all(Option::is_none) {
            return None;
        }
        Some(
            columns
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    c.map(|(i, oid)| {
                        let text = formats.get(n).copied().unwrap_or(0) == 0;
                        (i, text || TEXTUAL_TYPES.contains(&oid))
                    })
                })
                .collect(),
        )
    }

    /// Applies `mask` to one DataRow body; `None` mask with `withhold_all` nulls every
    /// value (the shape is unknown).
    pub(super) fn mask_row(
        &self,
        body: &[u8],
        mask: &RowMask,
    ) -> Result<Vec<u8>, msg::MessageError> {
        let values = msg::parse_data_row(body)?;
        let masked: Vec<Option<&[u8]>> = values
            .iter()
            .enumerate()
            .map(|(n, value)| match (value, mask.get(n).copied().flatten()) {
                (Some(_), Some((i, true))) => Some(self.replacements[i].as_slice()),
                // A binary value of a non-text type cannot carry the replacement text:
                // withheld as NULL rather than leaked.
                (Some(_), Some((_, false))) => None,
                (value, _) => *value,
            })
            .collect();
        Ok(msg::build_data_row(&masked))
    }

    /// A DataRow whose shape the supervisor does not know: every value withheld.
    pub(super) fn withhold_row(body: &[u8]) -> Result<Vec<u8>, msg::MessageError> {
        let values = msg::parse_data_row(body)?;
        let nulls: Vec<Option<&[u8]>> = vec![None; values.len()];
        Ok(msg::build_data_row(&nulls))
    }
}
