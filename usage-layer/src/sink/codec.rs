//! A stable, versioned binary form of [`UsageRecord`]: the spool's frames and the JetStream
//! store's messages (feature `nats`). Other languages can read it from the layout below.
//!
//! Hand-written rather than derived: the bytes on disk must outlive code changes, so the
//! layout is spelled out here and nowhere else. Version 2, all integers little-endian:
//!
//! ```text
//! u8 version (2)
//! request_id        str                           (str = u32 length, UTF-8 bytes)
//! caller            opt str user, opt str key     (opt x = u8 0 | u8 1 x)
//! provider          opt str
//! region, requested_model, served_model           opt str
//! fallback          opt (str from, str reason)
//! labels            u32 count, count × (str key, str value), in key order
//! format            opt u8 tag
//! started_at        i64 seconds, u32 nanoseconds  (Unix time, UTC)
//! time_to_first_byte opt duration                 (duration = u64 seconds, u32 nanoseconds)
//! duration          duration
//! status            opt u16
//! streaming         u8 (0 | 1)
//! usage             9 × opt u64, in field order
//! bedrock_metrics   opt (6 × opt u64, in field order)
//! error_type, stop_reason                         opt str
//! response_bytes    u64
//! outcome           u8 tag
//! parse_issue       opt u8 tag
//! ```
//!
//! Version 1 (spools written before string ids, labels and formats) is still read: its
//! request id and caller ids are 16-byte UUIDs, its provider a plain `str`, it has no
//! labels and no format, and its usage has 8 counts (no `reasoning_tokens`).
//!
//! Encoding destructures the record, so a new field does not compile until it has a place
//! here (and a new version number).

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use uuid::Uuid;

use crate::anthropic::{BedrockMetrics, ParseIssue, Usage};
use crate::format::Format;
use crate::record::{Caller, Fallback, Labels, Outcome, Provider, RequestId, UsageRecord};

/// The version this code writes (the payload's first byte).
pub const VERSION: u8 = 2;
/// The first version, still decoded.
const VERSION_1: u8 = 1;

/// Why bytes did not decode into a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes ended before the record did.
    #[error("record truncated")]
    Truncated,
    /// A version this code does not know (written by a newer one).
    #[error("unknown record version {0}")]
    Version(u8),
    /// A field held a value no encoder writes.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes were left after the record.
    #[error("trailing bytes after the record")]
    Trailing,
}

/// Appends `record`'s encoding to `out`.
pub fn encode(record: &UsageRecord, out: &mut Vec<u8>) {
    let UsageRecord {
        request_id,
        caller,
        provider,
        region,
        requested_model,
        served_model,
        fallback,
        labels,
        format,
        started_at,
        time_to_first_byte,
        duration,
        status,
        streaming,
        usage,
        bedrock_metrics,
        error_type,
        stop_reason,
        response_bytes,
        outcome,
        parse_issue,
    } = record;
    let Caller {
        user_id,
        access_key_id,
    } = caller;
    let mut w = Writer(out);
    w.u8(VERSION);
    w.str(request_id.as_str());
    w.opt_str(user_id.as_deref());
    w.opt_str(access_key_id.as_deref());
    w.opt_str(provider.as_ref().map(Provider::as_str));
    for text in [region, requested_model, served_model] {
        w.opt_str(text.as_deref());
    }
    w.opt(fallback.as_ref(), |w, fallback| {
        w.str(fallback.from.as_str());
        w.str(&fallback.reason);
    });
    w.len(labels.len());
    for (key, value) in labels.iter() {
        w.str(key);
        w.str(value);
    }
    w.opt(format.as_ref(), |w, format| w.u8(format_tag(*format)));
    w.i64(started_at.timestamp());
    w.u32(started_at.timestamp_subsec_nanos());
    w.opt(time_to_first_byte.as_ref(), |w, d| w.duration(*d));
    w.duration(*duration);
    w.opt(status.as_ref(), |w, status| w.u16(status.as_u16()));
    w.u8(u8::from(*streaming));
    for count in usage_fields(usage) {
        w.opt_u64(count);
    }
    w.opt(bedrock_metrics.as_ref(), |w, metrics| {
        for count in metrics_fields(metrics) {
            w.opt_u64(count);
        }
    });
    w.opt_str(error_type.as_deref());
    w.opt_str(stop_reason.as_deref());
    w.u64(*response_bytes);
    w.u8(outcome_tag(*outcome));
    w.opt(parse_issue.as_ref(), |w, issue| w.u8(issue_tag(*issue)));
}

