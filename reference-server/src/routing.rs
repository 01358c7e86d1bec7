//! Plan first, Bedrock when Plan is rate limited or failing — decided before any byte
//! reaches the client, for streams too.
//!
//! One function decides where a request goes, `route`: from the user's routing,
//! whether Bedrock can serve the model, whether Plan is skipped (the key's `retry-after`
//! cooldown, an open circuit: [`crate::breaker`]), how Plan failed if it was asked, and
//! the user's Bedrock budget (asked only when Bedrock is next). [`Router::messages`]
//! carries the decisions out, one step at a time, until one is an answer:
//!
//! * `bedrock_only` ⇒ Bedrock, or a refusal: the model has no Bedrock mapping (400),
//!   the budget is spent (429 naming the budget, the month's usage and the reset time),
//!   the budget cannot be checked (503).
//! * `plan_first` ⇒ Plan, unless it is skipped and Bedrock may serve. Plan 429, 529, 5xx,
//!   a stream opening with an error, a connection failure or no response headers in
//!   time ⇒ Bedrock if it can serve and the budget allows it; a spent budget ⇒ the same
//!   429 naming it; otherwise Plan's own response (or a 502/504 when there was none).
//!   Other 4xx pass through. A 429's `retry-after` starts the key's cooldown.

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

use crate::bedrock::{Account, Bedrock};
use crate::breaker::{Breakers, Ticket, Verdict};
use crate::budget::{Budget, BudgetCheck};
use crate::config::Routing;
use crate::error::anthropic_error;
use crate::keys::Authenticated;
use crate::plan::{Opening, PlanClient, PlanFailure, open_stream};

/// Access keys whose Plan requests wait until a `retry-after` has passed: here, and in
/// a fleet on every proxy ([`crate::fleet`]).
#[derive(Debug, Default)]
pub struct Cooldowns {
    until: Mutex<HashMap<Uuid, Instant>>,
    fleet: Option<crate::fleet::Fleet>,
}

