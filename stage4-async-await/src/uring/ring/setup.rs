//! Setting the ring up: the flags that suit one thread doing all the work, what the
//! driver needs of the kernel, and which kernel this is.

use std::io;

use io_uring::{IoUring, opcode};
use shared::uring::UringSetup;

use super::ENTRIES;

// ANCHOR: setup_flags
/// Builds the ring with the setup flags that suit one thread doing all the work, the
/// newest the kernel takes:
///
/// - `SINGLE_ISSUER` and `DEFER_TASKRUN` (Linux 6.1): the kernel finishes operations
///   (posts their completions) only when this thread enters the ring to wait or to
///   submit, in one batch, instead of interrupting it whenever one is done;
/// - else `COOP_TASKRUN` (5.19): it does not interrupt the thread either, but finishes
///   them at its next system call;
/// - else none.
///
/// `TASKRUN_FLAG` comes with either, so that a turn that has nothing to submit still
/// enters when completions are waiting to be posted (see `Ring::submit`). A completion
/// queue larger than the submission queue: a turn may complete more operations than it
/// submits (beyond it, the kernel keeps the overflow).
pub(super) fn build() -> io::Result<IoUring> {
    let mut deferred = IoUring::builder();
    deferred
        .setup_cqsize(8 * ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag();
    let mut cooperative = IoUring::builder();
    cooperative
        .setup_cqsize(8 * ENTRIES)
        .setup_coop_taskrun()
        .setup_taskrun_flag();
    let mut plain = IoUring::builder();
    plain.setup_cqsize(8 * ENTRIES);
    deferred
        .build(ENTRIES)
        .or_else(|_| cooperative.build(ENTRIES))
        .or_else(|_| plain.build(ENTRIES))
}
// ANCHOR_END: setup_flags

/// What this driver submits (all there since Linux 5.6; a multishot accept needs 5.19,
/// and falls back to one accept per connection), and what it says where io_uring is
/// unusable.
pub(super) const SETUP: UringSetup = UringSetup {
    who: "the uring driver",
    needs: &[
        ("accept", opcode::Accept::CODE),
        ("connect", opcode::Connect::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("close", opcode::Close::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
        ("timeout", opcode::Timeout::CODE),
    ],
    instead: "Use --driver mio (the default)",
    simulate_var: "STAGE4_URING_SIMULATE",
    simulate_fn: "uring::simulate_setup_error",
};
