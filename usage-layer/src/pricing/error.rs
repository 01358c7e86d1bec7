//! Why your prices were refused.

/// Prices that could not be read; nothing is ever silently ignored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The text is not valid JSON.
    #[error("{origin}: invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        /// Where the text came from, as the caller named it (a file, a variable).
        origin: String,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The text is JSON, but a part of it is not a valid price table or entry.
    #[error("{origin}: {path}: {reason}")]
    InvalidEntry {
        /// Where the text came from, as the caller named it (a file, a variable).
        origin: String,
        /// The dotted path of the bad part, e.g. `bedrock.us-east-1.claude-sonnet-4-5.input`,
        /// or `top level`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