impl Cooldowns {
    /// Whether `key` is cooling down now (here or anywhere in the fleet).
    pub fn active(&self, key: Uuid) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let here = match until.get(&key) {
            Some(&end) if end > Instant::now() => true,
            Some(_) => {
                until.remove(&key);
                false
            }
            None => false,
        };
        here || self
            .fleet
            .as_ref()
            .is_some_and(|fleet| fleet.cooling_down(key))
    }

    /// Skips Plan for `key` for `duration`.
    pub fn start(&self, key: Uuid, duration: Duration) {
        // A huge configured maximum must not overflow the clock: cap at a year.
        let duration = duration.min(Duration::from_secs(365 * 24 * 3600));
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(end) = Instant::now().checked_add(duration) {
            until.insert(key, end);
        }
        if let Some(fleet) = &self.fleet {
            fleet.cooldown(key, duration);
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

/// The user's Bedrock budget as far as the router knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BudgetState {
    /// Not asked yet (it is asked only when Bedrock is next).
    NotAsked,
    /// Bedrock may be called.
    Allowed,
    /// Spent.
    Exceeded {
        spent_micros: i64,
        limit_micros: i64,
        resets_at: chrono::DateTime<chrono::Utc>,
    },
    /// The check failed (the database is down).
    Unknown,
}

/// What a request's route is decided from.
#[derive(Clone, Debug)]
struct Facts {
    /// The user routes to Bedrock only.
    bedrock_only: bool,
    /// Bedrock is configured and maps the requested model.
    bedrock_serves: bool,
    /// Why Plan is skipped before being asked (a cooldown, an open circuit), if it is.
    plan_skipped: Option<&'static str>,
    /// Why Plan's answer is left for Bedrock, once Plan was asked and failed.
    plan_failed: Option<Cow<'static, str>>,
    /// The budget.
    budget: BudgetState,
}

/// The next step for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// Ask Plan.
    Plan,
    /// Check the budget first: Bedrock is next if it allows it.
    CheckBudget,
    /// Bedrock, with the reason it took over from Plan (none for `bedrock_only`).
    Bedrock(Option<Cow<'static, str>>),
    /// Plan's own answer, as it came.
    PlanAnswer,
    /// An answer of our own.
    Refuse(Refusal),
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    /// `bedrock_only`, and Bedrock cannot serve the model.
    NoBedrockModel,
    /// The month's Bedrock budget is spent; with Plan's failure when Plan was asked.
    BudgetSpent {
        spent_micros: i64,
        limit_micros: i64,
        resets_at: chrono::DateTime<chrono::Utc>,
        plan_failed: Option<Cow<'static, str>>,
    },
    /// `bedrock_only`, and the budget cannot be checked.
    BudgetUnknown,
}

/// Where a request goes next, from what is known. Each step learns something (Plan's
/// answer, the budget) that the next call sees, so Plan is asked at most once, the
/// budget at most once, and the last step is an answer.
fn route(facts: &Facts) -> Route {
    let bedrock_next = || match &facts.budget {
        BudgetState::NotAsked => Route::CheckBudget,
        BudgetState::Allowed => Route::Bedrock((!facts.bedrock_only).then(|| {
            facts
                .plan_failed
                .clone()
                .unwrap_or(Cow::Borrowed(facts.plan_skipped.unwrap_or("unknown")))
        })),
        BudgetState::Exceeded {
            spent_micros,
            limit_micros,
            resets_at,
        } => Route::Refuse(Refusal::BudgetSpent {
            spent_micros: *spent_micros,
            limit_micros: *limit_micros,
            resets_at: *resets_at,
            plan_failed: facts.plan_failed.clone(),
        }),
        BudgetState::Unknown => Route::Refuse(Refusal::BudgetUnknown),
    };
    if facts.bedrock_only {
        return if facts.bedrock_serves {
            bedrock_next()
        } else {
            Route::Refuse(Refusal::NoBedrockModel)
        };
    }
    match &facts.plan_failed {
        None if facts.plan_skipped.is_none() || !facts.bedrock_serves => Route::Plan,
        // Skipped, but Bedrock is no way out: Plan is the one chance left.
        None => match bedrock_next() {
            Route::Refuse(_) => Route::Plan,
            next => next,
        },
        Some(_) if !facts.bedrock_serves => Route::PlanAnswer,
        Some(_) => match bedrock_next() {
            // The budget is unknown: Plan's own answer, not a guess.
            Route::Refuse(Refusal::BudgetUnknown) => Route::PlanAnswer,
            next => next,
        },
    }
}

/// Sends Messages requests where they should go.
#[derive(Debug)]
pub struct Router {
    plan: PlanClient,
    bedrock: Option<Bedrock>,
    budget: Budget,
    cooldowns: Cooldowns,
    breakers: Breakers,
    credentials: Option<crate::credentials::Credentials>,
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
            breakers: Breakers::new(crate::breaker::BreakerConfig::default()),
            credentials: None,
            max_cooldown,
            response_timeout,
        }
    }

    /// With these circuit breaker settings.
    pub fn with_breakers(mut self, breakers: Breakers) -> Self {
        self.breakers = breakers;
        self
    }

    /// Shares cooldowns and circuits with the fleet (after [`with_breakers`](Self::with_breakers)).
    pub fn with_fleet(mut self, fleet: crate::fleet::Fleet) -> Self {
        self.cooldowns.fleet = Some(fleet.clone());
        self.breakers = self.breakers.with_fleet(fleet);
        self
    }

    /// Reads access keys' own Bedrock region and credential from `credentials`.
    pub fn with_credentials(mut self, credentials: crate::credentials::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The Plan client (for requests that only Plan answers, like `count_tokens`).
    pub fn plan(&self) -> &PlanClient {
        &self.plan
    }

    /// The circuit breakers (for `/health`).
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
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
        let target = self.bedrock.as_ref().and_then(|bedrock| {
            let model_id = bedrock.mapping().resolve(model.as_deref()?)?.to_owned();
            Some((bedrock, model_id))
        });
        let call = Call {
            caller,
            path_and_query,
            headers,
            body,
            target,
            waiting: Waiting::default(),
        };
        let answer = tokio::time::timeout(self.response_timeout, self.carry_out(&call)).await;
        let mut response = match answer {
            Ok(response) => response,
            Err(_) => call.waiting.timed_out(self.response_timeout),
        };
        if let Some(model) = model {
            response.extensions_mut().insert(RequestedModel(model));
        }
        response
    }

    /// Takes the steps [`route`] decides until one answers.
    async fn carry_out(&self, call: &Call<'_>) -> Response<Body> {
        let caller = call.caller;
        let bedrock_only =
            Routing::from_stored(&caller.user.routing_strategy) == Routing::BedrockOnly;
        let mut ticket = None;
        let mut plan_skipped = None;
        if !bedrock_only {
            if self.cooldowns.active(caller.key_id) {
                plan_skipped = Some("cooldown");
            } else {
                match self.breakers.admit(caller.key_id) {
                    Ok(admitted) => ticket = Some(admitted),
                    Err(skipped) => plan_skipped = Some(skipped.reason()),
                }
            }
        }
        let mut facts = Facts {
            bedrock_only,
            bedrock_serves: call.target.is_some(),
            plan_skipped,
            plan_failed: None,
            budget: BudgetState::NotAsked,
        };
        let mut plan_answer = None;
        loop {
            match route(&facts) {
                Route::Plan => match self.ask_plan(call, ticket.take()).await {
                    Asked::Answered(response) => return labelled(response, Provider::PLAN),
                    Asked::Failed { reason, response } => {
                        facts.plan_failed = Some(reason);
                        plan_answer = Some(response);
                    }
                },
                Route::CheckBudget => facts.budget = self.check_budget(&caller.user).await,
                Route::Bedrock(reason) => {
                    let fallback = reason.map(|reason| Fallback {
                        from: Provider::PLAN,
                        reason,
                    });
                    if let Some(fallback) = &fallback {
                        tracing::info!(reason = %fallback.reason, "served by Bedrock instead of Plan");
                    }
                    return self.ask_bedrock(call, fallback).await;
                }
                Route::PlanAnswer => {
                    let response = plan_answer
                        .take()
                        .expect("Plan was asked before its answer");
                    return labelled(response, Provider::PLAN);
                }
                Route::Refuse(refusal) => return refusal.response(),
            }
        }
    }

    /// Asks Plan; an answer to pass on, or how it failed with its response (or ours, a
    /// 502/504, when there was none). Starts the key's cooldown on a 429 with
    /// `retry-after`, and tells the circuits how it went.
    async fn ask_plan(&self, call: &Call<'_>, ticket: Option<Ticket<'_>>) -> Asked {
        call.waiting.on(Provider::PLAN, None);
        let answer = self
            .plan
            .send(call.path_and_query, call.headers, call.body.clone())
            .await;
        let reason = match &answer {
            Ok(response) => fallback_reason(response.status()),
            Err(PlanFailure::Timeout(_)) => Some("timeout"),
            Err(PlanFailure::Connect(_)) => Some("connect_error"),
        };
        let asked = match (reason, answer) {
            (None, Ok(response)) if is_event_stream(response.headers()) => {
                // A stream that opens with an error has sent nothing to the client yet.
                match open_stream(response, self.plan.header_timeout()).await {
                    Opening::Fine(response) => Asked::Answered(response),
                    Opening::Failed { reason, response } => Asked::Failed {
                        reason: Cow::Owned(reason),
                        response,
                    },
                }
            }
            (None, Ok(response)) => Asked::Answered(response.map(Body::new)),
            (reason, answer) => {
                if let Ok(response) = &answer
                    && response.status() == StatusCode::TOO_MANY_REQUESTS
                    && let Some(wait) = retry_after(response.headers(), self.max_cooldown)
                {
                    self.cooldowns.start(call.caller.key_id, wait);
                }
                Asked::Failed {
                    reason: Cow::Borrowed(reason.unwrap_or("unknown")),
                    response: response_body(answer),
                }
            }
        };
        if let Some(ticket) = ticket {
            ticket.settle(match &asked {
                Asked::Answered(_) => Verdict::Answered,
                Asked::Failed { reason, .. }
                    if matches!(reason.as_ref(), "rate_limited" | "rate_limit_error") =>
                {
                    Verdict::Neutral
                }
                Asked::Failed { .. } => Verdict::Failed,
            });
        }
        asked
    }

    /// The budget, as [`route`] reads it.
    async fn check_budget(&self, user: &crate::entity::users::Model) -> BudgetState {
        match self.budget.check(user).await {
            Ok(BudgetCheck::Allowed) => BudgetState::Allowed,
            Ok(BudgetCheck::Exceeded {
                spent_micros,
                limit_micros,
                resets_at,
            }) => BudgetState::Exceeded {
                spent_micros,
                limit_micros,
                resets_at,
            },
            Err(error) => {
                tracing::error!(%error, "budget check failed; not using Bedrock");
                BudgetState::Unknown
            }
        }
    }

    async fn ask_bedrock(&self, call: &Call<'_>, fallback: Option<Fallback>) -> Response<Body> {
        let (bedrock, model_id) = call
            .target
            .as_ref()
            .expect("the route goes to Bedrock only when it serves the model");
        call.waiting.on(Provider::BEDROCK, fallback.clone());
        let account = match self.account(call.caller).await {
            Ok(account) => account,
            Err(response) => {
                let mut response = labelled(response, Provider::BEDROCK);
                if let Some(fallback) = fallback {
                    response.extensions_mut().insert(fallback);
                }
                return response;
            }
        };
        let mut response = bedrock
            .messages(
                &call.body,
                joined_betas(call.headers).as_ref(),
                model_id,
                &account,
            )
            .await;
        let extensions = response.extensions_mut();
        extensions.insert(Provider::BEDROCK);
        extensions.insert(Region(bedrock.region_for(&account).to_owned()));
        if let Some(fallback) = fallback {
            extensions.insert(fallback);
        }
        response
    }
}

