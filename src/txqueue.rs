// SPDX-License-Identifier: GPL-2.0

//! A client's send queue: shared frames waiting to be written to its socket.
//!
//! A ring of chunks: broadcasters push at the back, the shard loop sends from the front, many
//! chunks per send, and [`TxQueue::advance`] drops what the socket took, keeping the offset
//! into a chunk that went out only in part. A chunk is a frame in its own buffer (`Arc`), or a
//! byte range of a log page ([`crate::pages`]): a log frame that continues the range at the
//! back of the queue extends it, so a recipient of a room's messages costs one range per page
//! of the room's log, not a slot and a reference count per message, and a send splices one
//! `bio_vec` per page. The queue counts its unsent bytes so that the slow-consumer limit is a
//! comparison. An emptied queue keeps a small ring (up to [`KEEP_SLOTS`] slots) for the next
//! burst and frees a larger one, so an idle client costs little queue memory and a busy one
//! does not reallocate on every round.
//!
//! Log ranges keep their page alive while queued, so the queue also counts the distinct log
//! pages it holds ([`TxQueue::charge`]): the slow-consumer rule charges a client for those pages
//! as well as for its bytes.

use kernel::{
    page::PAGE_SIZE,
    prelude::*,
    sync::Arc, //
};

use crate::{
    frame::Frame,
    net::Segment,
    pages::{
        LogPage,
        LogSlice, //
    },
};

/// Slots allocated for the first chunk; the ring doubles from there.
const INITIAL_SLOTS: usize = 16;

/// The largest ring an emptied queue keeps (1 KiB of slots).
const KEEP_SLOTS: usize = 64;

/// Log pages a queue keeps without being charged for them (one current page for each of a
/// few rooms); see [`TxQueue::charge`].
const FREE_PAGES: usize = 4;

/// What a slot holds (16 bytes).
#[derive(Clone)]
enum Chunk {
    /// A frame in its own buffer.
    Frame(Arc<Frame>),
    /// Consecutive frames of a log page: `len` bytes from `at`, `frames` frames (a frame is
    /// at least its 4-byte header, so a page holds at most 1,024).
    Log {
        page: Arc<LogPage>,
        at: u16,
        len: u16,
        frames: u16,
    },
}

const _: () = assert!(core::mem::size_of::<Option<Chunk>>() == 16);

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Frame(f) => f.len(),
            Chunk::Log { len, .. } => (*len).into(),
        }
    }

    fn frames(&self) -> usize {
        match self {
            Chunk::Frame(_) => 1,
            Chunk::Log { frames, .. } => usize::from(*frames),
        }
    }

    /// The bytes from `skip` on.
    fn segment(&self, skip: usize) -> Segment<'_> {
        match self {
            Chunk::Frame(f) => f.segment(skip),
            Chunk::Log { page, at, len, .. } => Segment::Splice {
                page,
                at: usize::from(*at) + skip,
                len: usize::from(*len) - skip,
            },
        }
    }
}

/// Chunks waiting to be sent, oldest first.
pub(crate) struct TxQueue {
    /// Ring storage; its length (a power of two, or 0) is the capacity.
    slots: KVec<Option<Chunk>>,
    /// Index of the oldest chunk.
    head: usize,
    /// Chunks queued.
    len: usize,
    /// Bytes of the oldest chunk already sent.
    offset: usize,
    /// Bytes queued and not yet sent.
    bytes: usize,
    /// The log pages the queued ranges are on, oldest first, with how many ranges each: a
    /// queue's ranges come from few logs, in order, so the page sought is nearly always the
    /// last (when pushing) or the first (when sending). Emptied with the queue.
    pins: KVec<(usize, u32)>,
}

