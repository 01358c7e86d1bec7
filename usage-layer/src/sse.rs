//! A sans-IO scanner for the server-sent events of LLM APIs.
//!
//! [`Scanner`] takes the bytes of an SSE stream in whatever pieces they arrive
//! ([`Scanner::feed`]) and reports the message's usage at the end ([`Scanner::finish`]).
//! It reads Anthropic's Messages streams and OpenAI's Chat Completions and Responses
//! streams (see [`Format`]): the format given, or the one the stream shows.
//! It knows nothing of bodies, futures or I/O, so the same code serves the tower layer,
//! the command-line example, the fuzzer and the benchmarks.
//!
//! It follows the line rules of the SSE specification (LF, CR or CRLF line ends, also a
//! CR/LF pair split across two pieces; a UTF-8 BOM at the very start; `:` comments;
//! `data:` with or without the space; several `data` lines joined with `\n`; unknown
//! fields ignored), and any split of the same bytes gives the same result.
//!
//! Only the data of the events the usage depends on is buffered and parsed —
//! `message_start`, `message_delta`, `message_stop` and `error` (Anthropic),
//! `response.created`, `response.completed`, `response.incomplete`, `response.failed`
//! (Responses). Every other event's data — nearly all of a stream — is skipped in place,
//! without copying, also when a line spans pieces. When a stream has no `event:` lines,
//! the `"type"` at the start of the data decides (only a short prefix is looked at).
//! Chat Completions chunks have neither: their data is buffered, but parsed only when it
//! carries a non-null `usage`, `finish_reason` or `error` (or is the first chunk, for the
//! model); `data: [DONE]` ends the stream. Buffering is capped ([`Scanner::with_max_event_bytes`]): an
//! event over the cap is dropped and the result carries [`ParseIssue::OverCap`].
//!
//! ```
//! use usage_layer::sse::Scanner;
//!
//! let stream = b"event: message_start\r\n\
//! data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\
//! \"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
//! event: content_block_delta\r\n\
//! data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n\
//! event: message_delta\r\n\
//! data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":8}}\r\n\r\n";
//!
//! let mut scanner = Scanner::new();
//! for piece in stream.chunks(7) {
//!     scanner.feed(piece);
//! }
//! let body = scanner.finish();
//! assert_eq!(body.usage.input_tokens, Some(25));
//! assert_eq!(body.usage.output_tokens, Some(8));
//! assert_eq!(body.model.as_deref(), Some("claude-sonnet-4-5"));
//! ```
//!
//! [`ParseIssue::OverCap`]: crate::anthropic::ParseIssue::OverCap

use memchr::{memchr, memchr2, memmem};

use crate::anthropic::{BodyUsage, EventKind, ParseIssue};
use crate::buffer::append_bounded;
use crate::format::Format;

/// The default cap on the bytes one event may buffer: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
/// The longest field name we read (`event`); longer names are unknown fields.
const NAME_CAP: usize = 5;
/// The longest event name we read (`response.in_progress`, padded); longer names are
/// other events.
const EVENT_NAME_CAP: usize = 24;
/// How much of an unnamed event's data is looked at for its `"type"`.
const SNIFF_LIMIT: usize = 64;

/// Where the scanner is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Nothing of the line seen yet.
    Start,
    /// Inside the field name; the bytes so far are in `name`.
    Name,
    /// Inside the value of `field`; `fresh` while its optional leading space is pending.
    Value { field: Field, fresh: bool },
    /// A comment or a field we do not read: skip to the end of the line.
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Event,
    Data,
}

/// What happens to the current event's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Data {
    /// No `data` line yet.
    None,
    /// Buffered, to be parsed at dispatch.
    Keep,
    /// Buffered while the `"type"` at its start is not known yet (no event name).
    Sniff,
    /// Not needed: skipped without copying.
    Skip,
    /// Over the cap: dropped.
    Dropped,
}

/// A fixed-size buffer for short tokens (field and event names); longer input marks it overflowed.
#[derive(Clone, Copy, Debug)]
struct Short<const N: usize> {
    bytes: [u8; N],
    /// `N + 1` once overflowed.
    len: usize,
}

