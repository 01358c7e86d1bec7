//! A Bedrock event stream, relayed as Anthropic server-sent events.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::ResponseStream;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use axum::body::Body;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::Frame;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::fault::{Failure, stream_error_code};

/// Events relayed ahead of a slow client; beyond this, Bedrock is read no faster than
/// the client reads.
const RELAY_CAPACITY: usize = 16;

/// The `200` SSE response for a stream whose first event is `first`.
///
/// A task relays the events into the body as they arrive; it ends with the stream, or
/// as soon as the client has gone (its body dropped), which drops the event receiver
/// and so closes the connection to Bedrock.
pub(super) fn relayed(
    events: EventReceiver<ResponseStream, ResponseStreamError>,
    first: Option<ResponseStream>,
    model: &str,
) -> Response<Body> {
    let (sender, receiver) = mpsc::channel(RELAY_CAPACITY);
    tokio::spawn(relay(events, first, sender, model.to_owned()).in_current_span());
    let mut response = Response::new(Body::new(SseBody { events: receiver }));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn relay(
    mut events: EventReceiver<ResponseStream, ResponseStreamError>,
    first: Option<ResponseStream>,
    sender: mpsc::Sender<Bytes>,
    model: String,
) {
    let mut received = Ok(first);
    let mut relayed = 0_u64;
    loop {
        let event = match received {
            Ok(Some(event)) => event,
            Ok(None) => {
                tracing::debug!(
                    bedrock.model = model,
                    events = relayed,
                    "Bedrock stream ended"
                );
                return;
            }
            Err(error) => {
                let failure = Failure::of(&error, stream_error_code);
                tracing::warn!(
                    bedrock.model = model,
                    events = relayed,
                    bedrock.error = failure.code.as_deref(),
                    message = %failure.message,
                    "Bedrock stream failed"
                );
                // The client may be gone already; there is nobody else to tell.
                let _ = sender.send(failure.sse_event()).await;
                return;
            }
        };
        if let ResponseStream::Chunk(part) = event
            && let Some(bytes) = part.bytes
        {
            if sender.send(sse_event(bytes.as_ref())).await.is_err() {
                break;
            }
            relayed += 1;
        }
        received = tokio::select! {
            received = events.recv() => received,
            () = sender.closed() => break,
        };
    }
    tracing::debug!(
        bedrock.model = model,
        events = relayed,
        "client left before the end of the Bedrock stream"
    );
}

/// The body of a relayed stream: the SSE events, as [`relay`] sends them.
#[derive(Debug)]
struct SseBody {
    events: mpsc::Receiver<Bytes>,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Frames one Anthropic event's JSON as a server-sent event named by its `"type"`.
///
/// The JSON goes out unchanged; should it span lines, each line gets its own `data:`
/// field, which SSE joins back with line feeds (JSON whitespace).
pub(super) fn sse_event(json: &[u8]) -> Bytes {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
    }
    let name = serde_json::from_slice::<Typed<'_>>(json)
        .ok()
        .map(|typed| typed.kind)
        .filter(|kind| !kind.contains(['\n', '\r']));
    let mut event = Vec::with_capacity(json.len() + 48);
    if let Some(name) = name {
        event.extend_from_slice(b"event: ");
        event.extend_from_slice(name.as_bytes());
        event.push(b'\n');
    }
    for line in json.split(|&byte| byte == b'\n' || byte == b'\r') {
        if !line.is_empty() {
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(line);
            event.push(b'\n');
        }
    }
    event.push(b'\n');
    event.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_framed_with_its_type_and_its_bytes_unchanged() {
        let json = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\nb"}}"#;
        let mut expected = b"event: content_block_delta\ndata: ".to_vec();
        expected.extend_from_slice(json);
        expected.extend_from_slice(b"\n\n");
        assert_eq!(&sse_event(json)[..], &expected[..]);
    }

    #[test]
    fn a_multi_line_event_gets_a_data_line_each_and_no_type_no_name() {
        assert_eq!(
            &sse_event(b"{\"type\":\"ping\",\r\n\"x\":1}")[..],
            b"event: ping\ndata: {\"type\":\"ping\",\ndata: \"x\":1}\n\n"
        );
        assert_eq!(&sse_event(br#"{"x":1}"#)[..], b"data: {\"x\":1}\n\n");
        assert_eq!(
            &sse_event(br#"{"type":"a\nb"}"#)[..],
            b"data: {\"type\":\"a\\nb\"}\n\n"
        );
    }
}