impl TxQueue {
    /// An empty queue; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self {
            slots: KVec::new(),
            head: 0,
            len: 0,
            offset: 0,
            bytes: 0,
            pins: KVec::new(),
        }
    }

    /// Distinct log pages the queued ranges are on.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn pinned_pages(&self) -> usize {
        self.pins.len()
    }

    /// What the queue costs, for the slow-consumer limit: its bytes, or half a page for each
    /// log page it keeps alive beyond the first [`FREE_PAGES`] if that is more. A log frame is
    /// at most half a page and frames are packed, so a queue of a few rooms' messages pins at
    /// most about twice its bytes and is charged its bytes; a queue whose frames are scattered
    /// over many pages (a client that joins and leaves a busy room, say) is charged for the
    /// pages it keeps, so that it pins at most twice `max_queue_bytes` plus [`FREE_PAGES`].
    pub(crate) fn charge(&self) -> usize {
        let pages = self.pins.len().saturating_sub(FREE_PAGES);
        self.bytes.max(pages * (PAGE_SIZE / 2))
    }

    /// Bytes queued and not yet sent.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a frame: a log frame that continues the range at the back extends it; any
    /// other takes a slot (and a reference).
    pub(crate) fn push(&mut self, frame: &Arc<Frame>) -> Result {
        match frame.log_slice() {
            Some(slice) => self.push_slice(slice),
            None => self.push_chunk(Chunk::Frame(frame.clone())),
        }
    }

    /// Appends a log frame: it extends the range at the back if it continues it, or takes a
    /// slot (and a reference to its page).
    pub(crate) fn push_slice(&mut self, slice: &LogSlice) -> Result {
        if self.len > 0 {
            let mask = self.slots.len() - 1;
            if let Some(Chunk::Log {
                page,
                at,
                len,
                frames,
            }) = &mut self.slots[(self.head + self.len - 1) & mask]
            {
                if Arc::ptr_eq(page, slice.page())
                    && usize::from(*at) + usize::from(*len) == slice.offset()
                {
                    // Within one page: fits in u16.
                    *len += slice.len() as u16;
                    *frames += 1;
                    self.bytes += slice.len();
                    return Ok(());
                }
            }
        }
        self.pin(slice.page().id())?;
        // Offsets and lengths within a page fit in u16.
        let chunk = Chunk::Log {
            page: slice.page().clone(),
            at: slice.offset() as u16,
            len: slice.len() as u16,
            frames: 1,
        };
        self.push_chunk(chunk)
            .inspect_err(|_| self.unpin(slice.page().id()))
    }

    fn push_chunk(&mut self, chunk: Chunk) -> Result {
        if self.len == self.slots.len() {
            self.grow()?;
        }
        let mask = self.slots.len() - 1;
        self.bytes += chunk.len();
        self.slots[(self.head + self.len) & mask] = Some(chunk);
        self.len += 1;
        Ok(())
    }

    /// Counts one more range on page `id`.
    fn pin(&mut self, id: usize) -> Result {
        if let Some(p) = self.pins.iter_mut().rev().find(|p| p.0 == id) {
            p.1 += 1;
            return Ok(());
        }
        self.pins.push((id, 1), GFP_KERNEL | __GFP_NOWARN)?;
        Ok(())
    }

    /// Counts one range fewer on page `id`.
    fn unpin(&mut self, id: usize) {
        if let Some(i) = self.pins.iter().position(|p| p.0 == id) {
            self.pins[i].1 -= 1;
            if self.pins[i].1 == 0 {
                let _ = self.pins.remove(i);
            }
        }
    }

    /// Doubles the ring, keeping the chunks in order at the start of the new storage.
    fn grow(&mut self) -> Result {
        let cap = (self.slots.len() * 2).max(INITIAL_SLOTS);
        let mut slots = KVec::with_capacity(cap, GFP_KERNEL)?;
        for i in 0..self.len {
            let at = (self.head + i) & (self.slots.len() - 1);
            slots.push(self.slots[at].take(), GFP_KERNEL)?;
        }
        slots.extend_with(cap - self.len, None, GFP_KERNEL)?;
        self.slots = slots;
        self.head = 0;
        Ok(())
    }

    /// The unsent bytes of up to `max` chunks from the front, in order.
    pub(crate) fn front(&self, max: usize) -> impl Iterator<Item = Segment<'_>> {
        let mask = self.slots.len().wrapping_sub(1);
        (0..self.len.min(max)).filter_map(move |i| {
            let chunk = self.slots[(self.head + i) & mask].as_ref()?;
            let skip = if i == 0 { self.offset } else { 0 };
            Some(chunk.segment(skip))
        })
    }

    /// Drops `sent` bytes from the front: whole chunks, then part of the next one. Returns
    /// how many frames were completed (a range counts its frames once all of it is sent).
    pub(crate) fn advance(&mut self, mut sent: usize) -> usize {
        let mut done = 0;
        self.bytes -= sent.min(self.bytes);
        while sent > 0 && self.len > 0 {
            let mask = self.slots.len() - 1;
            let Some(chunk) = self.slots[self.head].as_ref() else {
                break;
            };
            let left = chunk.len() - self.offset;
            if sent < left {
                self.offset += sent;
                return done;
            }
            sent -= left;
            done += chunk.frames();
            if let Some(Chunk::Log { page, .. }) = self.slots[self.head].take() {
                self.unpin(page.id());
            }
            self.head = (self.head + 1) & mask;
            self.len -= 1;
            self.offset = 0;
        }
        if self.len == 0 {
            self.head = 0;
            self.offset = 0;
            self.bytes = 0;
            self.pins = KVec::new();
            if self.slots.len() > KEEP_SLOTS {
                self.slots = KVec::new();
            }
        }
        done
    }

    /// Whether the oldest chunk went out in part (a new frame must not be written before it).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn mid_frame(&self) -> bool {
        self.offset != 0
    }

    /// Drops every chunk and frees the storage.
    pub(crate) fn clear(&mut self) {
        self.slots = KVec::new();
        self.head = 0;
        self.len = 0;
        self.offset = 0;
        self.bytes = 0;
        self.pins = KVec::new();
    }
}