impl<const N: usize> Short<N> {
    const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// Empties the token; the bytes stay, unread (no copy of the whole array).
    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, piece: &[u8]) {
        match self.bytes.get_mut(self.len..self.len + piece.len()) {
            Some(room) => {
                room.copy_from_slice(piece);
                self.len += piece.len();
            }
            None => self.len = N + 1,
        }
    }

    /// The token, or `None` if it overflowed.
    fn get(&self) -> Option<&[u8]> {
        self.bytes.get(..self.len)
    }
}

/// Finds the next line end (CR or LF). On x86-64 with AVX2 it keeps `memchr`'s AVX2
/// searcher, built once per scanner: `memchr2` would pick it through an indirect call and
/// splat the two bytes into vectors again on every line, which costs as much as the search
/// itself on lines of ~100 bytes. Elsewhere it is `memchr2`.
#[derive(Clone, Copy, Debug)]
struct LineEnds {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::Two>,
}

impl LineEnds {
    fn new() -> Self {
        Self {
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::Two::new(b'\n', b'\r'),
        }
    }

    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = &self.avx2 {
            return avx2.find(haystack);
        }
        memchr2(b'\n', b'\r', haystack)
    }
}

/// A sans-IO SSE scanner that accumulates usage; see the [module docs](self).
#[derive(Debug)]
pub struct Scanner {
    line_ends: LineEnds,
    max_event_bytes: usize,
    /// BOM bytes matched at the very start; `None` once past the start.
    bom_matched: Option<usize>,
    /// The last piece ended with CR: a LF at the start of the next one belongs to it.
    after_cr: bool,
    line: Line,
    name: Short<NAME_CAP>,
    event_name: Short<EVENT_NAME_CAP>,
    /// The kind named by the current event's `event:` line, if it had one.
    named: Option<EventKind>,
    data_mode: Data,
    data: Vec<u8>,
    out: BodyUsage,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner with the default cap ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// Reads the stream as `format` instead of recognising its format from its events.
    pub fn with_format(mut self, format: Option<Format>) -> Self {
        self.out.format = format;
        self
    }

    /// A scanner that buffers at most `max` bytes of one event's data.
    pub fn with_max_event_bytes(max: usize) -> Self {
        Self {
            line_ends: LineEnds::new(),
            max_event_bytes: max,
            bom_matched: Some(0),
            after_cr: false,
            line: Line::Start,
            name: Short::EMPTY,
            event_name: Short::EMPTY,
            named: None,
            data_mode: Data::None,
            data: Vec::new(),
            out: BodyUsage::default(),
        }
    }

    /// The bytes currently held for the event being read (never more than the cap).
    pub fn buffered_bytes(&self) -> usize {
        self.data.capacity()
    }

    /// What has been read so far (events dispatched so far only).
    pub fn usage(&self) -> &BodyUsage {
        &self.out
    }

    /// Scans the next piece of the stream.
    pub fn feed(&mut self, input: &[u8]) {
        let mut input = match self.bom_matched {
            None => input,
            Some(_) => self.skip_bom(input),
        };
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        loop {
            let end = match input.first() {
                None => return,
                // A blank line (most often): no need to search.
                Some(b'\n' | b'\r') => 0,
                Some(_) => match self.line_ends.find(input) {
                    Some(end) => end,
                    None => break,
                },
            };
            let line = &input[..end];
            if self.line == Line::Start {
                self.whole_line(line);
            } else {
                self.line_part(line);
                self.end_line();
            }
            let rest = &input[end + 1..];
            input = match (input[end], rest.first()) {
                (b'\r', Some(b'\n')) => &rest[1..],
                (b'\r', None) => {
                    self.after_cr = true;
                    rest
                }
                _ => rest,
            };
        }
        self.line_part(input);
    }

    /// Ends the stream and returns what it reported.
    ///
    /// A last line without its line end, and a last event without its blank line, still
    /// count: their tokens were billed. (A line cut in the middle is no valid JSON and
    /// is counted as malformed, never misread.)
    pub fn finish(mut self) -> BodyUsage {
        if let Some(matched) = self.bom_matched.take() {
            // A stream shorter than the BOM that began like one.
            self.feed(&BOM[..matched]);
        }
        if self.line != Line::Start {
            self.end_line();
        }
        self.dispatch();
        self.out
    }

