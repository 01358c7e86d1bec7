//! Circuit breakers on the Plan path: one for Plan as a whole, one per access key.
//!
//! A circuit is **closed** while Plan answers. After `failures` retryable failures (a
//! 5xx, 529, a stream that opens with an error, no response headers in time, no
//! connection) within `window`, it **opens**: Plan is skipped — the request goes to
//! Bedrock at once, where it may — for `open_for`. Then it is **half-open**: the next
//! request is the probe and goes to Plan, the others still skip it; the probe's answer
//! closes the circuit again, or its failure opens it for another `open_for`. A probe that
//! ends without a verdict (the client went away) lets the next request probe.
//!
//! The key's circuit catches one account's trouble (its quota, its organisation's
//! outage); Plan's catches an outage of Plan for everyone, counted over all keys, with
//! its own threshold. A 429 counts toward neither: its `retry-after` starts the key's
//! cooldown instead (see [`crate::routing`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// When circuits open and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Retryable failures of one key within `window` that open its circuit; 0: never.
    pub key_failures: u32,
    /// Retryable failures of all keys within `window` that open Plan's circuit; 0: never.
    pub plan_failures: u32,
    /// The window the failures are counted in.
    pub window: Duration,
    /// How long an open circuit skips Plan before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            key_failures: 5,
            plan_failures: 20,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
        }
    }
}

/// One circuit's state.
#[derive(Debug)]
enum State {
    /// Plan is asked; the recent failures.
    Closed(VecDeque<Instant>),
    /// Plan is skipped until then.
    Open(Instant),
    /// One probe may ask Plan; `true` while it is out.
    HalfOpen(bool),
}

impl Default for State {
    fn default() -> Self {
        Self::Closed(VecDeque::new())
    }
}

/// What a circuit lets a request do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    Ask,
    Probe,
    Skip,
}

/// One circuit.
#[derive(Debug, Default)]
struct Circuit {
    state: State,
}

impl Circuit {
    fn admit(&mut self, now: Instant) -> Admit {
        match &mut self.state {
            State::Closed(_) => Admit::Ask,
            State::Open(until) if now < *until => Admit::Skip,
            State::Open(_) | State::HalfOpen(false) => {
                self.state = State::HalfOpen(true);
                Admit::Probe
            }
            State::HalfOpen(true) => Admit::Skip,
        }
    }

    /// A failure seen now (`probe`: the half-open probe's); `true` if the circuit opened.
    fn failed(
        &mut self,
        now: Instant,
        probe: bool,
        threshold: u32,
        config: &BreakerConfig,
    ) -> bool {
        match &mut self.state {
            State::HalfOpen(true) if probe => {
                self.state = State::Open(now + config.open_for);
                true
            }
            State::Closed(failures) if threshold > 0 => {
                while failures
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= config.window)
                {
                    failures.pop_front();
                }
                failures.push_back(now);
                if failures.len() >= threshold as usize {
                    self.state = State::Open(now + config.open_for);
                    return true;
                }
                false
            }
            // Requests let through before the circuit opened, or while a probe is out.
            _ => false,
        }
    }

    /// An answer; `true` if it closed the circuit.
    fn answered(&mut self, probe: bool) -> bool {
        match &mut self.state {
            State::HalfOpen(true) if probe => {
                self.state = State::default();
                true
            }
            State::Closed(failures) => {
                failures.clear();
                false
            }
            _ => false,
        }
    }

    /// The probe ended without a verdict: the next request probes.
    fn abandoned(&mut self) {
        if let State::HalfOpen(true) = self.state {
            self.state = State::HalfOpen(false);
        }
    }

    fn name(&self, now: Instant) -> &'static str {
        match self.state {
            State::Closed(_) => "closed",
            State::Open(until) if now < until => "open",
            State::Open(_) | State::HalfOpen(_) => "half_open",
        }
    }

    /// Nothing to remember: a key's entry can go.
    fn is_idle(&self) -> bool {
        matches!(&self.state, State::Closed(failures) if failures.is_empty())
    }
}

/// Why Plan was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Plan's own circuit is open (or its probe is out).
    PlanCircuitOpen,
    /// The key's circuit is open (or its probe is out).
    KeyCircuitOpen,
}

impl Skipped {
    /// The fallback reason a record carries.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PlanCircuitOpen => "plan_circuit_open",
            Self::KeyCircuitOpen => "key_circuit_open",
        }
    }
}

/// How a request that asked Plan ended, for the circuits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Plan answered (any status but the retryable ones).
    Answered,
    /// A retryable failure.
    Failed,
    /// Neither (a 429: the cooldown's business).
    Neutral,
}

