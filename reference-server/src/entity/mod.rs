//! Users and access keys (the schema is the `migration` crate's).

pub mod access_keys;
pub mod users;