/// Decodes one record that fills `bytes` exactly (of this version or version 1).
pub fn decode(bytes: &[u8]) -> Result<UsageRecord, DecodeError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    let v1 = match version {
        VERSION => false,
        VERSION_1 => true,
        other => return Err(DecodeError::Version(other)),
    };
    let uuid_text = |r: &mut Reader<'_>| r.uuid().map(|id| RequestId::from(id).as_str().to_owned());
    let (request_id, caller, provider) = if v1 {
        let request_id = RequestId::from(r.uuid()?);
        let caller = Caller {
            user_id: r.opt(uuid_text)?,
            access_key_id: r.opt(uuid_text)?,
        };
        (request_id, caller, Some(Provider::new(r.string()?)))
    } else {
        let request_id =
            RequestId::parse(&r.string()?).ok_or(DecodeError::Invalid("request id"))?;
        let caller = Caller {
            user_id: r.opt(Reader::string)?,
            access_key_id: r.opt(Reader::string)?,
        };
        (
            request_id,
            caller,
            r.opt(Reader::string)?.map(Provider::new),
        )
    };
    let region = r.opt(Reader::string)?;
    let requested_model = r.opt(Reader::string)?;
    let served_model = r.opt(Reader::string)?;
    let fallback = r.opt(|r| {
        Ok(Fallback {
            from: Provider::new(r.string()?),
            reason: Cow::Owned(r.string()?),
        })
    })?;
    let (labels, format) = if v1 {
        (Labels::default(), None)
    } else {
        let count = r.u32()?;
        let labels = (0..count)
            .map(|_| Ok((r.string()?, r.string()?)))
            .collect::<Result<Labels, DecodeError>>()?;
        (labels, r.opt(|r| format_from(r.u8()?))?)
    };
    let (seconds, nanos) = (r.i64()?, r.u32()?);
    let started_at =
        DateTime::<Utc>::from_timestamp(seconds, nanos).ok_or(DecodeError::Invalid("timestamp"))?;
    let time_to_first_byte = r.opt(Reader::duration)?;
    let duration = r.duration()?;
    let status =
        r.opt(|r| StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError::Invalid("status")))?;
    let streaming = r.bool()?;
    let usage = Usage {
        input_tokens: r.opt_u64()?,
        output_tokens: r.opt_u64()?,
        cache_creation_input_tokens: r.opt_u64()?,
        cache_read_input_tokens: r.opt_u64()?,
        ephemeral_5m_input_tokens: r.opt_u64()?,
        ephemeral_1h_input_tokens: r.opt_u64()?,
        web_search_requests: r.opt_u64()?,
        web_fetch_requests: r.opt_u64()?,
        reasoning_tokens: if v1 { None } else { r.opt_u64()? },
    };
    let bedrock_metrics = r.opt(|r| {
        Ok(BedrockMetrics {
            input_token_count: r.opt_u64()?,
            output_token_count: r.opt_u64()?,
            cache_read_input_token_count: r.opt_u64()?,
            cache_write_input_token_count: r.opt_u64()?,
            invocation_latency: r.opt_u64()?,
            first_byte_latency: r.opt_u64()?,
        })
    })?;
    let error_type = r.opt(Reader::string)?;
    let stop_reason = r.opt(Reader::string)?;
    let response_bytes = r.u64()?;
    let outcome = outcome_from(r.u8()?)?;
    let parse_issue = r.opt(|r| issue_from(r.u8()?))?;
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(UsageRecord {
        request_id,
        caller,
        provider,
        region,
        requested_model,
        served_model,
        fallback,
        labels,
        format,
        started_at,
        time_to_first_byte,
        duration,
        status,
        streaming,
        usage,
        bedrock_metrics,
        error_type,
        stop_reason,
        response_bytes,
        outcome,
        parse_issue,
    })
}

