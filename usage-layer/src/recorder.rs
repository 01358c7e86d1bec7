//! The record of one request while it is in flight, shared by the future and the body.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use http::{HeaderMap, Response, StatusCode, header};

use crate::anthropic::{BodyUsage, JsonReader, ParseIssue};
#[cfg(feature = "decompress")]
use crate::decode::{DecodeError, Decoder};
use crate::format::Format;
use crate::layer::{Limits, Settings};
use crate::record::{
    Caller, Fallback, Labels, Outcome, Provider, Region, RequestId, RequestedModel, UsageRecord,
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

/// Reads usage out of the body, by its content type (and its content coding).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the scanner lives inline in the body: boxing it would allocate per request"
)]
enum Reader {
    Sse(Scanner),
    Json(JsonReader),
    /// A compressed body, decoded for reading.
    #[cfg(feature = "decompress")]
    Decoded(Box<Decoded>),
    /// Not read, for this reason.
    Skip(ParseIssue),
}

impl Reader {
    fn for_response(headers: &HeaderMap, limits: Limits, format: Option<Format>) -> (Self, bool) {
        let codings = headers.get_all(header::CONTENT_ENCODING);
        let encoded = codings
            .iter()
            .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim());
        let (reader, streaming) = match media_type {
            Some(t) if t.eq_ignore_ascii_case("text/event-stream") => (
                Reader::Sse(
                    Scanner::with_max_event_bytes(limits.max_event_bytes).with_format(format),
                ),
                true,
            ),
            Some(t)
                if t.eq_ignore_ascii_case("application/json")
                    || t.to_ascii_lowercase().ends_with("+json") =>
            {
                let mut reader = JsonReader::new(limits.max_json_bytes).with_format(format);
                // The length of a compressed body says nothing of the JSON's.
                if let Some(len) = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .filter(|_| !encoded)
                {
                    reader.expect_len(len);
                }
                (Reader::Json(reader), false)
            }
            _ => return (Reader::Skip(ParseIssue::UnsupportedContentType), false),
        };
        if !encoded {
            return (reader, streaming);
        }
        #[cfg(feature = "decompress")]
        {
            let values = codings.iter().map(|value| value.as_bytes());
            if let Ok(Some(decoder)) =
                Decoder::for_content_encoding(values, limits.max_decoded_bytes)
            {
                let decoded = Decoded {
                    decoder,
                    inner: reader,
                    issue: None,
                };
                return (Reader::Decoded(Box::new(decoded)), streaming);
            }
        }
        (Reader::Skip(ParseIssue::ContentEncoded), streaming)
    }

    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Reader::Sse(scanner) => scanner.feed(bytes),
            Reader::Json(reader) => reader.feed(bytes),
            #[cfg(feature = "decompress")]
            Reader::Decoded(decoded) => decoded.feed(bytes),
            Reader::Skip(_) => {}
        }
    }

    fn finish(self, bytes_seen: u64, format: Option<Format>) -> BodyUsage {
        match self {
            Reader::Sse(scanner) => scanner.finish(),
            Reader::Json(reader) => reader.finish(),
            #[cfg(feature = "decompress")]
            Reader::Decoded(decoded) => decoded.finish(bytes_seen, format),
            Reader::Skip(issue) => {
                let mut body = BodyUsage {
                    format,
                    ..BodyUsage::default()
                };
                // An empty body (a HEAD or a 204) had nothing to read.
                if bytes_seen > 0 {
                    body.note_issue(issue);
                }
                body
            }
        }
    }
}

/// A compressed body's reader: the decoder, and the reader of what it decodes.
#[cfg(feature = "decompress")]
#[derive(Debug)]
struct Decoded {
    decoder: Decoder,
    inner: Reader,
    /// Why decoding stopped, if it did: nothing more is read.
    issue: Option<ParseIssue>,
}