impl Router {
    /// The caller's own Bedrock region and credential, or a 503 when its credential
    /// cannot be opened (never the server's credential instead: that would bill another
    /// account).
    async fn account(&self, caller: &Authenticated) -> Result<Account, Response<Body>> {
        if caller.bedrock_credential.is_none() {
            return Ok(Account {
                region: caller.bedrock_region.clone(),
                api_key: None,
            });
        }
        let Some(credentials) = &self.credentials else {
            tracing::error!(key = %caller.key_id, "the key has a Bedrock credential, and no vault is configured");
            return Err(credential_unavailable());
        };
        credentials.account(caller).await.map_err(|error| {
            tracing::error!(key = %caller.key_id, %error, "the key's Bedrock credential could not be opened");
            credential_unavailable()
        })
    }
}

fn credential_unavailable() -> Response<Body> {
    anthropic_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "this access key's Bedrock credential could not be read; try again",
    )
}

/// How asking Plan went.
enum Asked {
    /// An answer to pass on.
    Answered(Response<Body>),
    /// A failure Bedrock may take over from: why, and the response to give otherwise.
    Failed {
        reason: Cow<'static, str>,
        response: Response<Body>,
    },
}

impl Refusal {
    /// The client's answer, labelled with the Bedrock route it belongs to (so stores and
    /// metrics agree), with the Plan failure that led there when there was one.
    fn response(self) -> Response<Body> {
        let (response, plan_failed) = match self {
            Self::NoBedrockModel => (
                anthropic_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "this access key routes to Bedrock only, and Bedrock cannot serve this model",
                ),
                None,
            ),
            Self::BudgetSpent {
                spent_micros,
                limit_micros,
                resets_at,
                plan_failed,
            } => {
                let budget = format!(
                    "monthly Bedrock budget exhausted: used ${} of ${}; resets at {}",
                    Decimal::new(spent_micros, 6),
                    Decimal::new(limit_micros, 6),
                    resets_at.to_rfc3339()
                );
                let message = match &plan_failed {
                    Some(reason) => format!("Plan is unavailable ({reason}) and the {budget}"),
                    None => budget,
                };
                (
                    anthropic_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", &message),
                    plan_failed,
                )
            }
            Self::BudgetUnknown => (
                anthropic_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "the budget could not be checked; try again",
                ),
                None,
            ),
        };
        let mut response = labelled(response, Provider::BEDROCK);
        if let Some(reason) = plan_failed {
            response.extensions_mut().insert(Fallback {
                from: Provider::PLAN,
                reason,
            });
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
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    body: Bytes,
    /// Bedrock and the model id that serves the request there, if it can.
    target: Option<(&'a Bedrock, String)>,
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

    fn facts(bedrock_only: bool, bedrock_serves: bool) -> Facts {
        Facts {
            bedrock_only,
            bedrock_serves,
            plan_skipped: None,
            plan_failed: None,
            budget: BudgetState::NotAsked,
        }
    }

    fn spent() -> BudgetState {
        BudgetState::Exceeded {
            spent_micros: 2,
            limit_micros: 1,
            resets_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn bedrock_only_goes_to_bedrock_or_is_refused() {
        assert_eq!(
            route(&facts(true, false)),
            Route::Refuse(Refusal::NoBedrockModel)
        );
        let mut known = facts(true, true);
        assert_eq!(route(&known), Route::CheckBudget);
        known.budget = BudgetState::Allowed;
        assert_eq!(route(&known), Route::Bedrock(None));
        known.budget = BudgetState::Unknown;
        assert_eq!(route(&known), Route::Refuse(Refusal::BudgetUnknown));
        known.budget = spent();
        assert!(matches!(
            route(&known),
            Route::Refuse(Refusal::BudgetSpent {
                plan_failed: None,
                ..
            })
        ));
    }

    #[test]
    fn plan_first_asks_plan_unless_it_is_skipped_and_bedrock_may_serve() {
        assert_eq!(route(&facts(false, true)), Route::Plan);
        let mut skipped = facts(false, false);
        skipped.plan_skipped = Some("key_circuit_open");
        assert_eq!(route(&skipped), Route::Plan, "no Bedrock for the model");
        skipped.bedrock_serves = true;
        assert_eq!(route(&skipped), Route::CheckBudget);
        skipped.budget = BudgetState::Allowed;
        assert_eq!(
            route(&skipped),
            Route::Bedrock(Some(Cow::Borrowed("key_circuit_open")))
        );
        for budget in [spent(), BudgetState::Unknown] {
            skipped.budget = budget;
            assert_eq!(route(&skipped), Route::Plan, "Plan is the one chance left");
        }
    }

    #[test]
    fn a_failed_plan_falls_back_within_the_budget_or_says_it_is_spent() {
        let mut failed = facts(false, false);
        failed.plan_failed = Some(Cow::Borrowed("rate_limited"));
        assert_eq!(route(&failed), Route::PlanAnswer);
        failed.bedrock_serves = true;
        assert_eq!(route(&failed), Route::CheckBudget);
        failed.budget = BudgetState::Allowed;
        assert_eq!(
            route(&failed),
            Route::Bedrock(Some(Cow::Borrowed("rate_limited")))
        );
        failed.budget = BudgetState::Unknown;
        assert_eq!(route(&failed), Route::PlanAnswer);
        failed.budget = spent();
        assert_eq!(
            route(&failed),
            Route::Refuse(Refusal::BudgetSpent {
                spent_micros: 2,
                limit_micros: 1,
                resets_at: chrono::DateTime::UNIX_EPOCH,
                plan_failed: Some(Cow::Borrowed("rate_limited")),
            })
        );
    }

    proptest::proptest! {
        /// For any situation and any answers, the steps end in an answer within four,
        /// asking Plan and the budget at most once each; Bedrock is reached only when it
        /// serves the model and the budget allows it, a spent budget is said only when it
        /// is spent, and Plan's own answer is given only after Plan was asked.
        #[test]
        fn the_steps_always_end_in_an_answer(
            bedrock_only: bool,
            bedrock_serves: bool,
            skipped: bool,
            plan_fails: bool,
            budget in 0..3u8,
        ) {
            let mut known = facts(bedrock_only, bedrock_serves);
            known.plan_skipped = skipped.then_some("cooldown");
            let (mut plans, mut budgets) = (0, 0);
            let end = loop {
                proptest::prop_assert!(plans + budgets < 3);
                match route(&known) {
                    Route::Plan => {
                        plans += 1;
                        if !plan_fails {
                            break Route::Plan;
                        }
                        known.plan_failed = Some(Cow::Borrowed("server_error"));
                    }
                    Route::CheckBudget => {
                        budgets += 1;
                        known.budget = match budget {
                            0 => BudgetState::Allowed,
                            1 => spent(),
                            _ => BudgetState::Unknown,
                        };
                    }
                    answer => break answer,
                }
            };
            proptest::prop_assert!(plans <= 1 && budgets <= 1);
            match end {
                Route::Bedrock(_) => proptest::prop_assert!(bedrock_serves && budget == 0),
                Route::Refuse(Refusal::BudgetSpent { .. }) => proptest::prop_assert!(budget == 1),
                Route::PlanAnswer => proptest::prop_assert!(plans == 1),
                Route::Plan => proptest::prop_assert!(!bedrock_only),
                _ => {}
            }
            if bedrock_only {
                proptest::prop_assert_eq!(plans, 0);
            }
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