    /// Strips a UTF-8 BOM at the very start, also when it arrives split.
    fn skip_bom<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let Some(before) = self.bom_matched else {
            return input;
        };
        let mut matched = before;
        let mut taken = 0;
        while matched < BOM.len() && taken < input.len() && input[taken] == BOM[matched] {
            matched += 1;
            taken += 1;
        }
        if matched == BOM.len() {
            self.bom_matched = None;
            &input[taken..]
        } else if taken == input.len() {
            self.bom_matched = Some(matched);
            &[]
        } else {
            // Not a BOM after all: what looked like one is data.
            self.bom_matched = None;
            self.feed(&BOM[..before]);
            input
        }
    }

    /// Takes a line that is whole in one piece — nearly every line of a stream — without
    /// the state machine that [`line_part`](Self::line_part) and
    /// [`end_line`](Self::end_line) need for lines cut across pieces; the result is the
    /// same as theirs.
    fn whole_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
        } else if let Some(value) = line.strip_prefix(b"data:") {
            self.begin_value(Field::Data);
            if let Some(value) = field_value(value) {
                self.data_value(value);
            }
        } else if let Some(value) = line.strip_prefix(b"event:") {
            self.named = named(field_value(value).unwrap_or_default());
        } else {
            self.line_part(line);
            self.end_line();
        }
    }

    /// Takes the next part of the current line (up to its end or the end of the piece).
    fn line_part(&mut self, mut part: &[u8]) {
        loop {
            match self.line {
                Line::Start => {
                    // The two fields we read, when their name is whole in this part.
                    let known = if part.starts_with(b"data:") {
                        Some((Field::Data, 5))
                    } else if part.starts_with(b"event:") {
                        Some((Field::Event, 6))
                    } else {
                        None
                    };
                    if let Some((field, name_len)) = known {
                        part = &part[name_len..];
                        self.begin_value(field);
                        self.line = Line::Value { field, fresh: true };
                        continue;
                    }
                    match part.first() {
                        None => return,
                        Some(b':') => {
                            self.line = Line::Ignore;
                            return;
                        }
                        Some(_) => {}
                    }
                    self.name.clear();
                    self.line = Line::Name;
                }
                Line::Name => {
                    let room = NAME_CAP.saturating_sub(self.name.len);
                    match memchr(b':', &part[..part.len().min(room + 1)]) {
                        Some(colon) => {
                            self.name.push(&part[..colon]);
                            part = &part[colon + 1..];
                            self.line = match self.field() {
                                Some(field) => {
                                    self.begin_value(field);
                                    Line::Value { field, fresh: true }
                                }
                                None => Line::Ignore,
                            };
                        }
                        // Longer than any field we read.
                        None if part.len() > room => {
                            self.line = Line::Ignore;
                            return;
                        }
                        None => {
                            self.name.push(part);
                            return;
                        }
                    }
                }
                Line::Value { field, fresh } => {
                    if fresh {
                        match part.first() {
                            None => return,
                            Some(b' ') => part = &part[1..],
                            Some(_) => {}
                        }
                        self.line = Line::Value {
                            field,
                            fresh: false,
                        };
                    }
                    self.value(field, part);
                    return;
                }
                Line::Ignore => return,
            }
        }
    }

    fn field(&self) -> Option<Field> {
        match self.name.get()? {
            b"event" => Some(Field::Event),
            b"data" => Some(Field::Data),
            _ => None,
        }
    }

    fn end_line(&mut self) {
        match self.line {
            Line::Start => self.dispatch(),
            // A field name alone: the field with an empty value.
            Line::Name => {
                if let Some(field) = self.field() {
                    self.begin_value(field);
                    self.end_value(field);
                }
            }
            Line::Value { field, .. } => self.end_value(field),
            Line::Ignore => {}
        }
        self.line = Line::Start;
    }

    fn begin_value(&mut self, field: Field) {
        match field {
            Field::Event => self.event_name.clear(),
            Field::Data => match self.data_mode {
                Data::None => {
                    self.data_mode = match self.named {
                        Some(kind) if kind.is_read() => Data::Keep,
                        Some(_) => Data::Skip,
                        None => Data::Sniff,
                    }
                }
                Data::Keep | Data::Sniff => self.push_data(b"\n"),
                Data::Skip | Data::Dropped => {}
            },
        }
    }

    fn value(&mut self, field: Field, part: &[u8]) {
        match field {
            Field::Event => self.event_name.push(part),
            Field::Data => self.data_value(part),
        }
    }

    /// Part of a `data` value: kept, sniffed, or (nearly always) skipped in place.
    #[inline]
    fn data_value(&mut self, part: &[u8]) {
        match self.data_mode {
            Data::Keep | Data::Sniff => self.buffer_data(part),
            Data::None | Data::Skip | Data::Dropped => {}
        }
    }

    /// The rare half of [`data_value`](Self::data_value), out of line so that skipping
    /// stays a compare and a branch.
    #[inline(never)]
    fn buffer_data(&mut self, mut part: &[u8]) {
        if self.data_mode == Data::Sniff {
            // Only the first `SNIFF_LIMIT` bytes (or the cap, if smaller) decide, so where
            // the pieces are cut cannot change the decision, and data that turns out to
            // be skipped is never buffered past them.
            let room = SNIFF_LIMIT.min(self.max_event_bytes);
            let room = room.saturating_sub(self.data.len()).min(part.len());
            let (head, rest) = part.split_at(room);
            self.push_data(head);
            self.sniff();
            if self.data_mode == Data::Sniff && !rest.is_empty() {
                // The cap is reached and the type is still not known.
                self.drop_data();
            }
            part = rest;
        }
        if self.data_mode == Data::Keep && !part.is_empty() {
            self.push_data(part);
        }
    }

    fn end_value(&mut self, field: Field) {
        if field == Field::Event {
            self.named = match self.event_name.get() {
                Some(name) => named(name),
                None => Some(EventKind::Other),
            };
        }
    }

    fn push_data(&mut self, part: &[u8]) {
        if !append_bounded(&mut self.data, part, self.max_event_bytes) {
            self.drop_data();
        }
    }

    /// The event's data is over the cap: free it and skip the rest.
    fn drop_data(&mut self) {
        self.data_mode = Data::Dropped;
        self.data = Vec::new();
    }

    /// Decides an unnamed event from the `"type"` its data starts with, once that is known.
    fn sniff(&mut self) {
        self.data_mode = match sniff_type(&self.data) {
            Sniffed::Type(name) if !EventKind::from_name(name).is_read() => {
                self.data.clear();
                Data::Skip
            }
            Sniffed::Type(_) | Sniffed::Unknown => Data::Keep,
            Sniffed::NeedMore if self.data.len() >= SNIFF_LIMIT => Data::Keep,
            Sniffed::NeedMore => Data::Sniff,
        };
    }

    /// Dispatches the current event (a blank line, or the end of the stream).
    #[inline]
    fn dispatch(&mut self) {
        let mode = std::mem::replace(&mut self.data_mode, Data::None);
        let named = self.named.take();
        match mode {
            Data::None => {}
            // Nearly every event: nothing was kept, so there is nothing to do.
            Data::Skip => self.out.stats.events += 1,
            Data::Keep | Data::Sniff | Data::Dropped => self.dispatch_kept(mode, named),
        }
    }

    /// The rare half of [`dispatch`](Self::dispatch), out of line so that dispatching a
    /// skipped event stays a few instructions.
    #[inline(never)]
    fn dispatch_kept(&mut self, mode: Data, named: Option<EventKind>) {
        self.out.stats.events += 1;
        match mode {
            Data::Keep | Data::Sniff if named.is_none() && self.data == b"[DONE]" => {
                self.out.chat_done();
            }
            Data::Keep | Data::Sniff if named.is_none() && self.is_idle_chat_chunk() => {}
            Data::Keep | Data::Sniff => {
                if self.out.apply_json(&self.data, named, false).is_err() {
                    self.out.note_issue(ParseIssue::Malformed);
                }
            }
            Data::Dropped => self.out.note_issue(ParseIssue::OverCap),
            Data::None | Data::Skip => {}
        }
        self.data.clear();
    }
}