#[cfg(feature = "decompress")]
impl Decoded {
    fn feed(&mut self, bytes: &[u8]) {
        let Decoded {
            decoder,
            inner,
            issue,
        } = self;
        if issue.is_none()
            && let Err(error) = decoder.feed(bytes, |plain| inner.feed(plain))
        {
            *issue = Some(decode_issue(&error));
        }
    }

    fn finish(self, bytes_seen: u64, format: Option<Format>) -> BodyUsage {
        let issue = match self.issue {
            Some(issue) => Some(issue),
            None => self
                .decoder
                .finish()
                .err()
                .map(|error| decode_issue(&error)),
        };
        let mut body = self.inner.finish(bytes_seen, format);
        if let Some(issue) = issue {
            // Decoding is the root cause of whatever the reader met after it stopped.
            body.issue = None;
            body.note_issue(issue);
        }
        body
    }
}

#[cfg(feature = "decompress")]
fn decode_issue(error: &DecodeError) -> ParseIssue {
    match error {
        DecodeError::OverCap { .. } => ParseIssue::OverCap,
        DecodeError::Corrupt { .. } | DecodeError::Truncated { .. } => ParseIssue::Undecodable,
    }
}

/// One request's record in the making; finishing it hands it to the sink, once.
#[derive(Debug)]
pub(crate) struct Recorder<K> {
    record: UsageRecord,
    started: Instant,
    settings: Arc<Settings>,
    /// No request id was given: one on the response may still be taken.
    generated_id: bool,
    reader: Reader,
    /// A frame could not be observed; what follows it is not read either.
    blind: bool,
    /// The outcome the response's extensions declare (for a response that is no success).
    declared: Option<Outcome>,
    sink: K,
}

impl<K: UsageSink> Recorder<K> {
    pub(crate) fn start<B>(request: &http::Request<B>, sink: K, settings: &Arc<Settings>) -> Self {
        let extensions = request.extensions();
        let given_id = extensions
            .get::<RequestId>()
            .cloned()
            .or_else(|| header_id(request.headers(), settings));
        let generated_id = given_id.is_none();
        let mut record = UsageRecord::new(given_id.unwrap_or_default(), chrono::Utc::now());
        record.format = extensions
            .get::<Format>()
            .copied()
            .or(settings.format)
            .or_else(|| Format::from_path(request.uri().path()));
        let mut recorder = Recorder {
            record,
            started: Instant::now(),
            settings: Arc::clone(settings),
            generated_id,
            reader: Reader::Skip(ParseIssue::UnsupportedContentType),
            blind: false,
            declared: None,
            sink,
        };
        recorder.take_labels(extensions);
        recorder
    }

    /// The record so far, for the layer's [`OnRequest`](crate::classify::OnRequest).
    pub(crate) fn record_mut(&mut self) -> &mut UsageRecord {
        &mut self.record
    }

    /// What the request's or the response's extensions say; what is there replaces what
    /// was known (labels are merged).
    fn take_labels(&mut self, extensions: &http::Extensions) {
        let record = &mut self.record;
        if let Some(caller) = extensions.get::<Caller>() {
            record.caller = caller.clone();
        }
        if let Some(provider) = extensions.get::<Provider>() {
            record.provider = Some(provider.clone());
        }
        if let Some(Region(region)) = extensions.get::<Region>() {
            record.region = Some(region.clone());
        }
        if let Some(RequestedModel(model)) = extensions.get::<RequestedModel>() {
            record.requested_model = Some(model.clone());
        }
        if let Some(fallback) = extensions.get::<Fallback>() {
            record.fallback = Some(fallback.clone());
        }
        if let Some(labels) = extensions.get::<Labels>() {
            record.labels.merge(labels);
        }
    }

