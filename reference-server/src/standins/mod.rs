//! Local stand-ins for the upstreams, speaking their exact wire formats: for `demo`, and
//! for tests. They listen on 127.0.0.1 only.

pub mod bedrock;
pub mod plan;

/// A request's headers and body, copied out of the connection's read buffer: hyper's
/// parsed header values and collected body are slices of it, and a stand-in that keeps
/// every request would otherwise keep every connection's buffer alive.
fn detached(headers: &http::HeaderMap, body: &[u8]) -> (http::HeaderMap, bytes::Bytes) {
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let mut copy = http::HeaderValue::from_bytes(value.as_bytes())
                .expect("a header value that parsed once parses again");
            copy.set_sensitive(value.is_sensitive());
            (name.clone(), copy)
        })
        .collect();
    (headers, bytes::Bytes::copy_from_slice(body))
}
