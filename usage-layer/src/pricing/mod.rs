//! Prices (being written).