impl Scanner {
    /// A Chat Completions chunk that changes nothing we keep: neither the first (which
    /// gives the model) nor one with a `usage`, `finish_reason` or `error` that is not
    /// `null`. Most chunks are text deltas, and this spares parsing them.
    fn is_idle_chat_chunk(&self) -> bool {
        self.out.format == Some(Format::OpenAiChat)
            && self.out.model.is_some()
            && ![&b"\"usage\""[..], b"\"finish_reason\"", b"\"error\""]
                .into_iter()
                .any(|key| has_non_null_value(&self.data, key))
    }
}

/// Whether `json` has `key` (quoted) followed by `:` and a value other than `null`.
///
/// Inside a JSON string every `"` is escaped, so an unescaped `"key"` is a key (or a
/// string value equal to it, which only makes this answer `true`: a needless parse).
fn has_non_null_value(json: &[u8], key: &[u8]) -> bool {
    let trim = |bytes: &[u8]| -> usize {
        bytes
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count()
    };
    memmem::find_iter(json, key).any(|at| {
        let rest = &json[at + key.len()..];
        let rest = &rest[trim(rest)..];
        match rest.strip_prefix(b":") {
            Some(value) => !value[trim(value)..].starts_with(b"null"),
            None => false,
        }
    })
}

/// The kind an `event:` line names; an empty name names none (the spec's default, "message").
fn named(name: &[u8]) -> Option<EventKind> {
    (!name.is_empty()).then(|| EventKind::from_name(name))
}

