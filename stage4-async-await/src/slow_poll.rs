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
