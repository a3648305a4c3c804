// SPDX-License-Identifier: GPL-2.0

//! The set of connected clients, and who receives what.
//!
//! One mutex protects the list. Relaying walks it once per batch of messages (the chat
//! messages the shard loop read in one pass, [`RelayBatch`]), appending the shared frames to
//! each recipient's send queue under one lock per recipient (which never blocks: a full queue
//! disconnects that client as a slow consumer). [`Registry::recipients`] is the one place that decides who receives a
//! frame, so rooms and direct messages (DESIGN.md, "planned next") change it and nothing else.

use kernel::{
    fmt, new_mutex,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc,
        Mutex, //
    },
};

use crate::{
    client::Client,
    frame::Frame,
    params::Params,
    proto::{
        Label,
        NickError, //
    },
    stats::Stats,
};

/// Why a client could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddError {
    /// `max_clients` are connected.
    Full,
    /// The module is unloading.
    Closing,
    /// The list could not grow.
    NoMemory,
}

/// Why a `/nick` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NickRefused {
    /// The name is not a valid nick.
    Invalid(NickError),
    /// Another client has it.
    Taken,
}

/// The registry's state under its lock.
struct Inner {
    /// Connected clients, in order of arrival.
    clients: KVec<Arc<Client>>,
    /// Set at unload: nobody joins any more.
    closing: bool,
}

/// The connected clients.
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    inner: Mutex<Inner>,
    /// The module parameters (limits and notices).
    params: Params,
    /// Counters for the stats view.
    pub(crate) stats: Stats,
}

impl Registry {
    pub(crate) fn new(params: Params) -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- new_mutex!(
                Inner {
                    clients: KVec::new(),
                    closing: false,
                },
                "Registry::inner"
            ),
            params,
            stats: Stats::new(),
        })
    }

    /// Clients connected now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().clients.len()
    }

    /// The clients that receive a frame from `from` (`None`: a server notice for everyone):
    /// every other connected client.
    fn recipients<'a>(
        clients: &'a [Arc<Client>],
        from: Option<&'a Arc<Client>>,
    ) -> impl Iterator<Item = &'a Arc<Client>> + 'a {
        clients
            .iter()
            .filter(move |c| from.is_none_or(|f| !Arc::ptr_eq(c, f)) && !c.is_closing())
    }

    /// Queues `frame` to the recipients of a frame from `from`; returns how many took it.
    fn send_locked(clients: &[Arc<Client>], from: Option<&Arc<Client>>, frame: &Arc<Frame>) -> u64 {
        let mut n = 0;
        for c in Self::recipients(clients, from) {
            if Client::enqueue(c, frame) {
                n += 1;
            }
        }
        n
    }

    /// Sends the server notice `args` to the recipients of a frame from `from`.
    fn notice_locked(
        clients: &[Arc<Client>],
        from: Option<&Arc<Client>>,
        args: fmt::Arguments<'_>,
    ) {
        // A notice that cannot be allocated is lost; the chat carries on.
        if let Ok(frame) = Frame::text(args).and_then(|f| Ok(Arc::new(f, GFP_KERNEL)?)) {
            Self::send_locked(clients, from, &frame);
        }
    }

    /// Adds a client and tells the others (`* LABEL joined`). The notice is queued under the
    /// lock, before the client's callbacks are installed, so it reaches everyone before the
    /// client's first message.
    pub(crate) fn add(&self, client: &Arc<Client>) -> Result<(), AddError> {
        let mut inner = self.inner.lock();
        if inner.closing {
            return Err(AddError::Closing);
        }
        if inner.clients.len() >= self.params.max_clients as usize {
            return Err(AddError::Full);
        }
        inner
            .clients
            .push(client.clone(), GFP_KERNEL)
            .map_err(|_| AddError::NoMemory)?;
        self.stats.joined(inner.clients.len());
        if self.params.notices {
            Self::notice_locked(
                &inner.clients,
                Some(client),
                fmt!("* {} joined", client.label()),
            );
        }
        Ok(())
    }

    /// Removes a client, if present, and tells the others (`* LABEL left`).
    pub(crate) fn remove(&self, client: &Arc<Client>, label: &Label) {
        let mut inner = self.inner.lock();
        let before = inner.clients.len();
        inner.clients.retain(|c| !Arc::ptr_eq(c, client));
        if inner.clients.len() == before {
            return;
        }
        self.stats.clients_now.fetch_sub(1, Relaxed);
        if self.params.notices && !inner.closing {
            Self::notice_locked(&inner.clients, Some(client), fmt!("* {label} left"));
        }
    }

    /// Relays a batch of chat frames, each to every client but its sender, in order: one walk
    /// of the list and one send-queue lock per recipient for the whole batch.
    pub(crate) fn publish(&self, batch: &[(Arc<Client>, Arc<Frame>)]) {
        let inner = self.inner.lock();
        let (mut n, mut bytes) = (0, 0);
        for c in inner.clients.iter().filter(|c| !c.is_closing()) {
            let (k, b) = Client::enqueue_batch(c, batch);
            n += k;
            bytes += b;
        }
        drop(inner);
        self.stats.relayed(n, bytes);
    }

    /// Sets `client`'s nick if it is valid and no other client has it; returns the old label,
    /// or `None` if the nick did not change.
    pub(crate) fn set_nick(
        &self,
        client: &Arc<Client>,
        name: &[u8],
    ) -> Result<Option<Label>, NickRefused> {
        let nick = Label::nick(name).map_err(NickRefused::Invalid)?;
        let inner = self.inner.lock();
        let old = client.label();
        if old == nick {
            return Ok(None);
        }
        if inner
            .clients
            .iter()
            .any(|c| !Arc::ptr_eq(c, client) && c.label().same_nick(&nick))
        {
            return Err(NickRefused::Taken);
        }
        client.set_label(nick);
        if self.params.notices {
            Self::notice_locked(&inner.clients, Some(client), fmt!("* {old} is now {nick}"));
        }
        Ok(Some(old))
    }

    /// The `/who` answer: `* N online: LABEL, LABEL, ...`, cut to `max_msg_len` with `...`.
    pub(crate) fn who(&self) -> Result<Frame> {
        let inner = self.inner.lock();
        let max = self.params.max_msg_len as usize;
        let mut text = KVec::with_capacity(max.min(4096), GFP_KERNEL)?;
        let mut w = Bounded {
            buf: &mut text,
            max,
            cut: false,
        };
        let _ = fmt::Write::write_fmt(&mut w, fmt!("* {} online: ", inner.clients.len()));
        for (i, c) in inner.clients.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = fmt::Write::write_fmt(&mut w, fmt!("{sep}{}", c.label()));
        }
        drop(inner);
        if w.cut {
            // Make room for the marker within the limit.
            let keep = max.saturating_sub(3).min(text.len());
            text.truncate(keep);
            text.extend_from_slice(&b"..."[..max.min(3)], GFP_KERNEL)?;
        }
        let s = core::str::from_utf8(&text).map_err(|_| EINVAL)?;
        Frame::text(fmt!("{s}"))
    }

    /// Closes the registry at unload and takes every client out of it.
    pub(crate) fn close_all(&self) -> KVec<Arc<Client>> {
        let mut inner = self.inner.lock();
        inner.closing = true;
        self.stats.clients_now.store(0, Relaxed);
        core::mem::take(&mut inner.clients)
    }

    /// The clients connected now, for the stats view (references, so none is freed while it
    /// is shown).
    pub(crate) fn snapshot(&self) -> Result<KVec<Arc<Client>>> {
        let inner = self.inner.lock();
        let mut out = KVec::with_capacity(inner.clients.len(), GFP_KERNEL)?;
        for c in inner.clients.iter() {
            out.push(c.clone(), GFP_KERNEL)?;
        }
        Ok(out)
    }
}