fn usage_fields(usage: &Usage) -> [Option<u64>; 9] {
    let Usage {
        input_tokens,
        output_tokens,
        cache_creation_input_tokens,
        cache_read_input_tokens,
        ephemeral_5m_input_tokens,
        ephemeral_1h_input_tokens,
        web_search_requests,
        web_fetch_requests,
        reasoning_tokens,
    } = *usage;
    [
        input_tokens,
        output_tokens,
        cache_creation_input_tokens,
        cache_read_input_tokens,
        ephemeral_5m_input_tokens,
        ephemeral_1h_input_tokens,
        web_search_requests,
        web_fetch_requests,
        reasoning_tokens,
    ]
}

fn metrics_fields(metrics: &BedrockMetrics) -> [Option<u64>; 6] {
    let BedrockMetrics {
        input_token_count,
        output_token_count,
        cache_read_input_token_count,
        cache_write_input_token_count,
        invocation_latency,
        first_byte_latency,
    } = *metrics;
    [
        input_token_count,
        output_token_count,
        cache_read_input_token_count,
        cache_write_input_token_count,
        invocation_latency,
        first_byte_latency,
    ]
}

// Tags are part of the format: never renumber, only add.
const OUTCOMES: [Outcome; 8] = [
    Outcome::Completed,
    Outcome::ClientDisconnected,
    Outcome::UpstreamError,
    Outcome::StreamError,
    Outcome::ErrorResponse,
    Outcome::ServiceError,
    Outcome::Unparsed,
    Outcome::Timeout,
];

fn outcome_tag(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Completed => 0,
        Outcome::ClientDisconnected => 1,
        Outcome::UpstreamError => 2,
        Outcome::StreamError => 3,
        Outcome::ErrorResponse => 4,
        Outcome::ServiceError => 5,
        Outcome::Unparsed => 6,
        Outcome::Timeout => 7,
    }
}

fn outcome_from(tag: u8) -> Result<Outcome, DecodeError> {
    OUTCOMES
        .into_iter()
        .find(|outcome| outcome_tag(*outcome) == tag)
        .ok_or(DecodeError::Invalid("outcome"))
}

const ISSUES: [ParseIssue; 6] = [
    ParseIssue::ContentEncoded,
    ParseIssue::UnsupportedContentType,
    ParseIssue::OverCap,
    ParseIssue::Malformed,
    ParseIssue::UnobservableFrame,
    ParseIssue::Undecodable,
];

fn issue_tag(issue: ParseIssue) -> u8 {
    match issue {
        ParseIssue::ContentEncoded => 0,
        ParseIssue::UnsupportedContentType => 1,
        ParseIssue::OverCap => 2,
        ParseIssue::Malformed => 3,
        ParseIssue::UnobservableFrame => 4,
        ParseIssue::Undecodable => 5,
    }
}

fn issue_from(tag: u8) -> Result<ParseIssue, DecodeError> {
    ISSUES
        .into_iter()
        .find(|issue| issue_tag(*issue) == tag)
        .ok_or(DecodeError::Invalid("parse issue"))
}

fn format_tag(format: Format) -> u8 {
    match format {
        Format::Anthropic => 0,
        Format::OpenAiChat => 1,
        Format::OpenAiResponses => 2,
    }
}

