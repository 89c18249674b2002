//! Reference tables: rows of named columns, loaded from CSV with a header
//! line, looked up by first column or by any column. The host serves them to
//! plugins; the SDK's test host serves them to natively run plugin tests.

use std::collections::HashMap;

/// One row: (column, value) pairs in column order.
pub type TableRow = Vec<(String, String)>;

/// A read-only table indexed by its first column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefTable {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    by_key: HashMap<String, usize>,
}

impl RefTable {
    /// Builds a table from a header and rows.
    ///
    /// # Errors
    ///
    /// When a row's length differs from the header's (names the 1-based line).
    pub fn new(columns: Vec<String>, rows: Vec<Vec<String>>) -> Result<RefTable, String> {
        let mut by_key = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.len() != columns.len() {
                return Err(format!(
                    "line {}: {} values for {} columns ({})",
                    i + 2,
                    row.len(),
                    columns.len(),
                    columns.join(",")
                ));
            }
            by_key.entry(row[0].clone()).or_insert(i);
        }
        if columns.is_empty() {
            return Err("the header line names no columns".into());
        }
        Ok(RefTable { columns, rows, by_key })
    }

    /// Parses CSV text whose first line names the columns.
    ///
    /// # Errors
    ///
    /// Malformed CSV or ragged rows, naming the line.
    #[cfg(feature = "csv")]
    pub fn from_csv(text: &str) -> Result<RefTable, String> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let columns: Vec<String> =
            reader.headers().map_err(|e| e.to_string())?.iter().map(str::to_string).collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| e.to_string())?;
            rows.push(record.iter().map(str::to_string).collect());
        }
        RefTable::new(columns, rows)
    }

    /// Column names in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn row(&self, i: usize) -> TableRow {
        self.columns.iter().cloned().zip(self.rows[i].iter().cloned()).collect()
    }

    /// The first row whose first column equals `key`.
    pub fn get(&self, key: &str) -> Option<TableRow> {
        self.by_key.get(key).map(|&i| self.row(i))
    }

    /// Every row whose `column` equals `value`.
    ///
    /// # Errors
    ///
    /// When the table has no such column.
    pub fn find(&self, column: &str, value: &str) -> Result<Vec<TableRow>, String> {
        let c = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| format!("no column `{column}` (columns: {})", self.columns.join(", ")))?;
        Ok((0..self.rows.len()).filter(|&i| self.rows[i][c] == value).map(|i| self.row(i)).collect())
    }
}