/// The circuits of Plan and of every key that failed lately.
#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    plan: Mutex<Circuit>,
    keys: Mutex<HashMap<Uuid, Circuit>>,
    /// Where circuits opened here are announced, and opened elsewhere are learnt.
    fleet: Option<crate::fleet::Fleet>,
}

impl Breakers {
    /// Closed circuits.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            plan: Mutex::default(),
            keys: Mutex::default(),
            fleet: None,
        }
    }

    /// Shares circuits with the fleet: one opened on any proxy skips Plan on all until its
    /// time is up (see [`crate::fleet`]).
    pub fn with_fleet(mut self, fleet: crate::fleet::Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Lets a request for `key` ask Plan (with a ticket to report how it went), or says
    /// why it must not.
    pub fn admit(&self, key: Uuid) -> Result<Ticket<'_>, Skipped> {
        if let Some(fleet) = &self.fleet {
            if fleet.circuit_open(None) {
                return Err(Skipped::PlanCircuitOpen);
            }
            if fleet.circuit_open(Some(key)) {
                return Err(Skipped::KeyCircuitOpen);
            }
        }
        let now = Instant::now();
        let plan = lock(&self.plan).admit(now);
        if plan == Admit::Skip {
            return Err(Skipped::PlanCircuitOpen);
        }
        let key_admit = lock(&self.keys)
            .get_mut(&key)
            .map_or(Admit::Ask, |circuit| circuit.admit(now));
        if key_admit == Admit::Skip {
            if plan == Admit::Probe {
                lock(&self.plan).abandoned();
            }
            return Err(Skipped::KeyCircuitOpen);
        }
        Ok(Ticket {
            breakers: self,
            key,
            plan_probe: plan == Admit::Probe,
            key_probe: key_admit == Admit::Probe,
            done: false,
        })
    }

    /// Plan's circuit: `closed`, `open` or `half_open`.
    pub fn plan_state(&self) -> &'static str {
        if self
            .fleet
            .as_ref()
            .is_some_and(|fleet| fleet.circuit_open(None))
        {
            return "open";
        }
        lock(&self.plan).name(Instant::now())
    }

    /// How many keys' circuits are open or half-open.
    pub fn keys_open(&self) -> usize {
        let now = Instant::now();
        lock(&self.keys)
            .values()
            .filter(|circuit| circuit.name(now) != "closed")
            .count()
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn settle(&self, ticket: &Ticket<'_>, verdict: Verdict) {
        let now = Instant::now();
        let config = &self.config;
        {
            let mut plan = lock(&self.plan);
            match verdict {
                Verdict::Failed => {
                    if plan.failed(now, ticket.plan_probe, config.plan_failures, config) {
                        tracing::warn!(
                            open_for_secs = config.open_for.as_secs(),
                            "Plan failing for everyone: its circuit is open, Plan is skipped"
                        );
                        opened("plan");
                        if let Some(fleet) = &self.fleet {
                            fleet.circuit_opened(None, config.open_for);
                        }
                    }
                }
                Verdict::Answered => {
                    if plan.answered(ticket.plan_probe) {
                        tracing::info!("Plan answers again: its circuit is closed");
                        closed("plan");
                        if let Some(fleet) = &self.fleet {
                            fleet.circuit_closed(None);
                        }
                    }
                }
                Verdict::Neutral if ticket.plan_probe => plan.abandoned(),
                Verdict::Neutral => {}
            }
            metrics::gauge!("proxy_plan_circuit_open").set(f64::from(plan.name(now) != "closed"));
        }
        let mut keys = lock(&self.keys);
        match verdict {
            Verdict::Failed => {
                let circuit = keys.entry(ticket.key).or_default();
                if circuit.failed(now, ticket.key_probe, config.key_failures, config) {
                    tracing::warn!(
                        key = %ticket.key,
                        open_for_secs = config.open_for.as_secs(),
                        "Plan failing for this key: its circuit is open, Plan is skipped for it"
                    );
                    opened("key");
                    if let Some(fleet) = &self.fleet {
                        fleet.circuit_opened(Some(ticket.key), config.open_for);
                    }
                }
            }
            Verdict::Answered => {
                if let Some(circuit) = keys.get_mut(&ticket.key) {
                    if circuit.answered(ticket.key_probe) {
                        tracing::info!(key = %ticket.key, "Plan answers this key again: its circuit is closed");
                        closed("key");
                        if let Some(fleet) = &self.fleet {
                            fleet.circuit_closed(Some(ticket.key));
                        }
                    }
                    if circuit.is_idle() {
                        keys.remove(&ticket.key);
                    }
                }
            }
            Verdict::Neutral => {
                if ticket.key_probe
                    && let Some(circuit) = keys.get_mut(&ticket.key)
                {
                    circuit.abandoned();
                }
            }
        }
    }
}

