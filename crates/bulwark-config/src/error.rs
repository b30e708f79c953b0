//! What goes wrong with a configuration.

use std::fmt;

/// A configuration that cannot work: where (`breaker.payments.failure_rate`)
/// and why. Loading and validating never panic and never fall back to a
/// default: they return this.
///
/// ```
/// use bulwark::config::ResilienceConfig;
///
/// let err = ResilienceConfig::from_toml_str("[breaker.payments]\nfailure_rate = 1.5").unwrap_err();
/// assert_eq!(err.path(), "breaker.payments.failure_rate");
/// assert_eq!(err.reason(), "must be in (0, 1], got 1.5");
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration: `breaker.payments.failure_rate` must be in (0, 1], got 1.5 (set in TOML source string)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    reason: String,
    origin: Option<String>,
}

fn join(at: &str, rest: &str) -> String {
    match (at.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => at.to_owned(),
        _ => format!("{at}.{rest}"),
    }
}

impl ConfigError {
    pub(crate) fn invalid(at: &str, field: &str, reason: String) -> Self {
        ConfigError {
            path: join(at, field),
            reason,
            origin: None,
        }
    }

    pub(crate) fn at(mut self, at: &str) -> Self {
        self.path = join(at, &self.path);
        self
    }

    pub(crate) fn with_origin(mut self, origin: Option<String>) -> Self {
        if self.origin.is_none() {
            self.origin = origin;
        }
        self
    }

    /// Which source set the value, when known: e.g. "TOML file
    /// `/etc/app/bulwark.toml`" or "`BULWARK_` environment variable(s)".
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The dotted path of the offending setting, e.g.
    /// `breaker.payments.failure_rate` (empty for the file as a whole).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The setting's own name: the last part of the [`path`](Self::path).
    pub fn field(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or("")
    }

    /// Why it cannot work.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)?;
        } else {
            write!(f, "invalid configuration: `{}` {}", self.path, self.reason)?;
        }
        match &self.origin {
            Some(origin) => write!(f, " (set in {origin})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A reload that could not apply everything: each instance listed kept its
/// previous settings; every other instance took the new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError {
    errors: Vec<ConfigError>,
}

impl ReloadError {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        ReloadError { errors }
    }

    /// What could not be applied, one error per instance.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reload applied only in part: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ReloadError {}
