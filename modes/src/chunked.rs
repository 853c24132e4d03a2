//! Append-only storage for the code cache's per-block records (instruction maps, rollback
//! recipes): a few large chunks instead of two heap objects per block, so translating a block
//! allocates nothing in the common case. Records live until the next flush, which frees every
//! chunk.

use alloc::vec::Vec;

/// Records per chunk: one allocation serves a few hundred blocks.
const CHUNK: usize = 4096;

/// Where one block's records are in a [`Chunked`] store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    chunk: u32,
    start: u32,
    len: u32,
}

impl Span {
    /// How many records.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Chunks of `T`, each filled before the next is allocated; a span never crosses chunks.
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T: Copy> Chunked<T> {
    pub(crate) const fn new() -> Chunked<T> {
        Chunked { chunks: Vec::new() }
    }

    /// Appends `items` contiguously; a new chunk (at least [`CHUNK`] records) when the last
    /// one has no room for all of them.
    pub(crate) fn push(&mut self, items: &[T]) -> Span {
        if items.is_empty() {
            return Span::default();
        }
        let room = self.chunks.last().map_or(0, |c| c.capacity() - c.len());
        if room < items.len() {
            self.chunks.push(Vec::with_capacity(CHUNK.max(items.len())));
        }
        let chunk = self.chunks.len() - 1;
        let c = &mut self.chunks[chunk];
        let start = c.len();
        c.extend_from_slice(items);
        Span {
            chunk: chunk as u32,
            start: start as u32,
            len: items.len() as u32,
        }
    }

    /// The records `span` names (empty for an empty span).
    ///
    /// # Panics
    /// If `span` did not come from this store since its last [`Chunked::clear`].
    pub(crate) fn get(&self, span: Span) -> &[T] {
        if span.is_empty() {
            return &[];
        }
        &self.chunks[span.chunk as usize][span.start as usize..][..span.len()]
    }

    /// Forgets every record and frees the chunks.
    pub(crate) fn clear(&mut self) {
        self.chunks = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunked, CHUNK};
    use alloc::vec::Vec;

    #[test]
    fn spans_give_back_what_was_pushed_across_chunks() {
        let mut store = Chunked::new();
        let mut spans = Vec::new();
        for n in 0..40u32 {
            let items: Vec<u32> = (0..n * 13).map(|i| i ^ n).collect();
            spans.push((store.push(&items), items));
        }
        // Long enough to need several chunks, and one longer than a chunk.
        let big: Vec<u32> = (0..CHUNK as u32 + 5).collect();
        spans.push((store.push(&big), big));
        assert!(store.chunks.len() > 2);
        for (span, items) in &spans {
            assert_eq!(store.get(*span), &items[..]);
        }
        store.clear();
        assert!(store.chunks.is_empty());
        let empty = store.push(&[]);
        assert_eq!(store.get(empty), &[] as &[u32]);
    }
}
