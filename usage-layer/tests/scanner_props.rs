//! Property tests of the SSE scanner: for any valid stream, any split, any line ends and
//! any noise between events, the usage is the one the SDK's rule gives; for any bytes,
//! no panic and memory within the cap.

use proptest::prelude::*;
use usage_layer::Usage;
use usage_layer::anthropic::BodyUsage;
use usage_layer::sse::{DEFAULT_MAX_EVENT_BYTES, Scanner};

/// The usage fields a generated event reports; `None` leaves the field out.
#[derive(Clone, Debug, Default)]
struct Reported {
    input: Option<u64>,
    output: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
}

impl Reported {
    /// `{"input_tokens":…,…}`; a `None` is left out, or written as `null` if `nulls`.
    fn to_json(&self, nulls: bool) -> String {
        let fields: Vec<String> = [
            ("input_tokens", self.input),
            ("cache_creation_input_tokens", self.cache_creation),
            ("cache_read_input_tokens", self.cache_read),
            ("output_tokens", self.output),
        ]
        .into_iter()
        .filter_map(|(key, value)| match value {
            Some(n) => Some(format!("\"{key}\":{n}")),
            // An explicit null is "not reported", the same as absent.
            None if nulls => Some(format!("\"{key}\":null")),
            None => None,
        })
        .collect();
        format!("{{{}}}", fields.join(","))
    }
}

#[derive(Clone, Debug)]
enum Event {
    Start(Reported, String),
    Delta(Reported, bool),
    Text(String),
    ToolJson(String),
    Ping,
    Unknown(String),
    Stop,
}

impl Event {
    fn name(&self) -> &str {
        match self {
            Event::Start(..) => "message_start",
            Event::Delta(..) => "message_delta",
            Event::Text(_) | Event::ToolJson(_) => "content_block_delta",
            Event::Ping => "ping",
            Event::Unknown(_) => "future_event",
            Event::Stop => "message_stop",
        }
    }

    /// The event's data as the API writes it: `"type"` first (except for the unknown
    /// event, which puts it last to make the scanner parse the whole data).
    fn data(&self) -> String {
        let text = |text: &str| serde_json::to_string(text).unwrap();
        match self {
            Event::Start(usage, model) => format!(
                r#"{{"type":"message_start","message":{{"id":"msg_1","type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"usage":{}}}}}"#,
                text(model),
                usage.to_json(false)
            ),
            Event::Delta(usage, nulls) => format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{}}}"#,
                usage.to_json(*nulls)
            ),
            Event::Text(t) => format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                text(t)
            ),
            Event::ToolJson(partial) => format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                text(partial)
            ),
            Event::Ping => r#"{"type": "ping"}"#.to_owned(),
            Event::Unknown(t) => format!(
                r#"{{"x":{},"usage":{{"input_tokens":999}},"type":"future_event"}}"#,
                text(t)
            ),
            Event::Stop => r#"{"type":"message_stop"}"#.to_owned(),
        }
    }
}

/// The SDK's rule, written out plainly: start sets, each reported delta field overwrites.
fn sdk_usage(events: &[Event]) -> Reported {
    let mut usage = Reported::default();
    for event in events {
        match event {
            Event::Start(start, _) => usage = start.clone(),
            Event::Delta(delta, _) => {
                usage.input = delta.input.or(usage.input);
                usage.output = delta.output.or(usage.output);
                usage.cache_creation = delta.cache_creation.or(usage.cache_creation);
                usage.cache_read = delta.cache_read.or(usage.cache_read);
            }
            _ => {}
        }
    }
    usage
}

/// How a stream is written out.
#[derive(Clone, Debug)]
struct Style {
    bom: bool,
    named: bool,
    endings: Vec<u8>,
    space_after_colon: Vec<bool>,
    split_data: Vec<bool>,
    noise: Vec<u8>,
}

fn count() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (0u64..2_000_000).prop_map(Some)]
}

fn reported() -> impl Strategy<Value = Reported> {
    (count(), count(), count(), count()).prop_map(|(input, output, cache_creation, cache_read)| {
        Reported {
            input,
            output,
            cache_creation,
            cache_read,
        }
    })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (reported(), "claude-[a-z0-9-]{1,20}").prop_map(|(u, m)| Event::Start(u, m)),
        (reported(), any::<bool>()).prop_map(|(u, nulls)| Event::Delta(u, nulls)),
        any::<String>().prop_map(Event::Text),
        "[{}\":, a-z\\\\]{0,40}".prop_map(Event::ToolJson),
        Just(Event::Ping),
        any::<String>().prop_map(Event::Unknown),
        Just(Event::Stop),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::collection::vec(0u8..3, 64),
        prop::collection::vec(any::<bool>(), 64),
        prop::collection::vec(prop::bool::weighted(0.3), 64),
        prop::collection::vec(0u8..8, 64),
    )
        .prop_map(
            |(bom, named, endings, space_after_colon, split_data, noise)| Style {
                bom,
                named,
                endings,
                space_after_colon,
                split_data,
                noise,
            },
        )
}

/// Writes lines with per-line endings, never letting a CR be followed by a LF-only line
/// end (that pair is one CRLF by the spec, so it would change the stream's meaning).
struct Writer<'a> {
    out: Vec<u8>,
    style: &'a Style,
    line: usize,
    last_was_cr: bool,
}