fn opened(scope: &'static str) {
    metrics::counter!("proxy_circuit_opened_total", "scope" => scope).increment(1);
}

fn closed(scope: &'static str) {
    metrics::counter!("proxy_circuit_closed_total", "scope" => scope).increment(1);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request's leave to ask Plan: says how it went ([`settle`](Self::settle)); dropped
/// without a verdict, it gives up any probe it held.
#[derive(Debug)]
pub struct Ticket<'a> {
    breakers: &'a Breakers,
    key: Uuid,
    plan_probe: bool,
    key_probe: bool,
    done: bool,
}

impl Ticket<'_> {
    /// Reports how Plan did.
    pub fn settle(mut self, verdict: Verdict) {
        self.done = true;
        self.breakers.settle(&self, verdict);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breakers.settle(self, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            key_failures: 3,
            plan_failures: 5,
            window: Duration::from_secs(60),
            open_for: Duration::ZERO,
        }
    }

    fn fail(breakers: &Breakers, key: Uuid) {
        breakers
            .admit(key)
            .expect("admitted")
            .settle(Verdict::Failed);
    }

    #[test]
    fn a_keys_failures_open_its_circuit_only() {
        let breakers = Breakers::new(BreakerConfig {
            open_for: Duration::from_secs(60),
            ..config()
        });
        let (key, other) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            fail(&breakers, key);
        }
        assert_eq!(breakers.admit(key).unwrap_err(), Skipped::KeyCircuitOpen);
        assert!(breakers.admit(other).is_ok(), "another key still asks Plan");
        assert_eq!(breakers.keys_open(), 1);
        assert_eq!(breakers.plan_state(), "closed");
    }

    #[test]
    fn failures_of_many_keys_open_plans_circuit() {
        let breakers = Breakers::new(BreakerConfig {
            open_for: Duration::from_secs(60),
            ..config()
        });
        for _ in 0..5 {
            fail(&breakers, Uuid::now_v7());
        }
        assert_eq!(breakers.plan_state(), "open");
        assert_eq!(
            breakers.admit(Uuid::now_v7()).unwrap_err(),
            Skipped::PlanCircuitOpen
        );
    }

    #[test]
    fn an_answer_clears_the_count_and_429s_do_not_count() {
        let breakers = Breakers::new(config());
        let key = Uuid::now_v7();
        fail(&breakers, key);
        fail(&breakers, key);
        breakers.admit(key).unwrap().settle(Verdict::Answered);
        assert_eq!(breakers.keys_open(), 0, "an idle key is forgotten");
        fail(&breakers, key);
        for _ in 0..10 {
            breakers.admit(key).unwrap().settle(Verdict::Neutral);
        }
        fail(&breakers, key);
        assert!(
            breakers.admit(key).is_ok(),
            "two failures in a row, not three"
        );
    }

    #[test]
    fn one_probe_at_a_time_decides_half_open() {
        let breakers = Breakers::new(config());
        let key = Uuid::now_v7();
        for _ in 0..3 {
            fail(&breakers, key);
        }
        // Open for zero seconds: half-open at once.
        let probe = breakers.admit(key).expect("the probe");
        assert_eq!(breakers.admit(key).unwrap_err(), Skipped::KeyCircuitOpen);
        probe.settle(Verdict::Failed);
        let probe = breakers.admit(key).expect("the next probe");
        drop(probe);
        let probe = breakers
            .admit(key)
            .expect("an abandoned probe lets another one go");
        probe.settle(Verdict::Answered);
        assert!(breakers.admit(key).is_ok() && breakers.admit(key).is_ok());
        assert_eq!(breakers.keys_open(), 0);
    }

    #[test]
    fn one_request_can_probe_both_circuits() {
        let breakers = Breakers::new(config());
        let key = Uuid::now_v7();
        for _ in 0..3 {
            fail(&breakers, key);
        }
        for _ in 0..2 {
            fail(&breakers, Uuid::now_v7());
        }
        // Plan's circuit opened (5 failures) and is half-open; the key's too.
        let probe = breakers.admit(key).expect("probes both");
        assert_eq!(
            breakers.admit(Uuid::now_v7()).unwrap_err(),
            Skipped::PlanCircuitOpen
        );
        probe.settle(Verdict::Answered);
        assert_eq!(breakers.plan_state(), "closed");
    }

    #[test]
    fn zero_disables() {
        let breakers = Breakers::new(BreakerConfig {
            key_failures: 0,
            plan_failures: 0,
            ..config()
        });
        let key = Uuid::now_v7();
        for _ in 0..100 {
            fail(&breakers, key);
        }
        assert!(breakers.admit(key).is_ok());
    }
}
