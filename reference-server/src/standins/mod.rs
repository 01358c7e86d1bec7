//! Local stand-ins for the upstreams, speaking their exact wire formats: for `demo`, and
//! for tests. They listen on 127.0.0.1 only.

pub mod bedrock;
pub mod plan;
