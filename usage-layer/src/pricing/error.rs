//! Why operator prices were refused.

/// Operator prices that could not be read; nothing is ever silently ignored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// A variable is not valid JSON.
    #[error("{variable}: invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        /// The environment variable.
        variable: &'static str,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A variable is JSON, but a part of it is not a valid price table or entry.
    #[error("{variable}: {path}: {reason}")]
    InvalidEntry {
        /// The environment variable.
        variable: &'static str,
        /// The dotted path of the bad part, e.g. `bedrock.us-east-1.claude-sonnet-4-5.input`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A variable is set, but not to valid Unicode.
    #[error("{variable}: not valid Unicode")]
    NotUnicode {
        /// The environment variable.
        variable: &'static str,
    },
}
