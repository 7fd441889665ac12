//! How a filter is run and what it may be given: its failure policy, its isolation, the
//! direction of the traffic it sees, and the limits every filter definition is checked against
//! (the proxy's config file, a control plane snapshot and a control plane definition alike).

use serde::Deserialize;

/// Which way a listener's traffic flows relative to the application next to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Clients calling the application. The default.
    #[default]
    Inbound,
    /// The application calling other services.
    Outbound,
}

/// What happens to a request when its filter traps, runs out of time or reports an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Reject the request. The default.
    #[default]
    FailClosed,
    /// Skip the filter and go on.
    FailOpen,
}

impl FailurePolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail_closed",
            FailurePolicy::FailOpen => "fail_open",
        }
    }
}

/// How filter instances relate to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Instances are reused across requests. The default.
    #[default]
    Pooled,
    /// Every request gets a fresh instance.
    PerRequest,
}

/// What one filter may be given, wherever it is defined: the config file, a control plane
/// snapshot, or a control plane definition.
pub mod limits {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// A hook call's time budget when none is given.
    pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(50);
    /// The largest time budget (budgets must also be more than 0).
    pub const MAX_TIME_BUDGET: Duration = Duration::from_secs(10);
    /// An instance's linear memory limit when none is given: 32 MiB.
    pub const DEFAULT_MAX_MEMORY: u64 = 32 << 20;
    /// The memory limits allowed: 1 MiB to 4 GiB.
    pub const MAX_MEMORY_RANGE: RangeInclusive<u64> = (1 << 20)..=(4 << 30);
}
