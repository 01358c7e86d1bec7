//! The reference proxy: Plan first, Bedrock fallback, access keys, budgets, usage metering.
//!
//! * [`app`] — routes, authentication, the usage layer; [`routing`] — Plan first, Bedrock
//!   fallback, cooldowns; [`plan`] and [`bedrock`] — the upstreams; [`budget`] — monthly
//!   Bedrock budgets; [`keys`] — access keys; [`metrics`] — `GET /metrics`; [`server`] —
//!   start and graceful stop; [`listen`] — client connections and their limits.

pub mod admin;
pub mod admins;
pub mod app;
pub mod audit;
pub mod bedrock;
pub mod breaker;
pub mod budget;
pub mod config;
pub mod console;
pub mod credentials;
pub mod crypto;
pub mod database;
pub mod deadline;
pub mod demo;
pub mod entity;
pub mod error;
pub mod fleet;
pub mod import;
pub mod ingest;
pub mod keys;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod pricing_env;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod standins;
pub mod throttle;
pub mod users;
