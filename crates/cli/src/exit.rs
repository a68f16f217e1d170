//! What a library's error means for the exit code, in one table: the user's to fix (bad
//! flags, files, names: [`Usage`], exit 2) or the run's or the machine's (exit 1).

/// An error that is the user's to fix: printed as one line, exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// A library error the CLI reports: whether it is the user's to fix.
pub(crate) trait Fault: std::error::Error + Send + Sync + Sized + 'static {
    /// True when the user can fix it (exit 2); false for a failed run (exit 1).
    fn is_usage(&self) -> bool;
}

/// The error for `main`: a [`Usage`] (exit 2) when it is the user's to fix, else as it is
/// (exit 1, its cause chain printed).
pub(crate) fn fault(e: impl Fault) -> anyhow::Error {
    if e.is_usage() {
        Usage(e.to_string()).into()
    } else {
        e.into()
    }
}

/// Every variant the user's to fix.
macro_rules! usage_always {
    ($($t:ty),* $(,)?) => {$(
        impl Fault for $t {
            fn is_usage(&self) -> bool {
                true
            }
        }
    )*};
}

usage_always!(
    demo::scenario::ScenarioError,
    demo::ctl::CtlError,
    load::SpecError,
    pace::PaceError,
    report::runfile::RunFileError,
    report::runfile::Unreadable,
);

/// An aggregator that is not who it should be is a failure (exit 1), not a usage error.
impl Fault for fleet::bot::BotError {
    fn is_usage(&self) -> bool {
        !matches!(self, fleet::bot::BotError::Certificate(..))
    }
}

impl Fault for kapi::Error {
    fn is_usage(&self) -> bool {
        matches!(self, kapi::Error::Usage(_))
    }
}

impl Fault for nodes::Error {
    fn is_usage(&self) -> bool {
        matches!(self, nodes::Error::Usage(_))
    }
}

impl Fault for k8s::Error {
    fn is_usage(&self) -> bool {
        matches!(self, k8s::Error::Usage(_))
    }
}

impl Fault for load::LoadError {
    fn is_usage(&self) -> bool {
        // A worker thread that cannot start is the machine's problem, not the flags'.
        !matches!(self, load::LoadError::Thread(_))
    }
}

impl Fault for serve::ServeError {
    fn is_usage(&self) -> bool {
        matches!(self, serve::ServeError::Label(_))
    }
}

impl Fault for balance::BalanceError {
    fn is_usage(&self) -> bool {
        matches!(self, balance::BalanceError::File(..))
    }
}

impl Fault for fleet::agg::AggError {
    fn is_usage(&self) -> bool {
        !matches!(self, fleet::agg::AggError::Start(_))
    }
}
