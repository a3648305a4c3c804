// SPDX-License-Identifier: GPL-2.0

//! Page-backed logs: frames written once into order-0 pages, back to back, then shared by every
//! recipient's send queue, by a room's history and by the skbs that TCP builds from them with
//! `MSG_SPLICE_PAGES` (which take page references of their own, `skb_append_pagefrags`).
//!
//! A [`LogWriter`] owns the unwritten tail of its current page and appends to it; what it
//! appended is a [`LogSlice`], sealed: those bytes never change again, which is what lets TCP
//! retransmit from them long after the send. A page is released when the last slice on it is
//! dropped (and the writer has moved on), so pages go behind the slowest reader; a page that an
//! skb still holds is freed by the network stack when the skb is, not by kchat.
//!
//! This is the one file that touches page memory; [`log_pages`] counts the pages kchat holds.
//! A writer counts its pages in a [`PageCount`] of its own choosing (the module's, or a KUnit
//! test's, which must not see the pages of the server running beside it).

use core::ptr::NonNull;
use kernel::{
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc, //
    },
};

mod ffi {
    use core::ffi::c_void;

    extern "C" {
        /// `page_address(page)`: see `src/kchat_helpers.c`. The page is passed as `void *`:
        /// bindgen's `struct page` ends in a zero-length array, which `improper_ctypes`
        /// rejects in a hand-written declaration.
        pub(super) fn kchat_page_address(page: *mut c_void) -> *mut c_void;
    }
}

/// The largest frame a log takes. Frames never straddle pages (each is one contiguous range
/// of one page), so at most half of a page is left unused, and a queue or a history pins at
/// most twice its frame bytes in pages. Larger frames stay in their own buffers and are copied.
pub(crate) const MAX_LOG_FRAME: usize = PAGE_SIZE / 2;

/// A count of log pages alive, shared by the writers that allocate them.
pub(crate) struct PageCount(Atomic<u64>);

impl PageCount {
    /// A count of zero pages.
    pub(crate) const fn new() -> Self {
        Self(Atomic::new(0))
    }

    /// The pages alive now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Log pages that kchat's rooms hold (skbs may hold some of them for a while longer).
static LOG_PAGES: PageCount = PageCount::new();

/// Pages of the servers' notes logs: frames for one client alone (private messages,
/// replies, errors), copied there as they are queued.
static NOTE_PAGES: PageCount = PageCount::new();

/// Room log pages that kchat holds now.
pub(crate) fn log_pages() -> u64 {
    LOG_PAGES.get()
}

/// Notes log pages that kchat holds now.
pub(crate) fn note_pages() -> u64 {
    NOTE_PAGES.get()
}

/// One page of a log, counted in its writer's [`PageCount`] for as long as kchat holds it.
///
/// # Invariants
///
/// - `addr` is the kernel address of `page`'s `PAGE_SIZE` bytes, mapped for as long as the page
///   is allocated (an order-0 `GFP_KERNEL` page is in the direct map).
/// - Only the [`LogWriter`] that allocated the page writes to it, only at and above its `used`
///   mark, and only while it holds the page as its current one; bytes below the mark are
///   sealed.
pub(crate) struct LogPage {
    page: Page,
    addr: NonNull<u8>,
    count: &'static PageCount,
}

// SAFETY: `addr` points into the page that `self.page` owns, which any thread may read (`Page`
// is `Send`); nothing about the value is tied to the thread that allocated it.
unsafe impl Send for LogPage {}

// SAFETY: Shared references read only sealed bytes, which nobody writes (type invariant); the
// one writer writes only unsealed bytes, through its own `&mut LogWriter`.
unsafe impl Sync for LogPage {}

impl LogPage {
    fn new(count: &'static PageCount) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL | __GFP_NOWARN)?;
        // SAFETY: `page.as_ptr()` is a valid, allocated page for the duration of the call.
        let addr = unsafe { ffi::kchat_page_address(page.as_ptr().cast()) };
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(ENOMEM)?;
        count.0.add(1, Relaxed);
        Ok(Self { page, addr, count })
    }
}

impl LogPage {
    /// The page, for a `bio_vec` (a send takes its own reference, and sends only sealed bytes).
    pub(crate) fn raw_page(&self) -> *mut kernel::bindings::page {
        self.page.as_ptr()
    }

    /// Identifies the page among those alive now (to count distinct pages).
    pub(crate) fn id(&self) -> usize {
        self.addr.as_ptr() as usize
    }
}

impl Drop for LogPage {
    fn drop(&mut self) {
        self.count.0.fetch_sub(1, Relaxed);
    }
}

/// A sealed byte range of a log page: one frame.
///
/// # Invariants
///
/// `at + len <= PAGE_SIZE`, and the range is sealed in `page`.
pub(crate) struct LogSlice {
    page: Arc<LogPage>,
    at: u16,
    len: u16,
}

impl LogSlice {
    /// The bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: The range lies within the page (type invariant), which `self.page` keeps
        // allocated and mapped (`LogPage` invariant); it is sealed, so nothing writes it while
        // the returned borrow of `self` lasts.
        unsafe {
            core::slice::from_raw_parts(
                self.page.addr.as_ptr().add(self.at.into()),
                self.len.into(),
            )
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len.into()
    }

