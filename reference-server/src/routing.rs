//! Plan first, Bedrock when Plan is rate limited or failing — decided before any byte
//! reaches the client, for streams too.
//!
//! Plan 429, 529, 5xx, a connection failure or no response headers in time ⇒ Bedrock, if
//! the user's routing allows it, Bedrock is configured, the model is mapped and the
//! budget allows it; otherwise the client gets Plan's own response (or a 502/504 when
//! there was none). Other 4xx pass through. A 429's `retry-after` puts the access key in
//! a cooldown during which Plan is skipped. `bedrock_only` users skip Plan.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use rust_decimal::Decimal;
use serde::Deserialize;
use usage_layer::{Fallback, Outcome, Provider, Region, RequestedModel};
use uuid::Uuid;

use crate::bedrock::Bedrock;
use crate::budget::{Budget, BudgetCheck};
use crate::config::Routing;
use crate::error::anthropic_error;
use crate::keys::Authenticated;
use crate::plan::{Opening, PlanClient, PlanFailure, open_stream};

/// Access keys whose Plan requests wait until a `retry-after` has passed.
#[derive(Debug, Default)]
pub struct Cooldowns {
    until: Mutex<HashMap<Uuid, Instant>>,
}

impl Cooldowns {
    /// Whether `key` is cooling down now.
    pub fn active(&self, key: Uuid) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match until.get(&key) {
            Some(&end) if end > Instant::now() => true,
            Some(_) => {
                until.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Skips Plan for `key` for `duration`.
    pub fn start(&self, key: Uuid, duration: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        // A huge configured maximum must not overflow the clock: cap at a year.
        let end = Instant::now().checked_add(duration.min(Duration::from_secs(365 * 24 * 3600)));
        if let Some(end) = end {
            until.insert(key, end);
        }
    }
}

/// A `retry-after` header: seconds, or an HTTP date; capped at `max`.
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(max))
}

/// Why a Plan answer is left for Bedrock, if it is.
fn fallback_reason(status: StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        429 => Some("rate_limited"),
        529 => Some("overloaded"),
        500..=599 => Some("server_error"),
        _ => None,
    }
}

#[derive(Deserialize)]
struct RequestHead {
    model: Option<String>,
}

/// The request body's `model`, if it is JSON with one (Plan judges anything else).
fn requested_model(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<RequestHead>(body).ok()?.model
}

/// Sends Messages requests where they should go.
#[derive(Debug)]
pub struct Router {
    plan: PlanClient,
    bedrock: Option<Bedrock>,
    budget: Budget,
    cooldowns: Cooldowns,
    max_cooldown: Duration,
    response_timeout: Duration,
}

