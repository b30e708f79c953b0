//! What goes wrong with a configuration.

use bulwark_core::error::ConfigError;
use std::fmt;

/// A configuration (a file, the environment) that cannot be loaded or
/// used: where (`breaker.payments.failure_rate`) and why. Loading and
/// validating never panic and never fall back to a default: they return
/// this.
///
/// It is the file's side of an invalid setting. A setting a layer's own
/// builder refused is also there as the error's
/// [`source`](std::error::Error::source): the layer's
/// [`ConfigError`](bulwark_core::error::ConfigError), which names the
/// layer and the setting as a program that built the layer in code would
/// see it.
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
pub struct LoadError {
    path: String,
    reason: String,
    origin: Option<String>,
    /// Boxed: the error stays small on the `Result`s it travels in.
    setting: Option<Box<ConfigError>>,
}

fn join(at: &str, rest: &str) -> String {
    match (at.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => at.to_owned(),
        _ => format!("{at}.{rest}"),
    }
}

impl LoadError {
    pub(crate) fn invalid(at: &str, field: &str, reason: String) -> Self {
        LoadError {
            path: join(at, field),
            reason,
            origin: None,
            setting: None,
        }
    }

    /// A setting under `at` that a layer's builder refused (`field` in
    /// the file, when it calls the setting otherwise).
    pub(crate) fn setting(at: &str, field: &str, e: ConfigError) -> Self {
        LoadError {
            path: join(at, field),
            reason: e.reason().to_owned(),
            origin: None,
            setting: Some(Box::new(e)),
        }
    }

    /// A setting under `at` that a layer's builder refused, named as the
    /// builder names it.
    pub(crate) fn from_core(at: &str, e: ConfigError) -> Self {
        LoadError::setting(at, e.field(), e)
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

impl fmt::Display for LoadError {
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

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.setting
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A reload that could not apply everything: each instance listed kept its
/// previous settings; every other instance took the new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError {
    errors: Vec<LoadError>,
}

impl ReloadError {
    pub(crate) fn new(errors: Vec<LoadError>) -> Self {
        ReloadError { errors }
    }

    /// What could not be applied, one error per instance.
    pub fn errors(&self) -> &[LoadError] {
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
