//! The slow-poll warning: a poll that takes longer than a threshold blocked the loop,
//! and every other task waited that long. The loop times every poll and reports the ones
//! over the threshold here, naming the task (the anti-patterns chapter shows it firing).

use std::fmt;
use std::time::Duration;

use crate::task::TaskInfo;

/// How long one poll may take before the loop warns that a task blocked it.
pub const DEFAULT_SLOW_POLL_THRESHOLD: Duration = Duration::from_millis(100);

/// A poll that took longer than the loop's threshold: every other task waited that long.
#[derive(Debug, Clone, Copy)]
pub struct SlowPoll {
    /// The task whose poll it was.
    pub task: TaskInfo,
    /// How long the poll took.
    pub took: Duration,
    /// The threshold it crossed.
    pub threshold: Duration,
}

impl fmt::Display for SlowPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {} blocked the event loop for {} ms in one poll (threshold {} ms); \
             is there a blocking call (std::thread::sleep, std::net, heavy computation) \
             in async code?",
            self.task,
            self.took.as_millis(),
            self.threshold.as_millis()
        )
    }
}

/// The clock of the slow-poll watch, since some fixed origin: on Linux the kernel's
/// tick-level `CLOCK_MONOTONIC_COARSE` (a few nanoseconds to read against about 25 for
/// the precise clock, and precise to a tick, 1 to 4 ms), elsewhere `Instant`.
#[cfg(target_os = "linux")]
pub(crate) fn watch_clock() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec, and the clock id is a constant the
    // kernel knows (since Linux 2.6.32).
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    if status != 0 {
        return Duration::ZERO; // cannot fail; if it did, no warning rather than a panic
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The clock of the slow-poll watch, since the first time it was read.
#[cfg(not(target_os = "linux"))]
pub(crate) fn watch_clock() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

pub(crate) type SlowPollHook = Box<dyn Fn(&SlowPoll)>;

/// The loop's threshold, and where its warnings go (stderr unless a hook is set).
pub(crate) struct SlowPolls {
    pub(crate) threshold: Duration,
    pub(crate) hook: Option<SlowPollHook>,
}

impl SlowPolls {
    pub(crate) fn new() -> SlowPolls {
        SlowPolls {
            threshold: DEFAULT_SLOW_POLL_THRESHOLD,
            hook: None,
        }
    }

    /// Reports the poll of `task` that took `took`, if that is over the threshold.
    pub(crate) fn check(&self, task: TaskInfo, took: Duration) {
        if took < self.threshold {
            return;
        }
        let slow = SlowPoll {
            task,
            took,
            threshold: self.threshold,
        };
        match &self.hook {
            Some(hook) => hook(&slow),
            None => eprintln!("{slow}"),
        }
    }
}