    pub(crate) fn on_response<B>(&mut self, response: &Response<B>) {
        self.take_labels(response.extensions());
        let response_id = header_id(response.headers(), &self.settings);
        if self.generated_id {
            // Set by an inner `SetRequestId`, or propagated by `PropagateRequestId`.
            let id = response.extensions().get::<RequestId>().cloned();
            if let Some(id) = id.or(response_id) {
                self.record.request_id = id;
            }
        } else if let Some(id) = response_id.filter(|id| *id != self.record.request_id) {
            // An upstream's own id (OpenAI sends one): the record keeps the request's, and
            // names the other, which joins it with the upstream's logs.
            self.record.labels.insert(UPSTREAM_REQUEST_ID, id.as_str());
        }
        self.record.status = Some(response.status());
        self.declared = response
            .extensions()
            .get::<Outcome>()
            .copied()
            .filter(|_| !response.status().is_success());
        let (reader, streaming) =
            Reader::for_response(response.headers(), self.settings.limits, self.record.format);
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
            settings,
            reader,
            blind,
            declared,
            sink,
            ..
        } = self;
        let mut body = reader.finish(record.response_bytes, record.format);
        if blind {
            body.note_issue(ParseIssue::UnobservableFrame);
        }
        let status = record.status.unwrap_or(StatusCode::OK);
        record.outcome = declared.unwrap_or_else(|| outcome(end, status, record.streaming, &body));
        record.usage = body.billed_usage();
        record.bedrock_metrics = body.bedrock_metrics;
        record.served_model = body.model;
        record.format = body.format;
        record.error_type = body.error_type;
        record.stop_reason = body.stop_reason;
        record.parse_issue = body.issue;
        record.duration = started.elapsed();
        settings.diagnostics.review(&mut record);
        sink.record(record);
    }

    /// Ends a request that got no response (the inner service failed, or the caller left).
    pub(crate) fn finish_without_response(self, outcome: Outcome) {
        let Recorder {
            mut record,
            started,
            settings,
            sink,
            ..
        } = self;
        record.outcome = outcome;
        record.duration = started.elapsed();
        settings.diagnostics.review(&mut record);
        sink.record(record);
    }
}

/// The label that names a response's request id when it is not the record's.
pub(crate) const UPSTREAM_REQUEST_ID: &str = "upstream_request_id";

/// The request id a header carries, if the layer reads one and it is a valid id.
fn header_id(headers: &HeaderMap, settings: &Settings) -> Option<RequestId> {
    let name = settings.request_id_header.as_ref()?;
    RequestId::from_header(headers.get(name)?)
}

/// A recorder until it has finished: whoever drops it unfinished finishes it, as a
/// request whose client went away.
#[derive(Debug)]
pub(crate) struct Pending<K: UsageSink> {
    recorder: Option<Recorder<K>>,
    /// The response has come: a drop cuts its body short.
    responded: bool,
}

impl<K: UsageSink> Default for Pending<K> {
    /// Nothing to record (a request that is not metered).
    fn default() -> Self {
        Self {
            recorder: None,
            responded: false,
        }
    }
}

impl<K: UsageSink> Pending<K> {
    /// A request waiting for its response.
    pub(crate) fn without_response(recorder: Option<Recorder<K>>) -> Self {
        Self {
            recorder,
            responded: false,
        }
    }

    /// A request whose response body is on its way.
    pub(crate) fn of_body(recorder: Recorder<K>) -> Self {
        Self {
            recorder: Some(recorder),
            responded: true,
        }
    }

    pub(crate) fn take(&mut self) -> Option<Recorder<K>> {
        self.recorder.take()
    }

    pub(crate) fn get_mut(&mut self) -> Option<&mut Recorder<K>> {
        self.recorder.as_mut()
    }

    /// Finishes the body's record now, if it is not finished yet.
    pub(crate) fn finish(&mut self, end: End) {
        if let Some(recorder) = self.recorder.take() {
            recorder.finish(end);
        }
    }
}

impl<K: UsageSink> Drop for Pending<K> {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            if self.responded {
                recorder.finish(End::Dropped);
            } else {
                recorder.finish_without_response(Outcome::ClientDisconnected);
            }
        }
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
