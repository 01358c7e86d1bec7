//! The reference server's tables (the schema is the `migration` crate's).

pub mod access_keys;
pub mod admin_sessions;
pub mod admins;
pub mod audit_log;
pub mod bedrock_credentials;
pub mod model_mappings;
pub mod price_overrides;
pub mod users;
