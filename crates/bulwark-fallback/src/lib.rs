//! Placeholder: the fallback layer is being built (see the open issue).
#![forbid(unsafe_code)]