impl Writer<'_> {
    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        let mut ending = self.style.endings[self.line % self.style.endings.len()];
        if self.last_was_cr && text.is_empty() && ending == 0 {
            ending = 2;
        }
        self.out.extend_from_slice(match ending {
            0 => b"\n",
            1 => b"\r",
            _ => b"\r\n",
        });
        self.last_was_cr = ending == 1;
        self.line += 1;
    }

    fn pick(&self, flags: &[bool]) -> bool {
        flags[self.line % flags.len()]
    }

    fn noise(&mut self, kind: u8) {
        match kind {
            0 => self.line(": keep-alive"),
            1 => self.line(":"),
            2 => self.line("id: 42"),
            3 => self.line("retry: 3000"),
            4 => self.line("x-unknown-field: {\"type\":\"message_delta\"}"),
            5 => {
                // A whole event we do not read, with the SDK's ping.
                self.line("event: ping");
                self.line("data: {\"type\": \"ping\"}");
                self.line("");
            }
            _ => {}
        }
    }

    fn event(&mut self, event: &Event) {
        let kind = self.style.noise[self.line % self.style.noise.len()];
        self.noise(kind);
        if self.style.named {
            self.line(&format!("event: {}", event.name()));
        }
        let data = event.data();
        let colon = if self.pick(&self.style.space_after_colon) {
            "data: "
        } else {
            "data:"
        };
        // Several data lines are joined with "\n", which is JSON white space: split after
        // a leading `{"type":"…",` (a type name has no quote).
        let split = data
            .starts_with(r#"{"type":""#)
            .then(|| data.find("\",").map(|at| at + 2))
            .flatten();
        match split {
            Some(at) if self.pick(&self.style.split_data) => {
                self.line(&format!("{colon}{}", &data[..at]));
                self.line(&format!("{colon}{}", &data[at..]));
            }
            _ => self.line(&format!("{colon}{data}")),
        }
        self.line("");
    }
}

fn render(events: &[Event], style: &Style) -> Vec<u8> {
    let mut writer = Writer {
        out: Vec::new(),
        style,
        line: 0,
        last_was_cr: false,
    };
    if style.bom {
        writer.out.extend_from_slice("\u{feff}".as_bytes());
    }
    for event in events {
        writer.event(event);
    }
    writer.out
}

fn scan(bytes: &[u8], cuts: &[usize]) -> BodyUsage {
    scan_capped(bytes, cuts, DEFAULT_MAX_EVENT_BYTES)
}

fn scan_capped(bytes: &[u8], cuts: &[usize], cap: usize) -> BodyUsage {
    let mut scanner = Scanner::with_max_event_bytes(cap);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        scanner.feed(&bytes[from..cut]);
        from = cut;
    }
    scanner.finish()
}

fn assert_sdk_usage(usage: &Usage, expected: &Reported) {
    assert_eq!(usage.input_tokens, expected.input);
    assert_eq!(usage.output_tokens, expected.output);
    assert_eq!(usage.cache_creation_input_tokens, expected.cache_creation);
    assert_eq!(usage.cache_read_input_tokens, expected.cache_read);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// P3: any valid stream, written any way, split anywhere, gives the SDK's usage.
    #[test]
    fn any_stream_any_split_gives_the_sdk_usage(
        events in prop::collection::vec(event(), 0..24),
        style in style(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let bytes = render(&events, &style);
        let whole = scan(&bytes, &[]);
        let split = scan(&bytes, &cuts);
        prop_assert_eq!(&whole, &split);
        assert_sdk_usage(&split.usage, &sdk_usage(&events));
        prop_assert_eq!(split.issue, None);
        prop_assert_eq!(split.complete, events.iter().any(|e| matches!(e, Event::Stop)));
    }

    /// One-byte pieces are a split like any other.
    #[test]
    fn one_byte_pieces_give_the_same_result(
        events in prop::collection::vec(event(), 0..8),
        style in style(),
    ) {
        let bytes = render(&events, &style);
        let mut scanner = Scanner::new();
        for byte in &bytes {
            scanner.feed(std::slice::from_ref(byte));
        }
        prop_assert_eq!(scanner.finish(), scan(&bytes, &[]));
    }

    /// The cap decides which events are dropped, never the split: with any cap, any split
    /// gives what the whole stream gives (named or unnamed events, kept or skipped).
    #[test]
    fn any_cap_any_split_gives_the_same_result(
        events in prop::collection::vec(event(), 0..12),
        style in style(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        cap in 0usize..400,
    ) {
        let bytes = render(&events, &style);
        let whole = scan_capped(&bytes, &[], cap);
        prop_assert_eq!(&whole, &scan_capped(&bytes, &cuts, cap));
        let mut scanner = Scanner::with_max_event_bytes(cap);
        for byte in &bytes {
            scanner.feed(std::slice::from_ref(byte));
        }
        prop_assert_eq!(&whole, &scanner.finish());
    }

    /// Noise between events (comments, pings, unknown fields and events, ids) changes nothing.
    #[test]
    fn noise_between_events_changes_nothing(
        events in prop::collection::vec(event(), 0..16),
        style in style(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let quiet = Style { noise: vec![7], ..style.clone() };
        let noisy = Style { noise: style.noise.iter().map(|n| n % 6).collect(), ..style };
        let quiet = scan(&render(&events, &quiet), &cuts);
        let noisy = scan(&render(&events, &noisy), &cuts);
        prop_assert_eq!(quiet.usage, noisy.usage);
        prop_assert_eq!(quiet.model, noisy.model);
        prop_assert_eq!(quiet.complete, noisy.complete);
    }

    /// Any bytes at all: no panic, and the buffer never grows past the cap.
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_within_the_cap(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                prop::collection::vec(prop::sample::select(b"data:event\r\n :{}\"typemsg_ar\xEF\xBB\xBF".to_vec()), 0..300),
            ],
            0..20,
        ),
        cap in 0usize..512,
    ) {
        let mut scanner = Scanner::with_max_event_bytes(cap);
        for piece in &pieces {
            scanner.feed(piece);
            prop_assert!(scanner.buffered_bytes() <= cap);
        }
        let _ = scanner.finish();
    }
}