impl Router {
    /// A router over Plan and, when configured, Bedrock, that answers 504 itself when no
    /// response headers came within `response_timeout`.
    pub fn new(
        plan: PlanClient,
        bedrock: Option<Bedrock>,
        budget: Budget,
        max_cooldown: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            plan,
            bedrock,
            budget,
            cooldowns: Cooldowns::default(),
            max_cooldown,
            response_timeout,
        }
    }

    /// The Plan client (for requests that only Plan answers, like `count_tokens`).
    pub fn plan(&self) -> &PlanClient {
        &self.plan
    }

    /// Answers a Messages request (`path_and_query` as Plan should see it), labelled with
    /// the provider that answered, for the usage layer.
    pub async fn messages(
        &self,
        caller: &Authenticated,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let model = requested_model(&body);
        let call = Call {
            caller,
            headers,
            body,
            waiting: Waiting::default(),
        };
        let routed = self.route(&call, path_and_query, model.as_deref());
        let mut response = match tokio::time::timeout(self.response_timeout, routed).await {
            Ok(response) => response,
            Err(_) => call.waiting.timed_out(self.response_timeout),
        };
        if let Some(model) = model {
            response.extensions_mut().insert(RequestedModel(model));
        }
        response
    }

    async fn route(
        &self,
        call: &Call<'_>,
        path_and_query: &str,
        model: Option<&str>,
    ) -> Response<Body> {
        let Call {
            caller,
            headers,
            body,
            waiting,
        } = call;
        let target = self
            .bedrock
            .as_ref()
            .and_then(|bedrock| Some((bedrock, bedrock.mapping().resolve(model?)?.to_owned())));

        if Routing::from_stored(&caller.user.routing_strategy) == Routing::BedrockOnly {
            return match &target {
                Some(target) => self.bedrock(call, target, None).await,
                // The refusal is Bedrock's route's: said so, so stores and metrics agree.
                None => labelled(
                    anthropic_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "this access key routes to Bedrock only, and Bedrock cannot serve this model",
                    ),
                    Provider::BEDROCK,
                ),
            };
        }
        if let Some(target) = &target
            && self.cooldowns.active(caller.key_id)
        {
            let fallback = Fallback {
                from: Provider::PLAN,
                reason: Cow::Borrowed("cooldown"),
            };
            if let Some(response) = self.bedrock_if_budget(call, target, fallback).await {
                return response;
            }
        }

        waiting.on(Provider::PLAN, None);
        let plan_answer = self.plan.send(path_and_query, headers, body.clone()).await;
        let reason = match &plan_answer {
            Ok(response) => fallback_reason(response.status()),
            Err(PlanFailure::Timeout(_)) => Some("timeout"),
            Err(PlanFailure::Connect(_)) => Some("connect_error"),
        };
        let Some(reason) = reason else {
            let response =
                plan_answer.expect("only an answer (not a failure) has no fallback reason");
            if !is_event_stream(response.headers()) {
                return labelled(response.map(Body::new), Provider::PLAN);
            }
            // A stream that opens with an error has sent nothing to the client yet.
            return match open_stream(response, self.plan.header_timeout()).await {
                Opening::Fine(response) => labelled(response, Provider::PLAN),
                Opening::Failed { reason, response } => {
                    self.fall_back_or(call, target.as_ref(), Cow::Owned(reason), response)
                        .await
                }
            };
        };
        if let Ok(response) = &plan_answer
            && response.status() == StatusCode::TOO_MANY_REQUESTS
            && let Some(wait) = retry_after(response.headers(), self.max_cooldown)
        {
            self.cooldowns.start(caller.key_id, wait);
        }
        self.fall_back_or(
            call,
            target.as_ref(),
            Cow::Borrowed(reason),
            response_body(plan_answer),
        )
        .await
    }

    /// Bedrock when it may serve, else Plan's own answer.
    async fn fall_back_or(
        &self,
        call: &Call<'_>,
        target: Option<&(&Bedrock, String)>,
        reason: Cow<'static, str>,
        plan_answer: Response<Body>,
    ) -> Response<Body> {
        if let Some(target) = target {
            let fallback = Fallback {
                from: Provider::PLAN,
                reason: reason.clone(),
            };
            if let Some(response) = self.bedrock_if_budget(call, target, fallback).await {
                tracing::info!(%reason, "Plan failed; served by Bedrock");
                return response;
            }
        }
        labelled(plan_answer, Provider::PLAN)
    }

    /// Bedrock, if the budget allows it; `None` sends the caller back to Plan's answer.
    async fn bedrock_if_budget(
        &self,
        call: &Call<'_>,
        target: &(&Bedrock, String),
        fallback: Fallback,
    ) -> Option<Response<Body>> {
        match self.budget.check(&call.caller.user).await {
            Ok(BudgetCheck::Allowed) => Some(self.call_bedrock(call, target, Some(fallback)).await),
            Ok(BudgetCheck::Exceeded { .. }) => None,
            Err(error) => {
                tracing::error!(%error, "budget check failed; not using Bedrock");
                None
            }
        }
    }

    /// Bedrock for a `bedrock_only` caller: over budget (or unknown) ⇒ 429, Bedrock not called.
    async fn bedrock(
        &self,
        call: &Call<'_>,
        target: &(&Bedrock, String),
        fallback: Option<Fallback>,
    ) -> Response<Body> {
        match self.budget.check(&call.caller.user).await {
            Ok(BudgetCheck::Allowed) => self.call_bedrock(call, target, fallback).await,
            Ok(BudgetCheck::Exceeded {
                spent_micros,
                limit_micros,
                resets_at,
            }) => {
                let response = anthropic_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    &format!(
                        "monthly Bedrock budget exhausted: used ${} of ${}; resets at {}",
                        Decimal::new(spent_micros, 6),
                        Decimal::new(limit_micros, 6),
                        resets_at.to_rfc3339()
                    ),
                );
                labelled(response, Provider::BEDROCK)
            }
            Err(error) => {
                tracing::error!(%error, "budget check failed");
                let response = anthropic_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "the budget could not be checked; try again",
                );
                labelled(response, Provider::BEDROCK)
            }
        }
    }

    async fn call_bedrock(
        &self,
        call: &Call<'_>,
        (bedrock, model_id): &(&Bedrock, String),
        fallback: Option<Fallback>,
    ) -> Response<Body> {
        call.waiting.on(Provider::BEDROCK, fallback.clone());
        let mut response = bedrock
            .messages(&call.body, joined_betas(call.headers).as_ref(), model_id)
            .await;
        let extensions = response.extensions_mut();
        extensions.insert(Provider::BEDROCK);
        extensions.insert(Region(bedrock.region().to_owned()));
        if let Some(fallback) = fallback {
            extensions.insert(fallback);
        }
        response
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Every `anthropic-beta` header line, joined with commas (a client may send several).
fn joined_betas(headers: &HeaderMap) -> Option<http::HeaderValue> {
    let lines: Vec<&str> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!lines.is_empty())
        .then(|| http::HeaderValue::from_str(&lines.join(",")).ok())
        .flatten()
}

