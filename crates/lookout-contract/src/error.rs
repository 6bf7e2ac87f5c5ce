//! [`ConfigError`]: a manifest, board profile or GPIO rules file that cannot be used, naming
//! the file and, where it can, the table and field.
//!
//! Each table's own check returns a [`FieldError`] (the field and why, as written in its table);
//! the file that holds the table turns it into a [`ConfigError`] with the file's path and the
//! table's name in front, so a message reads `boards/rpi-4b.toml: field `drift.clear_psi`: …`
//! wherever the table came from.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A file of the deployment contract that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist or cannot be read.
    #[error("{path}: cannot read {what}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file is (`manifest`, `board profile`, `GPIO rules file`).
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Malformed TOML, or a field of the wrong type or name.
    #[error("{path}: {message}")]
    Parse {
        /// The file (or `<embedded>`).
        path: PathBuf,
        /// toml's message on one line, naming the key and line.
        message: String,
    },
    /// A field parsed but its value is inconsistent.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file (or `<embedded>`).
        path: PathBuf,
        /// Dotted path of the field, its table first, e.g. `drift.clear_psi` or `rules[1].pin`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A field of the file at `path` that is wrong.
    pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A field of one table that is wrong, as the table's own check finds it: the field's name
/// within the table and why. [`FieldError::in_file`] places it in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct FieldError {
    /// The field, relative to the table that checked it (e.g. `window_frames`, `rules[0].pin`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// The field `field` is wrong because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// This error as found in the table `table` (`""` for the file's top level) of the file
    /// at `path`.
    pub fn in_file(self, path: &Path, table: &str) -> ConfigError {
        let field = if table.is_empty() {
            self.field
        } else {
            format!("{table}.{}", self.field)
        };
        ConfigError::invalid(path, field, self.message)
    }

    /// This error as found in the table or array element `table` of an enclosing table
    /// (`zones[1]`), for checks that call the checks of their parts.
    pub fn within(self, table: &str) -> Self {
        Self {
            field: format!("{table}.{}", self.field),
            message: self.message,
        }
    }
}

/// Reads the file at `path`, described as `what` in errors.
pub fn read_text(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Parses TOML text from `origin` into `T`, with toml's message (which names the key, line and
/// column, over several lines) flattened onto one line, so a log or a serial console shows it
/// whole.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_is_placed_in_its_table_and_file() {
        let e =
            FieldError::new("clear_psi", "must be over 0").in_file(Path::new("b.toml"), "drift");
        assert_eq!(
            e.to_string(),
            "b.toml: field `drift.clear_psi`: must be over 0"
        );
        let e = FieldError::new("cores", "must be at least 1").in_file(Path::new("b.toml"), "");
        assert_eq!(e.to_string(), "b.toml: field `cores`: must be at least 1");
    }

    #[test]
    fn toml_messages_come_on_one_line_naming_the_key() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let e = parse_toml::<T>("n = \"x\"\n", Path::new("t.toml")).expect_err("a string for n");
        let text = e.to_string();
        assert!(text.starts_with("t.toml: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("n = \"x\""), "{text}");
    }
}
