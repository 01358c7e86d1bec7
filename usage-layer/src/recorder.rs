//! The record of one request while it is in flight, shared by the future and the body.

use std::io::IoSlice;
use std::time::Instant;

use bytes::Buf;
use http::{HeaderMap, Response, StatusCode, header};

use crate::anthropic::{BodyUsage, JsonReader, ParseIssue};
use crate::layer::Limits;
use crate::record::{
    Caller, Fallback, Outcome, Provider, Region, RequestId, RequestedModel, UsageRecord,
};
use crate::sink::UsageSink;
use crate::sse::Scanner;

/// How the body's end came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The body reached its end.
    Eof,
    /// The body returned an error.
    BodyError,
    /// The body was dropped before its end.
    Dropped,
}

/// Reads usage out of the body, by its content type.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the scanner lives inline in the body: boxing it would allocate per request"
)]
enum Reader {
    Sse(Scanner),
    Json(JsonReader),
    /// Not read, for this reason.
    Skip(ParseIssue),
}

impl Reader {
    fn for_response(headers: &HeaderMap, limits: Limits) -> (Self, bool) {
        let encoded = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return (Reader::Skip(ParseIssue::ContentEncoded), false);
        }
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim());
        match media_type {
            Some(t) if t.eq_ignore_ascii_case("text/event-stream") => (
                Reader::Sse(Scanner::with_max_event_bytes(limits.max_event_bytes)),
                true,
            ),
            Some(t)
                if t.eq_ignore_ascii_case("application/json")
                    || t.to_ascii_lowercase().ends_with("+json") =>
            {
                let mut reader = JsonReader::new(limits.max_json_bytes);
                if let Some(len) = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                {
                    reader.expect_len(len);
                }
                (Reader::Json(reader), false)
            }
            _ => (Reader::Skip(ParseIssue::UnsupportedContentType), false),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Reader::Sse(scanner) => scanner.feed(bytes),
            Reader::Json(reader) => reader.feed(bytes),
            Reader::Skip(_) => {}
        }
    }

    fn finish(self, bytes_seen: u64) -> BodyUsage {
        match self {
            Reader::Sse(scanner) => scanner.finish(),
            Reader::Json(reader) => reader.finish(),
            Reader::Skip(issue) => {
                let mut body = BodyUsage::default();
                // An empty body (a HEAD or a 204) had nothing to read.
                if bytes_seen > 0 {
                    body.note_issue(issue);
                }
                body
            }
        }
    }
}

/// One request's record in the making; finishing it hands it to the sink, once.
#[derive(Debug)]
pub(crate) struct Recorder<K> {
    record: UsageRecord,
    started: Instant,
    limits: Limits,
    reader: Reader,
    /// A frame could not be observed; what follows it is not read either.
    blind: bool,
    sink: K,
}

impl<K: UsageSink> Recorder<K> {
    pub(crate) fn start<B>(request: &http::Request<B>, sink: K, limits: Limits) -> Self {
        let extensions = request.extensions();
        let request_id = extensions.get::<RequestId>().copied().unwrap_or_default();
        let mut record = UsageRecord::new(request_id, chrono::Utc::now());
        record.caller = extensions.get::<Caller>().copied().unwrap_or_default();
        let mut recorder = Recorder {
            record,
            started: Instant::now(),
            limits,
            reader: Reader::Skip(ParseIssue::UnsupportedContentType),
            blind: false,
            sink,
        };
        recorder.take_labels(extensions);
        recorder
    }

    /// Provider, requested model and fallback: whoever routed the request set them.
    fn take_labels(&mut self, extensions: &http::Extensions) {
        if let Some(provider) = extensions.get::<Provider>() {
            self.record.provider = provider.clone();
        }
        if let Some(Region(region)) = extensions.get::<Region>() {
            self.record.region = Some(region.clone());
        }
        if let Some(RequestedModel(model)) = extensions.get::<RequestedModel>() {
            self.record.requested_model = Some(model.clone());
        }
        if let Some(fallback) = extensions.get::<Fallback>() {
            self.record.fallback = Some(fallback.clone());
        }
    }

    pub(crate) fn on_response<B>(&mut self, response: &Response<B>) {
        self.take_labels(response.extensions());
        self.record.status = Some(response.status());
        let (reader, streaming) = Reader::for_response(response.headers(), self.limits);
        self.reader = reader;
        self.record.streaming = streaming;
    }

    /// Sees one data frame go by.
    pub(crate) fn observe(&mut self, data: &impl Buf) {
        let remaining = data.remaining();
        if remaining == 0 {
            return;
        }
        if self.record.response_bytes == 0 {
            self.record.time_to_first_byte = Some(self.started.elapsed());
        }
        self.record.response_bytes += remaining as u64;
        if self.blind {
            return;
        }
        let chunk = data.chunk();
        if chunk.len() == remaining {
            self.reader.feed(chunk);
            return;
        }
        let mut slices = [IoSlice::new(&[]); 64];
        let filled = data.chunks_vectored(&mut slices);
        let slices = &slices[..filled];
        if slices.iter().map(|slice| slice.len()).sum::<usize>() == remaining {
            for slice in slices {
                self.reader.feed(slice);
            }
        } else {
            self.blind = true;
        }
    }

    /// Ends a request whose response has come, and hands the record over.
    pub(crate) fn finish(self, end: End) {
        let Recorder {
            mut record,
            started,
            reader,
            blind,
            sink,
            ..
        } = self;
        let mut body = reader.finish(record.response_bytes);
        if blind {
            body.note_issue(ParseIssue::UnobservableFrame);
        }
        let status = record.status.unwrap_or(StatusCode::OK);
        record.outcome = outcome(end, status, record.streaming, &body);
        record.usage = body.billed_usage();
        record.bedrock_metrics = body.bedrock_metrics;
        record.served_model = body.model;
        record.error_type = body.error_type;
        record.stop_reason = body.stop_reason;
        record.parse_issue = body.issue;
        record.duration = started.elapsed();
        sink.record(record);
    }

    /// Ends a request that got no response (the inner service failed, or the caller left).
    pub(crate) fn finish_without_response(self, outcome: Outcome) {
        let Recorder {
            mut record,
            started,
            sink,
            ..
        } = self;
        record.outcome = outcome;
        record.duration = started.elapsed();
        sink.record(record);
    }
}

fn outcome(end: End, status: StatusCode, streaming: bool, body: &BodyUsage) -> Outcome {
    if !status.is_success() {
        return Outcome::ErrorResponse;
    }
    match end {
        End::Eof => Outcome::of_ended_body(body, streaming),
        _ if body.error_type.is_some() => Outcome::StreamError,
        End::BodyError => Outcome::UpstreamError,
        // The client may leave after the message's last event but before the body's end.
        End::Dropped if body.complete => Outcome::Completed,
        End::Dropped => Outcome::ClientDisconnected,
    }
}
