//! A ring of provided buffers (Linux 5.19): the kernel picks a free buffer for each
//! answer a multishot receive brings, says which in the completion, and we give it back
//! once the answer is checked. So a receive needs no buffer of its own, and one `recv`
//! submitted per connection serves every answer it will ever get.
//!
//! The ring is shared memory: an array of `(addr, len, bid)` entries the kernel reads
//! from its head, and a tail (in the first entry's reserved field) that we advance to
//! hand buffers over. The kernel writes into the buffers whenever an answer comes, so
//! they are raw memory, never a Rust reference, except the one buffer a completion has
//! handed to us, until we hand it back. Both stay allocated, at the same place, for as
//! long as the kernel may use them (see `Drop`).

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// The buffers and the ring that hands them to the kernel.
pub(super) struct BufRing {
    /// The ring's entries: page-aligned, as the kernel wants them.
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// Every buffer, one after the other, `size` bytes each.
    buffers: *mut u8,
    buffers_layout: Layout,
    size: usize,
    /// How many entries (a power of two) and so how many buffers.
    count: u16,
    /// Our tail, published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// The group id the receives name; `None` until registered.
    group: Option<u16>,
    /// The kernel may still use the memory: never free it.
    leaked: bool,
}

impl BufRing {
    /// A ring of `count` buffers (rounded up to a power of two, at most 32,768) of `size`
    /// bytes, every one of them handed to the kernel once registered.
    pub(super) fn new(count: usize, size: usize) -> io::Result<BufRing> {
        let count = count.next_power_of_two().clamp(1, 1 << 15);
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let entries_layout =
            Layout::from_size_align(count * size_of::<BufRingEntry>(), 4096).map_err(invalid)?;
        let buffers_layout = Layout::from_size_align(count * size.max(1), 64).map_err(invalid)?;
        // SAFETY: both layouts have a size of at least one entry or byte, not zero.
        let (entries, buffers) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc::alloc(buffers_layout),
            )
        };
        if entries.is_null() || buffers.is_null() {
            // SAFETY: each freed only if it was allocated, with its own layout.
            unsafe {
                if !entries.is_null() {
                    alloc::dealloc(entries.cast(), entries_layout);
                }
                if !buffers.is_null() {
                    alloc::dealloc(buffers, buffers_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            entries_layout,
            buffers,
            buffers_layout,
            size: size.max(1),
            count: count as u16,
            tail: 0,
            group: None,
            leaked: false,
        };
        for bid in 0..count as u16 {
            ring.recycle(bid);
        }
        Ok(ring)
    }

    /// Registers the ring as buffer group `group` with the kernel, all its buffers free.
    pub(super) fn register(&mut self, submitter: &Submitter, group: u16) -> io::Result<()> {
        self.publish();
        // SAFETY: the ring stays allocated, unmoved, until the ring's fd is closed or the
        // group unregistered (its owner unregisters it before dropping it).
        unsafe {
            submitter.register_buf_ring_with_flags(self.entries as u64, self.count, group, 0)
        }?;
        self.group = Some(group);
        Ok(())
    }

    /// The group id to name in a receive.
    pub(super) fn group(&self) -> u16 {
        self.group.unwrap_or(0)
    }

    /// The first `len` bytes of buffer `bid`, which a completion said the kernel filled:
    /// it is ours until [`BufRing::recycle`] (which takes `&mut self`, so this borrow
    /// ends first).
    pub(super) fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count, "buffer {bid} of {}", self.count);
        let start = usize::from(bid) * self.size;
        // SAFETY: within the allocation (bid < count, len at most size); the kernel wrote
        // these bytes before posting the completion, and writes no more into this buffer
        // until it is published again.
        unsafe { std::slice::from_raw_parts(self.buffers.add(start), len.min(self.size)) }
    }

    /// Hands buffer `bid` back (to the kernel at the next [`BufRing::publish`]).
    pub(super) fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count, "buffer {bid} of {}", self.count);
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: within the allocation (bid < count): a pointer, never a reference.
        let addr = unsafe { self.buffers.add(usize::from(bid) * self.size) };
        // SAFETY: `index` is below `count`, the ring's length. The kernel reads only the
        // entries between its head and the published tail, and this one lies past it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the buffers recycled since the last call.
    pub(super) fn publish(&self) {
        // SAFETY: the tail is a u16 inside the ring's first entry, aligned for an atomic
        // u16, which the kernel reads concurrently: so an atomic store.
        let tail = unsafe { &*BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        // Release: the entries written before are visible to the kernel before the tail.
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the group: the ring's memory is ours again. Call it only when no
    /// receive that selects from it is in flight.
    pub(super) fn unregister(&mut self, submitter: &Submitter) {
        if let Some(group) = self.group.take() {
            let _ = submitter.unregister_buf_ring(group);
        }
    }

    /// Gives up the memory for good, for when the kernel might still use it.
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: allocated with these layouts in `new`; the owner unregistered the ring
        // (or closed the io_uring) with no receive in flight before dropping it, so the
        // kernel no longer reads the ring nor writes into the buffers.
        unsafe {
            alloc::dealloc(self.entries.cast(), self.entries_layout);
            alloc::dealloc(self.buffers, self.buffers_layout);
        }
    }
}
