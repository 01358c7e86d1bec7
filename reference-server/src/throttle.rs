//! Log lines that could repeat per request or per connection, at most once a minute.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets an event through at most once per [`Throttle::EVERY`], counting the rest.
#[derive(Debug, Default)]
pub struct Throttle(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// The shortest time between two events let through.
    pub const EVERY: Duration = Duration::from_secs(60);

    /// `Some(n)` when this event may be logged — `n` events (this one included) since
    /// the last one that was — else `None`.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        state.suppressed += 1;
        if state.last.is_some_and(|last| now - last < Self::EVERY) {
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}