    /// Offset in its page.
    pub(crate) fn offset(&self) -> usize {
        self.at.into()
    }

    /// The page it is on; its bytes `offset()..offset() + len()` are sealed.
    pub(crate) fn page(&self) -> &Arc<LogPage> {
        &self.page
    }
}

/// Appends frames to a log, one page at a time.
///
/// # Invariants
///
/// `used <= PAGE_SIZE`; if `page` is set, it was allocated by this writer and its bytes from
/// `used` on are unwritten by anyone else.
pub(crate) struct LogWriter {
    page: Option<Arc<LogPage>>,
    used: usize,
    count: &'static PageCount,
}

impl LogWriter {
    /// A writer with no page yet, counting its pages in [`log_pages`]; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self::counted_in(&LOG_PAGES)
    }

    /// A writer of a notes log with no page yet, counting its pages in [`note_pages`];
    /// allocates nothing.
    pub(crate) const fn for_notes() -> Self {
        Self::counted_in(&NOTE_PAGES)
    }

    /// A writer with no page yet, counting its pages in `count`; allocates nothing.
    pub(crate) const fn counted_in(count: &'static PageCount) -> Self {
        Self {
            page: None,
            used: 0,
            count,
        }
    }

    /// Copies `bytes` into the log and seals them. `Ok(None)` if they are empty or longer than
    /// [`MAX_LOG_FRAME`] (they stay where they are); an error if a new page cannot be had.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<Option<LogSlice>> {
        let len = bytes.len();
        if len == 0 || len > MAX_LOG_FRAME {
            return Ok(None);
        }
        let page = match &self.page {
            Some(p) if self.used + len <= PAGE_SIZE => p.clone(),
            _ => {
                // The old page (if any) is released when its last frame is.
                let p = Arc::new(LogPage::new(self.count)?, GFP_KERNEL | __GFP_NOWARN)?;
                self.page = Some(p.clone());
                self.used = 0;
                p
            }
        };
        let at = self.used;
        // SAFETY: `at + len <= PAGE_SIZE` (checked above, or `at` is 0 and `len` at most half a
        // page), so the destination lies within the mapped page (`LogPage` invariant). Those
        // bytes are at or above `used`, which only this writer writes (its invariant), and no
        // slice covers them yet, so nobody reads them; `bytes` is a distinct allocation.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), page.addr.as_ptr().add(at), len);
        }
        self.used = at + len;
        // Both fit in u16: `at + len <= PAGE_SIZE`, 4 KiB here (and at most 64 KiB anywhere).
        Ok(Some(LogSlice {
            page,
            at: at as u16,
            len: len as u16,
        }))
    }
}

const _: () = assert!(PAGE_SIZE <= u16::MAX as usize + 1);

#[kunit_tests(kchat_pages)]
mod tests {
    use super::*;

    #[test]
    fn packs_back_to_back() -> Result {
        static PAGES: PageCount = PageCount::new();
        let mut w = LogWriter::counted_in(&PAGES);
        let a = w.append(b"hello")?.ok_or(EINVAL)?;
        let b = w.append(b", world")?.ok_or(EINVAL)?;
        let same = a.page().id() == b.page().id();
        assert!(same);
        let (ao, bo) = (a.offset(), b.offset());
        assert_eq!(ao, 0);
        assert_eq!(bo, 5);
        let ok = a.as_bytes() == b"hello" && b.as_bytes() == b", world";
        assert!(ok);
        let held = PAGES.get();
        assert_eq!(held, 1);
        Ok(())
    }

    #[test]
    fn new_page_when_full_and_release_behind_readers() -> Result {
        static PAGES: PageCount = PageCount::new();
        let mut w = LogWriter::counted_in(&PAGES);
        let big = [b'x'; MAX_LOG_FRAME];
        let first = w.append(&big)?.ok_or(EINVAL)?;
        let second = w.append(&big)?.ok_or(EINVAL)?;
        // Exactly two halves fill the first page; the third starts a new one.
        let third = w.append(b"y")?.ok_or(EINVAL)?;
        let same = first.page().id() == second.page().id();
        assert!(same);
        let moved = third.page().id() != first.page().id() && third.offset() == 0;
        assert!(moved);
        let held = PAGES.get();
        assert_eq!(held, 2);
        // The first page stays while one of its frames does.
        drop(first);
        let held = PAGES.get();
        assert_eq!(held, 2);
        drop(second);
        let held = PAGES.get();
        assert_eq!(held, 1);
        // The writer's own page goes when the writer (its room) is dropped and the last frame is.
        drop(w);
        let held = PAGES.get();
        assert_eq!(held, 1);
        drop(third);
        let held = PAGES.get();
        assert_eq!(held, 0);
        Ok(())
    }

    #[test]
    fn refuses_empty_and_oversized() -> Result {
        static PAGES: PageCount = PageCount::new();
        let mut w = LogWriter::counted_in(&PAGES);
        let empty = w.append(b"")?.is_none();
        assert!(empty);
        let big = [0u8; MAX_LOG_FRAME + 1];
        let over = w.append(&big)?.is_none();
        assert!(over);
        let held = PAGES.get();
        assert_eq!(held, 0);
        Ok(())
    }
}