fn format_from(tag: u8) -> Result<Format, DecodeError> {
    Format::ALL
        .into_iter()
        .find(|format| format_tag(*format) == tag)
        .ok_or(DecodeError::Invalid("format"))
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    fn duration(&mut self, duration: Duration) {
        self.u64(duration.as_secs());
        self.u32(duration.subsec_nanos());
    }

    fn str(&mut self, text: &str) {
        // Strings come from headers and bodies the layer bounds; 4 GiB cannot occur.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(&text.as_bytes()[..len as usize]);
    }

    fn opt<T: ?Sized>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
        }
    }

    fn opt_str(&mut self, text: Option<&str>) {
        self.opt(text, |w, text| w.str(text));
    }

    fn opt_u64(&mut self, value: Option<u64>) {
        self.opt(value.as_ref(), |w, value| w.u64(*value));
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("flag")),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.take().map(i64::from_le_bytes)
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        self.take().map(Uuid::from_bytes)
    }

    fn duration(&mut self) -> Result<Duration, DecodeError> {
        let seconds = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::Invalid("duration"));
        }
        Ok(Duration::new(seconds, nanos))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|_| DecodeError::Invalid("string"))
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        self.opt(Reader::u64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        // Mostly short ASCII, sometimes any Unicode (multi-byte lengths).
        prop_oneof![3 => "[a-z0-9._-]{0,24}", 1 => any::<String>()]
    }

    fn counts() -> impl Strategy<Value = Option<u64>> {
        prop_oneof![Just(None), Just(Some(0)), any::<u64>().prop_map(Some)]
    }

    fn duration() -> impl Strategy<Value = Duration> {
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n))
    }

    fn a_provider() -> impl Strategy<Value = Provider> {
        prop_oneof![
            Just(Provider::PLAN),
            Just(Provider::BEDROCK),
            text().prop_map(Provider::new),
        ]
    }

    fn a_request_id() -> impl Strategy<Value = RequestId> {
        prop_oneof![
            any::<u128>().prop_map(|id| RequestId::from(Uuid::from_u128(id))),
            "[!-~]{1,200}".prop_map(|id| RequestId::parse(&id).expect("valid")),
        ]
    }

    /// Any record: every field, `None` and `Some`, every enum variant.
    pub(crate) fn any_record() -> impl Strategy<Value = UsageRecord> {
        let ids = (
            a_request_id(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(a_provider()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of((a_provider(), text())),
        );
        let timing = (
            // chrono's whole range of seconds, any nanosecond.
            DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            0..1_000_000_000u32,
            proptest::option::of(duration()),
            duration(),
            proptest::option::of(100..1000u16),
            any::<bool>(),
        );
        let usage = (
            proptest::array::uniform9(counts()),
            proptest::option::of(proptest::array::uniform6(counts())),
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<u64>(),
            proptest::sample::select(OUTCOMES.to_vec()),
            proptest::option::of(proptest::sample::select(ISSUES.to_vec())),
        );
        let labels = (
            proptest::collection::btree_map(text(), text(), 0..4),
            proptest::option::of(proptest::sample::select(Format::ALL.to_vec())),
        );
        (ids, timing, usage, labels).prop_map(|(ids, timing, usage, (labels, format))| {
            let (id, user, key, provider, region, requested, served, fallback) = ids;
            let (seconds, nanos, ttfb, duration, status, streaming) = timing;
            let (u, metrics, error_type, stop_reason, response_bytes, outcome, issue) = usage;
            let started_at = DateTime::from_timestamp(seconds, nanos).expect("in range");
            let mut record = UsageRecord::new(id, started_at);
            record.caller = Caller {
                user_id: user,
                access_key_id: key,
            };
            record.labels = labels.into_iter().collect();
            record.format = format;
            record.provider = provider;
            record.region = region;
            record.requested_model = requested;
            record.served_model = served;
            record.fallback = fallback.map(|(from, reason)| Fallback {
                from,
                reason: Cow::Owned(reason),
            });
            record.time_to_first_byte = ttfb;
            record.duration = duration;
            record.status = status.map(|code| StatusCode::from_u16(code).expect("valid"));
            record.streaming = streaming;
            record.usage = Usage {
                input_tokens: u[0],
                output_tokens: u[1],
                cache_creation_input_tokens: u[2],
                cache_read_input_tokens: u[3],
                ephemeral_5m_input_tokens: u[4],
                ephemeral_1h_input_tokens: u[5],
                web_search_requests: u[6],
                web_fetch_requests: u[7],
                reasoning_tokens: u[8],
            };
            record.bedrock_metrics = metrics.map(|m| BedrockMetrics {
                input_token_count: m[0],
                output_token_count: m[1],
                cache_read_input_token_count: m[2],
                cache_write_input_token_count: m[3],
                invocation_latency: m[4],
                first_byte_latency: m[5],
            });
            record.error_type = error_type;
            record.stop_reason = stop_reason;
            record.response_bytes = response_bytes;
            record.outcome = outcome;
            record.parse_issue = issue;
            record
        })
    }

    proptest! {
        #[test]
        fn every_record_round_trips_exactly(record in any_record()) {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            prop_assert_eq!(decode(&bytes), Ok(record));
        }

        #[test]
        fn a_cut_record_is_an_error_not_a_panic(record in any_record(), cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn every_tag_is_distinct() {
        for (i, outcome) in OUTCOMES.into_iter().enumerate() {
            assert_eq!(outcome_from(outcome_tag(outcome)), Ok(outcome), "{i}");
        }
        for issue in ISSUES {
            assert_eq!(issue_from(issue_tag(issue)), Ok(issue));
        }
        assert_eq!(outcome_from(8), Err(DecodeError::Invalid("outcome")));
    }

    #[test]
    fn trailing_bytes_and_unknown_versions_are_refused() {
        let record = UsageRecord::new(RequestId::new(), Utc::now());
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(DecodeError::Trailing));
        bytes[0] = 3;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(3)));
    }

    /// A record as version 1 wrote it (the layout of the spools that code left).
    fn version_1(id: Uuid, user: Uuid, started_at: DateTime<Utc>) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = Writer(&mut bytes);
        w.u8(VERSION_1);
        w.0.extend_from_slice(id.as_bytes());
        w.u8(1);
        w.0.extend_from_slice(user.as_bytes());
        w.u8(0);
        w.str("plan");
        w.opt_str(None);
        w.opt_str(Some("claude-sonnet-4-5"));
        w.opt_str(None);
        w.u8(0);
        w.i64(started_at.timestamp());
        w.u32(started_at.timestamp_subsec_nanos());
        w.u8(0);
        w.duration(Duration::from_millis(1500));
        w.opt(Some(&200), |w, status| w.u16(*status));
        w.u8(1);
        for count in [Some(25), Some(8), None, Some(0), None, None, None, None] {
            w.opt_u64(count);
        }
        w.u8(0);
        w.opt_str(None);
        w.opt_str(Some("end_turn"));
        w.u64(1234);
        w.u8(outcome_tag(Outcome::Completed));
        w.u8(0);
        bytes
    }

    #[test]
    fn version_1_records_are_still_read() {
        let (id, user) = (Uuid::now_v7(), Uuid::now_v7());
        let started_at = DateTime::from_timestamp(1_764_000_000, 5).unwrap();
        let record = decode(&version_1(id, user, started_at)).unwrap();
        assert_eq!(record.request_id, RequestId::from(id));
        assert_eq!(record.caller, Caller::user(user));
        assert_eq!(record.provider, Some(Provider::PLAN));
        assert_eq!(record.requested_model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(record.started_at, started_at);
        assert_eq!(record.usage.input_tokens, Some(25));
        assert_eq!(record.usage.output_tokens, Some(8));
        assert_eq!(record.usage.cache_read_input_tokens, Some(0));
        assert_eq!(record.usage.reasoning_tokens, None);
        assert_eq!(record.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(record.response_bytes, 1234);
        assert!(record.labels.is_empty() && record.format.is_none());
        // And written again, it is a version 2 record of the same content.
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode(&bytes), Ok(record));
    }
}
