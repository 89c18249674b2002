//! Config errors: each names the file, line and column, quotes the line,
//! says what was expected and, for unknown names, suggests the nearest one.
//! Rendered like a compiler diagnostic; the same text for `syncline check`,
//! start-up and reload.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Byte range in the file, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub help: Option<String>,
    /// 1-based line and column of `span`'s start (filled in by [`ConfigErrors::render`] input).
    pub(crate) at: Option<(usize, usize)>,
    pub(crate) snippet: Option<(String, usize, usize)>,
}

impl ConfigError {
    /// An error at `span` of `file` whose text is `source`.
    pub fn new(file: &Path, source: &str, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (at, snippet) = match &span {
            Some(r) => {
                let start = r.start.min(source.len());
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
                let line_no = source[..start].matches('\n').count() + 1;
                let col = source[line_start..start].chars().count() + 1;
                let width = source[start..r.end.min(line_end).max(start)].chars().count().max(1);
                (Some((line_no, col)), Some((source[line_start..line_end].to_string(), col, width)))
            }
            None => (None, None),
        };
        ConfigError { file: file.to_path_buf(), span, message: message.into(), help: None, at, snippet }
    }

    /// Adds a hint.
    pub fn help(mut self, help: impl Into<String>) -> ConfigError {
        self.help = Some(help.into());
        self
    }

    /// 1-based (line, column), when the error has a position.
    pub fn position(&self) -> Option<(usize, usize)> {
        self.at
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        match (self.at, &self.snippet) {
            (Some((line, col)), Some((text, c, width))) => {
                let n = line.to_string();
                let pad = " ".repeat(n.len());
                writeln!(f, "{pad}--> {}:{line}:{col}", self.file.display())?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{n} | {text}")?;
                let marker = format!("{}{}", " ".repeat(c - 1), "^".repeat(*width));
                match &self.help {
                    Some(h) => writeln!(f, "{pad} | {marker} {h}")?,
                    None => writeln!(f, "{pad} | {marker}")?,
                }
            }
            _ => {
                writeln!(f, "  --> {}", self.file.display())?;
                if let Some(h) = &self.help {
                    writeln!(f, "  = help: {h}")?;
                }
            }
        }
        Ok(())
    }
}

/// Every problem found in a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} in the configuration; nothing was started or changed", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ConfigErrors {}

/// The name in `known` nearest to `name`, if it is near enough to be a typo.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// "did you mean `x`?" or a list of what exists.
pub fn suggestion<'a>(what: &str, name: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match nearest(name, known.clone()) {
        Some(n) => format!("did you mean `{n}`?"),
        None => {
            let all: Vec<&str> = known.into_iter().collect();
            if all.is_empty() {
                format!("no {what} is defined")
            } else {
                format!("known {what}s: {}", all.join(", "))
            }
        }
    }
}
