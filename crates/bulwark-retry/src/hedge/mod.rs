//! Hedging (in progress).