/// Plan's answer as the client's response: as it came, or a 502/504 if none came.
fn response_body(answer: Result<Response<hyper::body::Incoming>, PlanFailure>) -> Response<Body> {
    match answer {
        Ok(response) => response.map(Body::new),
        Err(failure @ PlanFailure::Timeout(_)) => anthropic_error(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            &failure.to_string(),
        ),
        Err(failure @ PlanFailure::Connect(_)) => {
            anthropic_error(StatusCode::BAD_GATEWAY, "api_error", &failure.to_string())
        }
    }
}

/// One Messages request on its way through the router.
struct Call<'a> {
    caller: &'a Authenticated,
    headers: &'a HeaderMap,
    body: Bytes,
    waiting: Waiting,
}

/// The upstream a request is waiting on (Plan, or Bedrock with the fallback that led
/// there): what a 504 of the proxy's own is labelled with.
#[derive(Debug)]
struct Waiting(std::sync::Mutex<(Provider, Option<Fallback>)>);

impl Default for Waiting {
    fn default() -> Self {
        Self(std::sync::Mutex::new((Provider::PLAN, None)))
    }
}

impl Waiting {
    fn on(&self, provider: Provider, fallback: Option<Fallback>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (provider, fallback);
    }

    /// The 504 after `timeout`: labelled with the upstream waited on, outcome `timeout`.
    fn timed_out(self, timeout: Duration) -> Response<Body> {
        let (provider, fallback) = self
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tracing::warn!(
            provider = provider.as_str(),
            "no response headers within {timeout:?}: 504"
        );
        let mut response = anthropic_error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            &format!(
                "{} sent no response within {} s",
                provider.as_str(),
                timeout.as_secs()
            ),
        );
        let extensions = response.extensions_mut();
        extensions.insert(Outcome::Timeout);
        if let Some(fallback) = fallback {
            extensions.insert(fallback);
        }
        labelled(response, provider)
    }
}

fn labelled(mut response: Response<Body>, provider: Provider) -> Response<Body> {
    response.extensions_mut().insert(provider);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_capped() {
        let max = Duration::from_secs(300);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, max), None);
        headers.insert("retry-after", "30".parse().unwrap());
        assert_eq!(retry_after(&headers, max), Some(Duration::from_secs(30)));
        headers.insert("retry-after", "86400".parse().unwrap());
        assert_eq!(retry_after(&headers, max), Some(max));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        headers.insert("retry-after", soon.replace("+0000", "GMT").parse().unwrap());
        let wait = retry_after(&headers, max).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        headers.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers, max),
            Some(Duration::ZERO),
            "a date in the past"
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, max), None);
    }

    #[test]
    fn which_plan_answers_fall_back() {
        for (status, reason) in [
            (429, Some("rate_limited")),
            (529, Some("overloaded")),
            (500, Some("server_error")),
            (503, Some("server_error")),
            (400, None),
            (401, None),
            (404, None),
            (413, None),
            (200, None),
        ] {
            assert_eq!(
                fallback_reason(StatusCode::from_u16(status).unwrap()),
                reason,
                "{status}"
            );
        }
    }

    #[test]
    fn cooldowns_expire() {
        let cooldowns = Cooldowns::default();
        let key = Uuid::now_v7();
        assert!(!cooldowns.active(key));
        cooldowns.start(key, Duration::from_secs(60));
        assert!(cooldowns.active(key));
        cooldowns.start(key, Duration::ZERO);
        assert!(!cooldowns.active(key));
    }
}