/// A field's value after the colon, without its optional leading space; `None` when
/// nothing follows the colon (a value part that is never seen, as in `line_part`).
fn field_value(after_colon: &[u8]) -> Option<&[u8]> {
    match after_colon.first() {
        None => None,
        Some(b' ') => Some(&after_colon[1..]),
        Some(_) => Some(after_colon),
    }
}

enum Sniffed<'a> {
    Type(&'a [u8]),
    /// The data does not start with a plain `"type"` key: parse it whole.
    Unknown,
    NeedMore,
}

/// Reads `{"type":"NAME"` (with any JSON white space) at the start of `data`.
fn sniff_type(data: &[u8]) -> Sniffed<'_> {
    let mut at = 0;
    for token in [&b"{"[..], b"\"type\"", b":", b"\""] {
        while data
            .get(at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            at += 1;
        }
        let rest = &data[at.min(data.len())..];
        let n = rest.len().min(token.len());
        if rest[..n] != token[..n] {
            return Sniffed::Unknown;
        }
        if n < token.len() {
            return Sniffed::NeedMore;
        }
        at += token.len();
    }
    match memchr(b'"', &data[at..]) {
        Some(len) if !data[at..at + len].contains(&b'\\') => Sniffed::Type(&data[at..at + len]),
        Some(_) => Sniffed::Unknown,
        None => Sniffed::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_pieces(pieces: &[&[u8]]) -> BodyUsage {
        let mut scanner = Scanner::new();
        for piece in pieces {
            scanner.feed(piece);
        }
        scanner.finish()
    }

    const START: &str = r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":11,"output_tokens":1}}}"#;
    const DELTA: &str = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}"#;

    #[test]
    fn cr_lf_split_across_pieces_is_one_line_end() {
        let text = format!(
            "event: message_start\r\ndata: {START}\r\n\r\nevent: message_delta\r\ndata: {DELTA}\r\n\r\n"
        );
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let body = scan_pieces(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(body.usage.output_tokens, Some(6), "cut at {cut}");
            assert_eq!(body.stats.events, 2, "cut at {cut}");
        }
    }

    #[test]
    fn line_ends_are_found_alike_with_and_without_avx2() {
        let fallback = LineEnds {
            #[cfg(target_arch = "x86_64")]
            avx2: None,
        };
        let text: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        for len in 0..text.len() {
            for end in [None, Some(b'\n'), Some(b'\r')] {
                let mut haystack = text[..len].to_vec();
                if let Some(end) = end {
                    haystack.extend_from_slice(&[end, b'x', b'\n']);
                }
                let expected = end.map(|_| len);
                assert_eq!(LineEnds::new().find(&haystack), expected, "{len} {end:?}");
                assert_eq!(fallback.find(&haystack), expected, "{len} {end:?}");
            }
        }
    }

    #[test]
    fn whole_lines_read_as_lines_cut_into_bytes() {
        // Every line whole in one piece (the fast path) against one byte per piece (every
        // line through the state machine), on the corner cases of field syntax.
        let streams = [
            format!("event:\ndata: {START}\n\n"),
            format!("event: \ndata:{START}\n\n"),
            format!("event:message_start\ndata:\ndata: {START}\n\n"),
            format!("event: message_start\ndata: \ndata:{START}\n\n"),
            format!("event: ping\nevent: message_start\ndata: {START}\n\n"),
            format!("event\ndata\n\nevent: message_delta\ndata: {DELTA}\n\n"),
            format!("eventx: message_start\ndata: {START}\n\n:c\nid: 1\ndata:  {DELTA}\n\n"),
            format!("event: a-very-long-event-name-indeed\ndata: {START}\n\n"),
            format!("data:\ndata: {{\"type\"\ndata: :\"message_start\"}}\n\ndata: {DELTA}\n\n"),
            format!("data: {{\"type\":\"ping\"}}\ndata: {DELTA}\n\ndata:\n\n"),
        ];
        for stream in &streams {
            let bytes = stream.as_bytes();
            let whole = scan_pieces(&[bytes]);
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(whole, scan_pieces(&bytewise), "{stream:?}");
            let crlf = stream.replace('\n', "\r\n");
            assert_eq!(whole, scan_pieces(&[crlf.as_bytes()]), "{crlf:?}");
        }
    }

    #[test]
    fn bom_is_stripped_even_when_split() {
        let text = format!("\u{feff}data: {START}\n\n");
        let bytes = text.as_bytes();
        let body = scan_pieces(&[&bytes[..1], &bytes[1..2], &bytes[2..]]);
        assert_eq!(body.usage.input_tokens, Some(11));
        // Without the BOM the first line is "\xEF\xBB\xBFdata", an unknown field.
        let no_bom = format!("\u{feff}\u{feff}data: {START}\n\n");
        assert_eq!(scan_pieces(&[no_bom.as_bytes()]).usage.input_tokens, None);
    }

    #[test]
    fn data_without_space_and_multi_line_data() {
        let text = "event:message_start\ndata:{\"type\":\"message_start\",\ndata: \"message\":{\"usage\":{\"input_tokens\":4}}}\n\n";
        let body = scan_pieces(&[text.as_bytes()]);
        assert_eq!(body.usage.input_tokens, Some(4));
    }

    #[test]
    fn comments_unknown_fields_and_ids_are_ignored() {
        let text = format!(
            ": keep-alive\nid: 7\nretry: 100\nfoo: bar\nevent: message_start\nx-long-field-name: 1\ndata: {START}\n\n"
        );
        let body = scan_pieces(&[text.as_bytes()]);
        assert_eq!(body.usage.input_tokens, Some(11));
        assert_eq!(body.issue, None);
    }

    #[test]
    fn last_event_without_blank_line_counts() {
        let text =
            format!("event: message_start\ndata: {START}\n\nevent: message_delta\ndata: {DELTA}\n");
        assert_eq!(scan_pieces(&[text.as_bytes()]).usage.output_tokens, Some(6));
        let unterminated = text.trim_end();
        assert_eq!(
            scan_pieces(&[unterminated.as_bytes()]).usage.output_tokens,
            Some(6)
        );
    }

    #[test]
    fn cut_line_is_malformed_not_misread() {
        let text =
            format!("event: message_start\ndata: {START}\n\nevent: message_delta\ndata: {DELTA}");
        let cut = &text[..text.len() - 3];
        let body = scan_pieces(&[cut.as_bytes()]);
        assert_eq!(body.usage.output_tokens, Some(1));
        assert_eq!(body.issue, Some(ParseIssue::Malformed));
    }

    #[test]
    fn unnamed_events_are_decided_by_type() {
        let text = format!(
            "data: {{\"type\":\"ping\"}}\n\ndata: {START}\n\ndata: {{ \"type\" : \"content_block_delta\", \"x\": 1}}\n\ndata: {DELTA}\n\n"
        );
        let body = scan_pieces(&[text.as_bytes()]);
        assert_eq!(body.usage.input_tokens, Some(11));
        assert_eq!(body.usage.output_tokens, Some(6));
        assert_eq!(body.stats.events, 4);
    }

    #[test]
    fn unnamed_event_with_type_later_is_parsed_whole() {
        let text = r#"data: {"message":{"usage":{"input_tokens":9}},"type":"message_start"}

"#;
        assert_eq!(scan_pieces(&[text.as_bytes()]).usage.input_tokens, Some(9));
    }

    #[test]
    fn skipped_events_are_not_buffered() {
        let mut scanner = Scanner::new();
        scanner.feed(b"event: content_block_delta\ndata: ");
        for _ in 0..1000 {
            scanner.feed(&[b'x'; 1000]);
        }
        assert_eq!(scanner.buffered_bytes(), 0);
        scanner.feed(b"\n\n");
        assert_eq!(scanner.finish().issue, None);
    }

    #[test]
    fn oversized_event_is_dropped_and_memory_stays_capped() {
        let mut scanner = Scanner::with_max_event_bytes(4096);
        scanner.feed(b"event: message_delta\ndata: ");
        for _ in 0..10_000 {
            scanner.feed(&[b' '; 1000]);
            assert!(scanner.buffered_bytes() <= 4096);
        }
        scanner.feed(format!("\n\nevent: message_start\ndata: {START}\n\n").as_bytes());
        let body = scanner.finish();
        assert_eq!(body.issue, Some(ParseIssue::OverCap));
        assert_eq!(body.stats.over_cap, 1);
        assert_eq!(
            body.usage.input_tokens,
            Some(11),
            "later events still count"
        );
    }

    #[test]
    fn unnamed_events_are_judged_by_their_type_whatever_the_pieces() {
        let text = "x".repeat(300);
        let skipped = format!(
            "data: {{\"type\":\"content_block_delta\",\"delta\":{{\"text\":\"{text}\"}}}}\n\n"
        );
        let kept = format!("data: {DELTA}\n\n");
        // Caps below and above the sniff window (64 bytes), both below the kept data.
        for cap in [40, 70] {
            for (stream, issue) in [(&skipped, None), (&kept, Some(ParseIssue::OverCap))] {
                let mut whole = Scanner::with_max_event_bytes(cap);
                whole.feed(stream.as_bytes());
                let whole = whole.finish();
                let mut bytewise = Scanner::with_max_event_bytes(cap);
                for byte in stream.as_bytes() {
                    bytewise.feed(std::slice::from_ref(byte));
                }
                assert_eq!(whole.issue, issue, "cap {cap}: {stream}");
                assert_eq!(whole, bytewise.finish(), "cap {cap}: {stream}");
            }
        }
    }

    #[test]
    fn a_100_mib_line_never_grows_memory_past_the_cap() {
        let piece = vec![b'7'; 64 * 1024];
        for (name, data) in [
            ("message_delta", b"data: [".as_slice()), // read: buffered up to the cap
            ("content_block_delta", b"data: [".as_slice()), // skipped
            ("", b"data: [".as_slice()),              // unnamed: sniffed, then buffered
        ] {
            let mut scanner = Scanner::new();
            if !name.is_empty() {
                scanner.feed(format!("event: {name}\n").as_bytes());
            }
            scanner.feed(data);
            for _ in 0..1600 {
                scanner.feed(&piece);
                assert!(scanner.buffered_bytes() <= DEFAULT_MAX_EVENT_BYTES);
            }
            scanner.feed(format!("]\n\nevent: message_start\ndata: {START}\n\n").as_bytes());
            let body = scanner.finish();
            assert_eq!(
                body.usage.input_tokens,
                Some(11),
                "{name}: the stream goes on"
            );
            let expected = if name == "content_block_delta" {
                None
            } else {
                Some(ParseIssue::OverCap)
            };
            assert_eq!(body.issue, expected, "{name}");
        }
    }

    #[test]
    fn error_event_gives_its_type() {
        let text = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let body = scan_pieces(&[text.as_bytes()]);
        assert_eq!(body.error_type.as_deref(), Some("overloaded_error"));
    }
}