/// Most frames a relay batch holds before it goes out by itself.
pub(crate) const BATCH_FRAMES: usize = 1024;

/// The chat messages a shard loop has read and not yet relayed, with their senders.
///
/// Relaying them together costs each recipient one lock and one dirty-list check per batch
/// instead of per message (measured on `fanout-1000`: per-message enqueueing was the module's
/// largest cost). The loop publishes the batch before it sends, and before anything else that
/// queues frames for the clients it read (commands, a disconnect), so the order of what each
/// client receives is the order in which kchat read it.
pub(crate) struct RelayBatch {
    frames: KVec<(Arc<Client>, Arc<Frame>)>,
}

impl RelayBatch {
    /// An empty batch; its storage is allocated once, by the first push.
    pub(crate) const fn new() -> Self {
        Self {
            frames: KVec::new(),
        }
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Adds a chat frame from `from`. A full batch goes out first; without memory for a batch,
    /// the frame is relayed alone (after what came before it).
    pub(crate) fn push(&mut self, registry: &Registry, from: &Arc<Client>, frame: Arc<Frame>) {
        let entry = (from.clone(), frame);
        if self.frames.len() >= BATCH_FRAMES {
            self.publish(registry);
        }
        if self.frames.len() == self.frames.capacity() {
            let want = BATCH_FRAMES - self.frames.len();
            if self
                .frames
                .reserve(want, GFP_KERNEL | __GFP_NOWARN)
                .is_err()
            {
                self.publish(registry);
                registry.publish(core::slice::from_ref(&entry));
                return;
            }
        }
        if let Err(e) = self.frames.push_within_capacity(entry) {
            // Not reached: there is room. Relayed alone all the same.
            self.publish(registry);
            registry.publish(core::slice::from_ref(&e.0));
        }
    }

    /// Relays everything waiting (see [`Registry::publish`]) and empties the batch, keeping its
    /// storage.
    pub(crate) fn publish(&mut self, registry: &Registry) {
        if !self.frames.is_empty() {
            registry.publish(&self.frames);
            self.frames.clear();
        }
    }
}

/// A writer that keeps at most `max` bytes and remembers whether it had to cut.
struct Bounded<'a> {
    buf: &'a mut KVec<u8>,
    max: usize,
    cut: bool,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.buf.len().min(self.max);
        let take = s.len().min(room);
        if take < s.len() {
            self.cut = true;
        }
        self.buf
            .extend_from_slice(&s.as_bytes()[..take], GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}
