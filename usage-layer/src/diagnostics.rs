//! What the layer's records could not know, counted, and said once.
//!
//! A wrong integration — the layer outside authentication, on routes that are no model
//! endpoints, in front of a body it cannot read — does not fail a request: it makes
//! records without a provider, a caller or usage. [`Diagnostics`] counts those records
//! by what they lack and logs a `warn` the first time each gap is seen, with the reason,
//! so it shows in the first minute rather than on next month's invoice. The same goes for
//! ids too long for a store to index, which are cut ([`UsageRecord::bound_ids`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

use crate::anthropic::ParseIssue;
use crate::format::Format;
use crate::record::{Caller, Outcome, Provider, UsageRecord};

/// The counters of one [`UsageLayer`](crate::UsageLayer) (shared by its services);
/// cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    no_provider: AtomicU64,
    no_caller: AtomicU64,
    no_usage: AtomicU64,
    oversized_id: AtomicU64,
}

/// How many records lacked what, since the layer was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gaps {
    /// Records nobody labelled with a [`Provider`].
    pub no_provider: u64,
    /// Records without a [`Caller`] (neither user nor key).
    pub no_caller: u64,
    /// Successful (2xx) responses read to their end that reported no usage.
    pub no_usage: u64,
    /// Records whose caller ids or provider name were longer than a store can index, and
    /// were cut ([`UsageRecord::bound_ids`]).
    pub oversized_id: u64,
}

impl Diagnostics {
    /// The counts so far.
    pub fn gaps(&self) -> Gaps {
        let counters = &self.0;
        Gaps {
            no_provider: counters.no_provider.load(Ordering::Relaxed),
            no_caller: counters.no_caller.load(Ordering::Relaxed),
            no_usage: counters.no_usage.load(Ordering::Relaxed),
            oversized_id: counters.oversized_id.load(Ordering::Relaxed),
        }
    }

    /// Cuts `record`'s over-long ids, counts what it lacks, and warns the first time each
    /// gap is seen.
    pub(crate) fn review(&self, record: &mut UsageRecord) {
        let counters = &self.0;
        if record.bound_ids() && first(&counters.oversized_id) {
            // The lengths, not the ids: an id that long may be a credential by mistake.
            tracing::warn!(
                request_id = %record.request_id,
                "usage record with a caller id over {} bytes or a provider name over {} \
                 bytes, longer than stores can index: cut to that length (its start and a \
                 hash of the whole); counted in `Diagnostics::gaps().oversized_id`, not \
                 logged again",
                Caller::MAX_ID_LEN,
                Provider::MAX_LEN,
            );
        }
        if record.provider.is_none() && first(&counters.no_provider) {
            tracing::warn!(
                request_id = %record.request_id,
                status = record.status.map(|status| status.as_u16()),
                "usage record without a provider: label responses with `usage_layer::Provider` \
                 (or set it in `UsageLayer::on_request`), and meter only the model endpoints \
                 (`UsageLayer::filter`, or axum's `route_layer`); counted in \
                 `Diagnostics::gaps().no_provider`, not logged again"
            );
        }
        if record.caller.is_unknown() && first(&counters.no_caller) {
            tracing::warn!(
                request_id = %record.request_id,
                "usage record without a caller: put a `usage_layer::Caller` in the request's \
                 extensions before the usage layer sees it, or in the response's (when \
                 authentication runs inside the layer), or set it in `UsageLayer::on_request`; \
                 counted in `Diagnostics::gaps().no_caller`, not logged again"
            );
        }
        if lacks_usage(record) && first(&counters.no_usage) {
            tracing::warn!(
                request_id = %record.request_id,
                status = record.status.map(|status| status.as_u16()),
                format = record.format.map(Format::as_str),
                parse_issue = ?record.parse_issue,
                "a successful response reported no usage: {}; counted in \
                 `Diagnostics::gaps().no_usage`, not logged again",
                no_usage_reason(record)
            );
        }
    }
}

