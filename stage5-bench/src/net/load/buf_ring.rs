//! A ring of provided buffers (Linux 5.19): the kernel picks a free buffer for each
//! answer a multishot receive brings, says which in the completion, and we give it back
//! once the answer is checked. So a receive needs no buffer of its own, and one `recv`
//! submitted per connection serves every answer it will ever get.
//!
//! The ring is shared memory: an array of `(addr, len, bid)` entries the kernel reads
//! from its head, and a tail (in the first entry's reserved field) that we advance to
//! hand buffers over. Both the ring and the buffers it points to stay allocated, at the
//! same place, for as long as the kernel may use them (see [`BufRing`]'s `Drop`).

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// The buffers and the ring that hands them to the kernel.
pub(super) struct BufRing {
    /// The ring's entries: page-aligned, as the kernel wants them.
    entries: *mut BufRingEntry,
    layout: Layout,
    /// Every buffer, one after the other, `size` bytes each.
    buffers: Box<[u8]>,
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
        let layout = Layout::from_size_align(count * size_of::<BufRingEntry>(), 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout's size is at least one entry, not zero.
        let entries = unsafe { alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            layout,
            buffers: vec![0; count * size].into_boxed_slice(),
            size,
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
        // group unregistered (`Drop` unregisters it first).
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

    /// The first `len` bytes of buffer `bid`, which the kernel filled.
    pub(super) fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.buffers[start..start + len.min(self.size)]
    }

    /// Hands buffer `bid` back (to the kernel at the next [`BufRing::publish`]).
    pub(super) fn recycle(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.buffers[usize::from(bid) * self.size..].as_mut_ptr();
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
        std::mem::forget(std::mem::take(&mut self.buffers));
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: allocated with this layout in `new`; the owner unregistered it (or
        // closed the ring) before dropping it, so the kernel no longer reads it.
        unsafe { alloc::dealloc(self.entries.cast(), self.layout) };
    }
}
