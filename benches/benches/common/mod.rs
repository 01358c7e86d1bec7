//! What the criterion benches share.

use std::time::Duration;

use criterion::Criterion;

/// Short and many: the table script repeats a whole bench in interleaved rounds.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(900))
        .sample_size(20)
        .without_plots()
}
