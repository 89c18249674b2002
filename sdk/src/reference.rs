//! Read-only reference tables (MOQ, lead times, unit conversions, ...) that
//! the configuration attaches to the plugin.

use crate::PluginError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::generated::syncline::plugin::reference as host;

/// One table row: (column, value) pairs in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<(String, String)>);

impl Row {
    /// The value of `column`, if the row has it.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v.as_str())
    }

    /// The value of `column` parsed as a number.
    ///
    /// # Errors
    ///
    /// A permanent `bad-reference-data` [`PluginError`] when the column is
    /// missing or not a number.
    pub fn number(&self, table: &str, column: &str) -> Result<f64, PluginError> {
        let text = self.get(column).ok_or_else(|| {
            PluginError::permanent("bad-reference-data", format!("table `{table}` has no column `{column}`"))
        })?;
        text.trim().parse().map_err(|_| {
            PluginError::permanent(
                "bad-reference-data",
                format!("table `{table}` column `{column}`: `{text}` is not a number"),
            )
        })
    }
}

fn table_error(message: String) -> PluginError {
    PluginError::permanent("missing-reference-table", message)
}

/// The first row of `table` whose first column equals `key`.
///
/// # Errors
///
/// A permanent `missing-reference-table` error when `table` is not attached.
pub fn get(table: &str, key: &str) -> Result<Option<Row>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    let found = host::get(table, key);
    #[cfg(not(target_arch = "wasm32"))]
    let found = crate::testing::with(|h| h.table(table).map(|t| t.get(key)));
    found.map(|r| r.map(Row)).map_err(table_error)
}

/// Every row of `table` whose `column` equals `value`.
///
/// # Errors
///
/// A permanent `missing-reference-table` error when `table` is not attached
/// or has no such column.
pub fn find(table: &str, column: &str, value: &str) -> Result<Vec<Row>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    let found = host::find(table, column, value);
    #[cfg(not(target_arch = "wasm32"))]
    let found = crate::testing::with(|h| h.table(table).and_then(|t| t.find(column, value)));
    found.map(|rows| rows.into_iter().map(Row).collect()).map_err(table_error)
}

/// Names of the attached tables.
pub fn tables() -> Vec<String> {
    #[cfg(target_arch = "wasm32")]
    return host::tables();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| h.tables.keys().cloned().collect());
}