#[kunit_tests(kchat_txqueue)]
mod tests {
    use super::*;
    use crate::pages::LogWriter;

    fn frame(n: usize) -> Result<Arc<Frame>> {
        // A text frame of 4 + n bytes.
        let spaces = [b' '; 32];
        let text = core::str::from_utf8(&spaces[..n]).map_err(|_| EINVAL)?;
        let f = Frame::text(fmt!("{text}"))?;
        Ok(Arc::new(f, GFP_KERNEL)?)
    }

    fn seg_len(s: Segment<'_>) -> usize {
        match s {
            Segment::Copy(b) => b.len(),
            Segment::Splice { len, .. } => len,
        }
    }

    fn front_len(q: &TxQueue) -> usize {
        q.front(usize::MAX).map(seg_len).sum()
    }

    #[test]
    fn push_send_in_pieces() -> Result {
        let mut q = TxQueue::new();
        for n in 0..20 {
            q.push(&frame(n)?)?;
        }
        // 20 headers plus 0 + 1 + ... + 19 payload bytes.
        let total = 20 * 4 + 190;
        assert_eq!(q.bytes(), total);
        let front = front_len(&q);
        assert_eq!(front, total);
        // Send in odd pieces, through frame boundaries.
        let mut left = total;
        for piece in [1, 3, 4, 7, 50, 100] {
            q.advance(piece);
            left -= piece;
            assert_eq!(q.bytes(), left);
            let front = front_len(&q);
            assert_eq!(front, left);
        }
        q.advance(left);
        let empty = q.is_empty();
        assert!(empty);
        // A small ring is kept for the next burst.
        let cap = q.slots.len();
        let kept = cap > 0 && cap <= KEEP_SLOTS;
        assert!(kept);
        q.clear();
        let cap = q.slots.len();
        assert_eq!(cap, 0);
        Ok(())
    }

    /// A frame of 4 + n bytes in `log`.
    fn logged(log: &mut LogWriter, n: usize) -> Result<Arc<Frame>> {
        let f = frame(n)?.sealed(log)?.ok_or(EINVAL)?;
        Ok(Arc::new(f, GFP_KERNEL)?)
    }

    #[test]
    fn counts_log_pages() -> Result {
        let mut log = LogWriter::new();
        let mut other = LogWriter::new();
        let mut q = TxQueue::new();
        // Frames of two logs, interleaved: two pages, charged their bytes.
        for n in 0..10 {
            q.push(&logged(&mut log, n)?)?;
            q.push(&logged(&mut other, n)?)?;
        }
        let pages = q.pinned_pages();
        assert_eq!(pages, 2);
        let charged = q.charge() == q.bytes();
        assert!(charged);
        // One frame on each of many pages (each log moved on meanwhile): charged for pages.
        for _ in 0..20 {
            let mut fresh = LogWriter::new();
            q.push(&logged(&mut fresh, 1)?)?;
        }
        let pages = q.pinned_pages();
        assert_eq!(pages, 22);
        let charge = q.charge();
        assert_eq!(charge, (22 - FREE_PAGES) * (PAGE_SIZE / 2));
        // Sending the first 20 frames releases the first two pages' counts in turn.
        let first: usize = q.front(20).map(seg_len).sum();
        q.advance(first);
        let pages = q.pinned_pages();
        assert_eq!(pages, 20);
        let all = q.bytes();
        q.advance(all);
        let pages = q.pinned_pages();
        assert_eq!(pages, 0);
        Ok(())
    }

