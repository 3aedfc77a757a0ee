//! The consensus thread's scheduling priority.
//!
//! Every step of a height (build or verify the block, vote, commit) runs on the
//! consensus thread, one after the other; admission, relaying and HTTP run beside it and
//! can wait. When the cores are contended (a trading peak), a thread of equal priority
//! waits in the run queue as long as it runs, and each height takes that much longer.
//! A lower nice value lets it go first. Linux keeps a nice value per thread, so only this
//! thread changes.

use serde::{Deserialize, Serialize};

/// The nice value the consensus thread asks for unless the config says otherwise: weighs
/// about 3× a thread at the default 0 under Linux's scheduler.
pub const DEFAULT_CONSENSUS_NICE: Nice = Nice(-5);

/// A Linux nice value: from -20 (scheduled first) to 19 (last); 0 is what a thread gets
/// by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct Nice(i32);

impl Nice {
    pub const MIN: i32 = -20;
    pub const MAX: i32 = 19;
}

#[derive(Debug, thiserror::Error)]
#[error("nice value {0} is outside {min}..={max}", min = Nice::MIN, max = Nice::MAX)]
pub struct NiceOutOfRange(i32);

impl TryFrom<i32> for Nice {
    type Error = NiceOutOfRange;

    fn try_from(value: i32) -> Result<Nice, NiceOutOfRange> {
        if (Nice::MIN..=Nice::MAX).contains(&value) {
            Ok(Nice(value))
        } else {
            Err(NiceOutOfRange(value))
        }
    }
}

impl From<Nice> for i32 {
    fn from(nice: Nice) -> i32 {
        nice.0
    }
}

/// Sets the calling thread's nice value; whether it was set. Going below the current
/// value needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it (systemd: `LimitNICE=`);
/// refused, the thread keeps running at the priority it has, and the node says why.
#[cfg(target_os = "linux")]
pub fn set_this_thread(nice: Nice) -> bool {
    let nice = i32::from(nice);
    let thread = rustix::thread::gettid();
    match rustix::process::setpriority_process(Some(thread), nice) {
        Ok(()) => {
            tracing::info!(nice, "consensus thread priority set");
            true
        }
        Err(err) => {
            tracing::warn!(
                nice,
                %err,
                "cannot set the consensus thread's priority (a negative nice needs \
                 CAP_SYS_NICE or LimitNICE=); it runs at the node's, and heights slow down \
                 when the cores are busy"
            );
            false
        }
    }
}

/// Elsewhere (development builds) a nice value is per process, not per thread: left as is.
#[cfg(not(target_os = "linux"))]
pub fn set_this_thread(nice: Nice) -> bool {
    tracing::info!(
        nice = i32::from(nice),
        "consensus thread priority is only set on Linux"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_values_outside_the_kernels_range_are_refused() {
        assert!(Nice::try_from(-21).is_err());
        assert!(Nice::try_from(20).is_err());
        assert_eq!(Nice::try_from(-20).map(i32::from).ok(), Some(-20));
        assert_eq!(Nice::try_from(19).map(i32::from).ok(), Some(19));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_gets_the_nice_value_it_asks_for_and_only_that_thread() {
        // Raising a nice value needs no privilege, and 19 is the highest there is.
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let before = own();
        let lowest = Nice(Nice::MAX);
        let asked = std::thread::spawn(move || (set_this_thread(lowest), own())).join();
        assert!(matches!(asked, Ok((true, Ok(Nice::MAX)))), "{asked:?}");
        assert_eq!(own().ok(), before.ok(), "the other threads keep theirs");
    }
}
