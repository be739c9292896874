//! A slab: a `Vec` of slots reused through a free list, addressed by a [`Key`] that
//! carries a generation, so a stale key (a waker of a finished task, a timer already
//! fired) can never reach the slot's next occupant.
//!
//! The executor keeps its tasks here, the reactor its sockets and its timers.

/// Where a value lives in a [`Slab`]: its slot and the slot's generation at insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// Packs the key into one `usize` (for a mio `Token`).
    pub(crate) fn to_usize(self) -> usize {
        ((self.generation as usize) << 32) | self.index as usize
    }

    /// The inverse of [`Key::to_usize`].
    pub(crate) fn from_usize(packed: usize) -> Key {
        Key {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }

    /// Packs the key into a `u64` (for a waker).
    pub(crate) fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`Key::to_u64`].
    pub(crate) fn from_u64(packed: u64) -> Key {
        Key {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }

    /// The slot it names.
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    /// A key no slab ever hands out.
    pub(crate) const NONE: Key = Key {
        index: u32::MAX,
        generation: u32::MAX,
    };
}

/// `3`, or `3/1` for the slot's second occupant: how `--trace` names sockets and timers.
impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            0 => write!(f, "{}", self.index),
            generation => write!(f, "{}/{generation}", self.index),
        }
    }
}

/// Values addressed by [`Key`]; `insert` reuses freed slots first.
///
/// The generations sit in a `Vec` of their own, beside the values rather than in each
/// slot: a `u32` next to a value of 8-byte alignment would cost 8 bytes, not 4.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    values: Vec<Option<T>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Slab<T> {
        Slab {
            values: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The key the next [`Slab::insert`] will return (the io_uring driver names an
    /// operation before it exists).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn next_key(&self) -> Key {
        match self.free.last() {
            Some(&index) => Key {
                index,
                generation: self.generations[index as usize],
            },
            None => Key {
                index: self.values.len() as u32,
                generation: 0,
            },
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            self.values[index as usize] = Some(value);
            return Key {
                index,
                generation: self.generations[index as usize],
            };
        }
        let index = u32::try_from(self.values.len()).expect("more than 4 billion slab entries");
        assert!(index != u32::MAX, "more than 4 billion slab entries");
        self.values.push(Some(value));
        self.generations.push(0);
        Key {
            index,
            generation: 0,
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        if *self.generations.get(key.index as usize)? != key.generation {
            return None;
        }
        self.values[key.index as usize].as_mut()
    }

    /// Like [`Slab::get_mut`], for a key whose generation kept only its low 16 bits
    /// (a waker's); returns the full key too.
    pub(crate) fn get_mut_by_short_key(&mut self, short: Key) -> Option<(Key, &mut T)> {
        let generation = *self.generations.get(short.index as usize)?;
        if generation as u16 != short.generation as u16 {
            return None;
        }
        let key = Key {
            index: short.index,
            generation,
        };
        Some((key, self.values[short.index as usize].as_mut()?))
    }

    pub(crate) fn contains(&self, key: Key) -> bool {
        self.generations.get(key.index as usize) == Some(&key.generation)
            && self.values[key.index as usize].is_some()
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        if *self.generations.get(key.index as usize)? != key.generation {
            return None;
        }
        let value = self.values[key.index as usize].take()?;
        // A new generation: every key to the old value is now stale.
        let generation = &mut self.generations[key.index as usize];
        *generation = generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Removes every value, for shutdown.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len);
        for (index, slot) in self.values.iter_mut().enumerate() {
            if let Some(value) = slot.take() {
                let generation = &mut self.generations[index];
                *generation = generation.wrapping_add(1);
                self.free.push(index as u32);
                values.push(value);
            }
        }
        self.len = 0;
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_misses_the_new_occupant() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let next = slab.next_key();
        let b = slab.insert("b");
        assert_eq!(b, next);
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        assert_eq!(Key::from_usize(b.to_usize()), b);
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn a_short_key_finds_the_occupant_with_those_16_bits_of_generation() {
        let mut slab = Slab::new();
        let first = slab.insert(1);
        slab.remove(first);
        let second = slab.insert(2);
        let short = |key: Key| Key::from_u64(key.to_u64() & ((1 << 48) - 1));
        assert_eq!(slab.get_mut_by_short_key(short(first)), None);
        assert_eq!(
            slab.get_mut_by_short_key(short(second)),
            Some((second, &mut 2))
        );
        // 65,536 occupants later the short key matches again: a spurious wake-up, which
        // `Future`'s contract allows, and the full key it returns names the occupant.
        let mut last = second;
        for _ in 0..65_536 {
            slab.remove(last);
            last = slab.insert(3);
        }
        assert_eq!(
            slab.get_mut_by_short_key(short(second)),
            Some((last, &mut 3))
        );
        assert_eq!(slab.get_mut(second), None);
    }
}
