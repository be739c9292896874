//! The stack pool and its guard pages, through the public API: stacks are distinct,
//! aligned and reused; `mprotect` guards split the mapping and `madvise` guards do not;
//! the mapping budget is checked before the guards run out. (The pool's release and the
//! fault handler's lookup are unit tests beside their code: they read its private state.)
//!
//! `cargo test -p stage3-generators --test stack`
#![cfg(not(miri))]

use stage3_generators::stack::Stack;
#[cfg(target_os = "linux")]
use stage3_generators::stack::{Guard, check_stack_budget, force_mprotect_guards, guard_kind};

/// The mappings of this process that overlap `range`: counted there only, so that
/// tests running beside this one, mapping and unmapping, cannot change the count.
#[cfg(target_os = "linux")]
fn mappings_in(range: std::ops::Range<usize>) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| {
            let (start, rest) = line.split_once('-')?;
            let end = rest.split_whitespace().next()?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some(start < range.end && end > range.start)
        })
        .filter(|&overlaps| overlaps)
        .count()
}

#[test]
fn stacks_are_distinct_aligned_and_recycled() {
    let a = Stack::take().unwrap();
    let b = Stack::take().unwrap();
    assert_ne!(a.top(), b.top());
    assert_eq!(a.top() as usize % 16, 0);
    let top = b.top();
    b.give_back();
    let c = Stack::take().unwrap();
    assert_eq!(c.top(), top, "a freed stack is reused first");
    a.give_back();
    c.give_back();
}

// Run on fresh threads: each has its own pool, so the chunks they map are theirs.
#[cfg(target_os = "linux")]
#[test]
fn mprotect_guards_split_the_mapping_and_madvise_guards_do_not() {
    let count = |force: bool| {
        std::thread::spawn(move || {
            force_mprotect_guards(force);
            let stacks: Vec<Stack> = (0..100).map(|_| Stack::take().unwrap()).collect();
            let low = stacks.iter().map(|s| s.guard_page().start).min().unwrap();
            let high = stacks.iter().map(|s| s.top() as usize).max().unwrap();
            // One mapping for the whole span if nothing split it.
            let grown = mappings_in(low..high);
            (stacks[0].guard(), grown)
        })
        .join()
        .unwrap()
    };
    let (guard, grown) = count(true);
    assert_eq!(guard, Guard::Mprotect);
    assert!(grown >= 150, "100 mprotect guards: {grown} new mappings");
    let (guard, grown) = count(false);
    if guard == Guard::Madvise {
        assert!(grown < 20, "100 madvise guards: {grown} new mappings");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_mapping_budget_is_checked_before_mprotect_guards_run_out() {
    std::thread::spawn(|| {
        force_mprotect_guards(true);
        assert_eq!(guard_kind().unwrap(), Guard::Mprotect);
        check_stack_budget(1000).unwrap();
        let error = check_stack_budget(100_000).unwrap_err();
        assert!(matches!(error, shared::Error::Limit { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("vm.max_map_count"), "{text}");
        assert!(text.contains("Use at most"), "{text}");
        force_mprotect_guards(false);
        if guard_kind().unwrap() == Guard::Madvise {
            check_stack_budget(1_000_000).unwrap();
        }
    })
    .join()
    .unwrap();
}