/// Increments `counter`; `true` the first time.
fn first(counter: &AtomicU64) -> bool {
    counter.fetch_add(1, Ordering::Relaxed) == 0
}

/// A 2xx body delivered to its end without a single count.
fn lacks_usage(record: &UsageRecord) -> bool {
    let success = record.status.is_some_and(|status| status.is_success())
        && record.status != Some(StatusCode::NO_CONTENT);
    let ended = matches!(
        record.outcome,
        Outcome::Completed | Outcome::Unparsed | Outcome::UpstreamError
    );
    success && ended && record.usage.is_empty()
}

fn no_usage_reason(record: &UsageRecord) -> &'static str {
    match (record.parse_issue, record.format) {
        (Some(ParseIssue::ContentEncoded), _) => {
            "the body was compressed with an encoding this build cannot read (enable the \
             `decompress` feature, or do not forward `accept-encoding`)"
        }
        (Some(ParseIssue::UnsupportedContentType), _) => {
            "its content type is neither JSON nor an event stream"
        }
        (Some(ParseIssue::OverCap), _) => "the body or an event was larger than the caps",
        (Some(ParseIssue::Malformed), _) => "the usage was not valid JSON of a known shape",
        (Some(ParseIssue::Undecodable), _) => "the compressed body was corrupt or cut short",
        (Some(_), _) => "the body could not be observed",
        (None, Some(Format::OpenAiChat)) if record.streaming => {
            "an OpenAI chat stream reports usage only when the request asks for it with \
             `stream_options: {\"include_usage\": true}`"
        }
        (None, Some(_)) => "the body carried no usage object",
        (None, None) => {
            "the body is in no format the layer knows (Anthropic Messages, OpenAI Chat \
             Completions or Responses); a route that is no model endpoint should not be metered"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestId;

    fn record(status: u16) -> UsageRecord {
        let mut record = UsageRecord::new(RequestId::new(), chrono::Utc::now());
        record.status = Some(StatusCode::from_u16(status).unwrap());
        record
    }

    #[test]
    fn gaps_are_counted_by_what_records_lack() {
        let diagnostics = Diagnostics::default();
        diagnostics.review(&mut record(200));
        diagnostics.review(&mut record(404));
        let mut labelled = record(200);
        labelled.provider = Some(Provider::PLAN);
        labelled.caller = Caller::user("ada");
        labelled.usage.output_tokens = Some(1);
        diagnostics.review(&mut labelled);
        let mut cut = record(200);
        cut.outcome = Outcome::ClientDisconnected;
        diagnostics.review(&mut cut);
        assert_eq!(
            diagnostics.clone().gaps(),
            Gaps {
                no_provider: 3,
                no_caller: 3,
                // The 404 and the disconnect had no usage to report.
                no_usage: 1,
                oversized_id: 0,
            }
        );
    }

    #[test]
    fn over_long_ids_are_cut_and_counted() {
        let diagnostics = Diagnostics::default();
        let long = "k".repeat(3000);
        let mut record = record(200);
        record.caller = Caller::user("ada").with_access_key(&long);
        record.provider = Some(Provider::new("p".repeat(100)));
        diagnostics.review(&mut record);
        let key = record.caller.access_key_id.as_deref().unwrap();
        assert_eq!(key.len(), Caller::MAX_ID_LEN);
        assert!(key.starts_with("kkk"));
        assert_eq!(record.caller.user_id.as_deref(), Some("ada"));
        assert_eq!(
            record.provider.as_ref().unwrap().as_str().len(),
            Provider::MAX_LEN
        );
        // The same id is cut the same way; another long id differently.
        let mut again = self::record(200);
        again.caller = Caller::access_key(&long);
        diagnostics.review(&mut again);
        assert_eq!(again.caller.access_key_id.as_deref(), Some(key));
        let mut other = self::record(200);
        other.caller = Caller::access_key(format!("{long}x"));
        diagnostics.review(&mut other);
        assert_ne!(other.caller.access_key_id.as_deref(), Some(key));
        assert_eq!(diagnostics.gaps().oversized_id, 3);
    }
}
