//! The reference server's tables (the schema is the `migration` crate's).

pub mod access_keys;
pub mod admins;
pub mod bedrock_credentials;
pub mod model_mappings;
pub mod price_overrides;
pub mod users;