    /// Pages of the notes log of [`notes_interleave_as_ranges`].
    static TEST_NOTE_PAGES: crate::pages::PageCount = crate::pages::PageCount::new();

    #[test]
    fn notes_interleave_as_ranges() -> Result {
        let mut room = LogWriter::new();
        let mut notes = LogWriter::counted_in(&TEST_NOTE_PAGES);
        let mut q = TxQueue::new();
        // Room messages, a private frame copied into the notes log between them, and two
        // notes in a row: every chunk splices, and notes in a row make one range.
        q.push(&logged(&mut room, 10)?)?;
        q.push(&logged(&mut room, 11)?)?;
        for n in [7, 8] {
            let slice = notes.append(frame(n)?.as_bytes())?.ok_or(EINVAL)?;
            q.push_slice(&slice)?;
        }
        q.push(&logged(&mut room, 12)?)?;
        let chunks = q.len;
        assert_eq!(chunks, 3);
        let pages = q.pinned_pages();
        assert_eq!(pages, 2);
        let all_spliced = q
            .front(usize::MAX)
            .all(|s| matches!(s, Segment::Splice { .. }));
        assert!(all_spliced);
        let total = q.bytes();
        assert_eq!(total, 14 + 15 + 11 + 12 + 16);
        // The queue keeps the notes page alive without the writer and the slices.
        drop(notes);
        let counted = TEST_NOTE_PAGES.get();
        assert_eq!(counted, 1);
        // Past the room's first range, the two notes are one range of both frames.
        let first: usize = q.front(1).map(seg_len).sum();
        assert_eq!(first, 14 + 15);
        q.advance(first);
        let notes_range: usize = q.front(1).map(seg_len).sum();
        assert_eq!(notes_range, 11 + 12);
        q.clear();
        let counted = TEST_NOTE_PAGES.get();
        assert_eq!(counted, 0);
        Ok(())
    }

    #[test]
    fn log_frames_in_a_row_make_one_range() -> Result {
        let mut log = LogWriter::new();
        let mut q = TxQueue::new();
        let a = logged(&mut log, 10)?;
        let b = logged(&mut log, 20)?;
        let c = logged(&mut log, 30)?;
        // A frame of its own buffer between them breaks the range.
        let own = frame(5)?;
        for f in [&a, &b, &own, &c] {
            q.push(f)?;
        }
        let chunks = q.len;
        assert_eq!(chunks, 3);
        let pages = q.pinned_pages();
        assert_eq!(pages, 1);
        let lens: KVec<usize> = {
            let mut v = KVec::new();
            for s in q.front(usize::MAX) {
                v.push(seg_len(s), GFP_KERNEL)?;
            }
            v
        };
        let expected = [14 + 24, 9, 34];
        let same = lens.as_slice() == expected;
        assert!(same);
        // Half of the range, then the rest: its two frames count when all of it is sent.
        let done = q.advance(20);
        assert_eq!(done, 0);
        let done = q.advance(18);
        assert_eq!(done, 2);
        let done = q.advance(9 + 34);
        assert_eq!(done, 2);
        let empty = q.is_empty() && q.pinned_pages() == 0;
        assert!(empty);
        Ok(())
    }

    #[test]
    fn wraps_around() -> Result {
        let mut q = TxQueue::new();
        for round in 0..50 {
            q.push(&frame(round % 5)?)?;
            q.push(&frame(1)?)?;
            // Send the older of the two whole frames.
            let first = q.front(1).next().map_or(0, seg_len);
            q.advance(first);
            let len = q.len;
            assert_eq!(len, round + 1);
        }
        let cap = q.slots.len();
        assert!(cap >= 50);
        let mid = q.mid_frame();
        assert!(!mid);
        Ok(())
    }
}
