//! Placeholder: the bulkhead layer is being built (see the open issue).
#![forbid(unsafe_code)]
