// SPDX-License-Identifier: GPL-2.0
//! The bridge's core: one thread that owns all state and turns each event (a kchat frame, a
//! NATS message, a connection up or down, the clock) into frames for kchat and publishes for
//! NATS, queued in the two [`Outbox`]es. It never blocks on a peer.
//!
//! Rules it keeps (docs/link.md):
//! - each local room message is published once, to its room's subject; remote ones are
//!   posted to kchat in the order they came, after a `=join` of their sender if kchat has not
//!   been told it is in the room;
//! - payloads of our own node are ignored (the connection also asks for no echo);
//! - presence: local events are published as they happen; while our kchat is synced and
//!   NATS up, a `state` goes out every heartbeat, on a `hello`, after kchat's snapshot and
//!   after each NATS (re)connection (with a `hello`); another node's `state` reconciles what
//!   our kchat was told of it; a node silent for the silence timeout is dropped (`=drop`),
//!   except while we are ourselves cut off from NATS;
//! - after each new link, kchat is first told every remote member again (it forgot them when
//!   the old link closed); presence for kchat is not queued while the link is down, messages
//!   are (bounded).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    event::Event,
    link::{self, FromKchat, ToKchat},
    log::{log, shown, Throttle},
    members::{Change, Members},
    names::Malformed,
    nats::proto,
    outbox::{Drops, Kind, Outbox},
    payload::{parse_room, Presence, PrivMsg, RoomBatch, RoomMsg},
    remote::Remote,
    stats::Stats,
    subject,
};

/// Timing and identity.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our node name.
    pub node: String,
    /// Time between `state` heartbeats.
    pub heartbeat: Duration,
    /// Silence after which a node is dropped.
    pub silence: Duration,
    /// Time between stats lines, if any.
    pub stats_every: Option<Duration>,
    /// The longest frame kchat takes on the link (a longer one would make it close the link).
    pub kchat_max_frame: usize,
}

/// Bytes a `state` payload needs before its rooms (`NODE state SEQ I/N `).
const STATE_HEAD: usize = 16 + 7 + 20 + 1 + 21 + 1;

/// Smallest room budget of a `state` part.
const MIN_STATE_BUDGET: usize = 200;

/// How often the clock is looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// The longest payload a batch of room messages grows to (also never beyond the server's
/// max_payload). A batch holds only what kchat sent while the core was busy: it adds no
/// delay.
const BATCH_PAYLOAD: usize = 32 * 1024;

/// Shortest time between two lines about drops.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Whether to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Go,
    /// A signal asked us to stop.
    Exit(i32),
}

/// The core's state.
pub struct Bridge {
    cfg: Config,
    /// Publishes for NATS.
    nats: Arc<Outbox>,
    /// Frames for kchat.
    kchat: Arc<Outbox>,
    /// The NATS server's max_payload.
    max_payload: Arc<AtomicUsize>,
    /// The link generation that is up.
    link: Option<u64>,
    /// True once kchat's snapshot of this link is complete.
    synced: bool,
    /// The snapshot being read.
    snapshot: Members,
    /// Our node's members.
    local: Members,
    /// Other nodes.
    remote: BTreeMap<String, Remote>,
    nats_up: bool,
    /// The last `state` number used.
    seq: u64,
    /// Local room messages of one room not yet published: (subject, batch). A run of
    /// messages to one room that kchat sent while the core was busy goes out as one payload
    /// when no event waits ([`Bridge::idle`]); any other publish, or a message to another
    /// room, publishes it first, so the order of everything published holds.
    batch: Option<(String, RoomBatch)>,
    next_heartbeat: Instant,
    next_tick: Instant,
    next_stats: Option<Instant>,
    next_drop_report: Instant,
    /// Drops not yet reported: for NATS, for kchat.
    unreported: (Drops, Drops),
    stats: Stats,
    refusals: Throttle,
    malformed: Throttle,
    too_long: Throttle,
}

/// Queues `frame` for kchat: presence ([`Kind::Volatile`]) only while the link is up,
/// since a new link is told all presence anew.
fn post(kchat: &Outbox, link_up: bool, frame: ToKchat<'_>, kind: Kind) {
    post_payload(kchat, link_up, &frame.payload(), kind);
}

/// Queues a frame for kchat, its payload already built.
fn post_payload(kchat: &Outbox, link_up: bool, payload: &[u8], kind: Kind) {
    if kind == Kind::Volatile && !link_up {
        return;
    }
    kchat.push(kchat_proto::encode(payload), kind);
}

/// The node `node`, marked heard `now` (known from now on if it was not).
fn heard<'a>(remote: &'a mut BTreeMap<String, Remote>, node: &str, now: Instant) -> &'a mut Remote {
    if !remote.contains_key(node) {
        log!("node {node} is up");
        remote.insert(node.to_string(), Remote::new(now));
    }
    let r = remote.get_mut(node).expect("just inserted");
    r.last_heard = now;
    r
}

impl Bridge {
    /// A core publishing to `nats` and posting to `kchat`.
    pub fn new(
        cfg: Config,
        nats: Arc<Outbox>,
        kchat: Arc<Outbox>,
        max_payload: Arc<AtomicUsize>,
        now: Instant,
    ) -> Self {
        Self {
            next_stats: cfg.stats_every.map(|d| now + d),
            next_heartbeat: now + cfg.heartbeat,
            cfg,
            nats,
            kchat,
            max_payload,
            link: None,
            synced: false,
            snapshot: Members::new(),
            local: Members::new(),
            remote: BTreeMap::new(),
            nats_up: false,
            seq: 0,
            batch: None,
            next_tick: now,
            next_drop_report: now,
            unreported: Default::default(),
            stats: Stats::default(),
            refusals: Throttle::new(Duration::from_secs(5)),
            malformed: Throttle::new(Duration::from_secs(5)),
            too_long: Throttle::new(Duration::from_secs(5)),
        }
    }

    /// The counters, with the drops the queues have counted.
    pub fn stats(&mut self) -> &Stats {
        self.collect_drops();
        self.stats.written_nats = self.nats.written_total();
        self.stats.written_kchat = self.kchat.written_total();
        self.stats.queued_nats = self.nats.queued().1 as u64;
        self.stats.queued_kchat = self.kchat.queued().1 as u64;
        &self.stats
    }

    /// Handles one event.
    pub fn handle(&mut self, ev: Event, now: Instant) -> Flow {
        match ev {
            Event::KchatUp { gen } => self.kchat_up(gen),
            Event::KchatDown { gen } => {
                if self.link == Some(gen) {
                    self.link = None;
                    self.synced = false;
                }
            }
            Event::KchatFrames { gen, frames } => {
                if self.link == Some(gen) {
                    for frame in &frames {
                        self.on_kchat_frame(frame, now);
                    }
                }
            }
            Event::NatsUp => {
                self.nats_up = true;
                self.stats.nats_connections += 1;
                // Whoever was silent while we were cut off gets a fresh start.
                for r in self.remote.values_mut() {
                    r.last_heard = now;
                }
                let hello = Presence::Hello.payload(&self.cfg.node);
                self.publish(subject::PRESENCE, &hello, Kind::Control);
                self.stats.presence_out += 1;
                self.publish_state(Kind::Control, now);
            }
            Event::NatsDown => self.nats_up = false,
            Event::NatsMsgs(msgs) => {
                for (subject, payload) in &msgs {
                    self.on_nats_msg(subject, payload, now);
                }
            }
            Event::Signal(sig) => return Flow::Exit(sig),
        }
        Flow::Go
    }

    /// No event waits: publishes the batch of room messages (a batch never waits for more
    /// than the events already queued).
    pub fn idle(&mut self) {
        self.publish_batch();
    }

    /// Link generation `gen` is up: kchat first hears every remote member again.
    fn kchat_up(&mut self, gen: u64) {
        self.link = Some(gen);
        self.synced = false;
        self.snapshot = Members::new();
        self.stats.kchat_links += 1;
        let mut again = Vec::new();
        for (node, r) in &self.remote {
            for (room, nick) in r.members.pairs() {
                again.push(ToKchat::Join { room, nick, node }.frame());
            }
        }
        if !again.is_empty() {
            log!(
                "telling kchat again of {} remote memberships of {} nodes",
                again.len(),
                self.remote.len()
            );
        }
        self.kchat.open(gen, again, false);
    }

    /// Queues a publish, after the batch of room messages said before it.
    fn publish(&mut self, subject: &str, payload: &[u8], kind: Kind) {
        self.publish_batch();
        self.nats
            .push_pub(proto::publish(subject, payload), payload.len(), 1, kind);
    }

    /// Adds a local room message to the batch, publishing the batch first if it is of
    /// another room or would grow too long.
    fn batch_room_msg(&mut self, room: &str, nick: &str, text: &[u8]) {
        let subject = subject::room(room);
        let limit = BATCH_PAYLOAD.min(self.max_payload.load(Ordering::Relaxed));
        if self
            .batch
            .as_ref()
            .is_some_and(|(s, b)| *s != subject || b.len_with(nick, text) > limit)
        {
            self.publish_batch();
        }
        let node = &self.cfg.node;
        let (_, batch) = self
            .batch
            .get_or_insert_with(|| (subject, RoomBatch::new(node)));
        batch.push(nick, text);
        self.stats.room_out += 1;
    }

    /// Publishes the batch of room messages, if any: one message in the single form.
    fn publish_batch(&mut self) {
        let Some((subject, batch)) = self.batch.take() else {
            return;
        };
        let node = &self.cfg.node;
        let payload = match batch.single() {
            Some((nick, text)) => RoomMsg { node, nick, text }.payload(),
            None => batch.payload(node),
        };
        let messages = batch.count() as u64;
        self.nats.push_pub(
            proto::publish(&subject, &payload),
            payload.len(),
            messages,
            Kind::Data,
        );
        self.stats.room_batches_out += 1;
    }

    /// Publishes our presence, whole, if we know it (kchat synced), in as many parts as the
    /// server's max_payload needs.
    fn publish_state(&mut self, kind: Kind, now: Instant) {
        if !self.synced {
            return;
        }
        self.seq += 1;
        let budget = self
            .max_payload
            .load(Ordering::Relaxed)
            .saturating_sub(STATE_HEAD)
            .max(MIN_STATE_BUDGET);
        let parts = self.local.state_parts(budget);
        let total = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        for (i, rooms) in parts.iter().enumerate() {
            let part = (u32::try_from(i + 1).unwrap_or(u32::MAX), total);
            let p = Presence::State {
                seq: self.seq,
                part,
                rooms,
            }
            .payload(&self.cfg.node);
            self.publish(subject::PRESENCE, &p, kind);
        }
        self.stats.presence_out += parts.len() as u64;
        self.next_heartbeat = now + self.cfg.heartbeat;
    }

    /// Publishes a change of our node's presence.
    fn publish_presence(&mut self, said: Presence<'_>) {
        let p = said.payload(&self.cfg.node);
        self.publish(subject::PRESENCE, &p, Kind::Data);
        self.stats.presence_out += 1;
    }

    /// Counts and logs what could not be parsed.
    fn malformed(&mut self, what: &str, why: Malformed, bytes: &[u8], now: Instant) {
        self.stats.malformed += 1;
        let msg = format!("ignored a malformed {what} ({why})");
        if let Some(line) = self.malformed.check(&msg, now) {
            log!("{line}: {}", shown(bytes, 120));
        }
    }

    /// A frame from kchat.
    fn on_kchat_frame(&mut self, frame: &[u8], now: Instant) {
        let parsed = match link::parse(frame) {
            Ok(p) => p,
            Err(why) => return self.malformed("frame from kchat", why, frame, now),
        };
        let node = self.cfg.node.clone();
        match parsed {
            FromKchat::Link { .. } | FromKchat::Other => {}
            FromKchat::Synced => {
                if !self.synced {
                    self.local = std::mem::take(&mut self.snapshot);
                    self.synced = true;
                    log!(
                        "kchat synced: {} members in {} rooms",
                        self.local.member_count(),
                        self.local.room_count()
                    );
                    if self.nats_up {
                        self.publish_state(Kind::Control, now);
                    }
                }
            }
            FromKchat::Join { room, nick } => {
                if !self.synced {
                    self.snapshot.join(room, nick);
                } else if self.local.join(room, nick) {
                    self.publish_presence(Presence::Join { room, nick });
                }
            }
            FromKchat::Part { room, nick } => {
                if !self.synced {
                    self.snapshot.part(room, nick);
                } else if self.local.part(room, nick) {
                    self.publish_presence(Presence::Part { room, nick });
                }
            }
            FromKchat::Nick { old, new } => {
                if !self.synced {
                    self.snapshot.rename(old, new);
                } else if self.local.rename(old, new) {
                    self.publish_presence(Presence::Nick { old, new });
                }
            }
            FromKchat::Quit { nick } => {
                if !self.synced {
                    self.snapshot.quit(nick);
                } else if self.local.quit(nick) {
                    self.publish_presence(Presence::Quit { nick });
                }
            }
            FromKchat::Msg { text: b"", .. } | FromKchat::Priv { text: b"", .. } => {
                self.malformed("frame from kchat", Malformed("empty text"), frame, now);
            }
            FromKchat::Msg { room, nick, text } => self.batch_room_msg(room, nick, text),
            FromKchat::Priv {
                to,
                node: to_node,
                from,
                text,
            } => {
                if to_node == node {
                    return self.malformed(
                        "frame from kchat",
                        Malformed("private message to our own node"),
                        frame,
                        now,
                    );
                }
                let p = PrivMsg {
                    node: &node,
                    to,
                    from,
                    text,
                }
                .payload();
                self.publish(&subject::private(to_node), &p, Kind::Data);
                self.stats.priv_out += 1;
            }
            FromKchat::Refused(why) => {
                self.stats.refused += 1;
                if let Some(line) = self.refusals.check("kchat refused a link frame", now) {
                    log!("{line}: ! {}", shown(why, 200));
                }
            }
        }
    }

    /// A message from NATS.
    fn on_nats_msg(&mut self, subj: &str, payload: &[u8], now: Instant) {
        if subj == subject::PRESENCE {
            self.presence(payload, now);
        } else if let Some(room) = subject::subject_room(subj) {
            self.room_msgs(&room, payload, now);
        } else if subject::is_private(subj) && subj == subject::private(&self.cfg.node) {
            self.priv_msg(payload, now);
        } else {
            self.malformed("subject", Malformed("not ours"), subj.as_bytes(), now);
        }
    }

    /// A room payload of another node: one message or a batch.
    fn room_msgs(&mut self, room: &str, payload: &[u8], now: Instant) {
        let (node, msgs) = match parse_room(payload) {
            Ok(m) => m,
            Err(why) => return self.malformed("room message", why, payload, now),
        };
        if node == self.cfg.node {
            self.stats.own_ignored += 1;
            return;
        }
        heard(&mut self.remote, node, now);
        for (nick, text) in msgs {
            if text.is_empty() {
                self.malformed("room message", Malformed("empty text"), payload, now);
            } else {
                self.room_msg(room, node, nick, text, now);
            }
        }
    }

    /// Posts NICK of NODE's message to kchat (a `=join` first if NICK is new in the room).
    fn room_msg(&mut self, room: &str, node: &str, nick: &str, text: &[u8], now: Instant) {
        let frame = ToKchat::Msg {
            room,
            nick,
            node,
            text,
        }
        .payload();
        if !self.fits_kchat(&frame, nick, node, now) {
            return;
        }
        self.stats.room_in += 1;
        let link_up = self.link.is_some();
        let r = self.remote.get_mut(node).expect("heard above");
        if r.members.join(room, nick) {
            post(
                &self.kchat,
                link_up,
                ToKchat::Join { room, nick, node },
                Kind::Volatile,
            );
        }
        post_payload(&self.kchat, link_up, &frame, Kind::Data);
    }

    /// True if kchat takes a frame of `payload`'s length; if not, counts and logs it.
    fn fits_kchat(&mut self, payload: &[u8], nick: &str, node: &str, now: Instant) -> bool {
        if payload.len() <= self.cfg.kchat_max_frame {
            return true;
        }
        self.stats.too_long += 1;
        let msg = "a message too long for kchat was not posted";
        if let Some(line) = self.too_long.check(msg, now) {
            log!(
                "{line}: {} bytes from {nick}@{node}, over --kchat-max-frame {}",
                payload.len(),
                self.cfg.kchat_max_frame
            );
        }
        false
    }

    /// A private message to one of our members.
    fn priv_msg(&mut self, payload: &[u8], now: Instant) {
        let m = match PrivMsg::parse(payload) {
            Ok(m) => m,
            Err(why) => return self.malformed("private message", why, payload, now),
        };
        if m.node == self.cfg.node {
            self.stats.own_ignored += 1;
            return;
        }
        heard(&mut self.remote, m.node, now);
        if m.text.is_empty() {
            return self.malformed("private message", Malformed("empty text"), payload, now);
        }
        let frame = ToKchat::Priv {
            to: m.to,
            from: m.from,
            node: m.node,
            text: m.text,
        }
        .payload();
        if !self.fits_kchat(&frame, m.from, m.node, now) {
            return;
        }
        self.stats.priv_in += 1;
        post_payload(&self.kchat, self.link.is_some(), &frame, Kind::Data);
    }

    /// A presence payload of another node.
    fn presence(&mut self, payload: &[u8], now: Instant) {
        let (node, said) = match Presence::parse(payload) {
            Ok(p) => p,
            Err(why) => return self.malformed("presence", why, payload, now),
        };
        if node == self.cfg.node {
            self.stats.own_ignored += 1;
            return;
        }
        self.stats.presence_in += 1;
        let link_up = self.link.is_some();
        let r = heard(&mut self.remote, node, now);
        let kchat = &*self.kchat;
        let vol = Kind::Volatile;
        match said {
            Presence::Hello => {
                if self.nats_up {
                    self.publish_state(Kind::Data, now);
                }
            }
            Presence::Join { room, nick } => {
                if r.members.join(room, nick) {
                    post(kchat, link_up, ToKchat::Join { room, nick, node }, vol);
                }
            }
            Presence::Part { room, nick } => {
                if r.members.part(room, nick) {
                    post(kchat, link_up, ToKchat::Part { room, nick, node }, vol);
                }
            }
            Presence::Nick { old, new } => {
                if r.members.rename(old, new) {
                    post(kchat, link_up, ToKchat::Nick { old, new, node }, vol);
                }
            }
            Presence::Quit { nick } => {
                if r.members.quit(nick) {
                    post(kchat, link_up, ToKchat::Quit { nick, node }, vol);
                }
            }
            Presence::State { seq, part, rooms } => {
                let Some(new) = r.state_part(seq, part, rooms) else {
                    return;
                };
                for change in r.members.changes_to(&new) {
                    let frame = match &change {
                        Change::Join { room, nick } => ToKchat::Join { room, nick, node },
                        Change::Part { room, nick } => ToKchat::Part { room, nick, node },
                        Change::Quit { nick } => ToKchat::Quit { nick, node },
                    };
                    post(kchat, link_up, frame, vol);
                }
                r.members = new;
            }
        }
    }

    /// Moves the queues' drop counts into the stats and the report to come.
    fn collect_drops(&mut self) {
        for (outbox, pending, is_nats) in [
            (&self.nats, &mut self.unreported.0, true),
            (&self.kchat, &mut self.unreported.1, false),
        ] {
            let d = outbox.take_drops();
            pending.full += d.full;
            pending.bytes += d.bytes;
            pending.oversize += d.oversize;
            if is_nats {
                self.stats.dropped_nats += d.full;
                self.stats.dropped_nats_bytes += d.bytes;
                self.stats.oversize += d.oversize;
            } else {
                self.stats.dropped_kchat += d.full;
            }
        }
    }

    /// Logs the drops since the last report, at most once per [`DROP_REPORT_EVERY`].
    fn report_drops(&mut self, now: Instant) {
        self.collect_drops();
        if now < self.next_drop_report {
            return;
        }
        let (nats, kchat) = std::mem::take(&mut self.unreported);
        if nats.full > 0 {
            let why = if self.nats_up {
                "NATS is slow"
            } else {
                "while disconnected"
            };
            log!(
                "dropped {} messages ({} bytes) for NATS {why}: buffer full",
                nats.full,
                nats.bytes
            );
        }
        if nats.oversize > 0 {
            log!(
                "dropped {} messages for NATS over the server's max_payload of {} bytes",
                nats.oversize,
                self.max_payload.load(Ordering::Relaxed)
            );
        }
        if kchat.full > 0 {
            let why = if self.link.is_some() {
                "kchat is slow"
            } else {
                "while the link is down"
            };
            log!(
                "dropped {} messages ({} bytes) for kchat {why}: buffer full",
                kchat.full,
                kchat.bytes
            );
        }
        if nats != Drops::default() || kchat != Drops::default() {
            self.next_drop_report = now + DROP_REPORT_EVERY;
        }
    }

    /// What the clock brings: heartbeats, silent nodes, reports. Cheap when called often.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        if self.nats_up && self.synced && now >= self.next_heartbeat {
            self.publish_state(Kind::Data, now);
        }
        if self.nats_up {
            let silence = self.cfg.silence;
            let silent: Vec<String> = self
                .remote
                .iter()
                .filter(|(_, r)| now.duration_since(r.last_heard) >= silence)
                .map(|(n, _)| n.clone())
                .collect();
            for node in silent {
                let r = self.remote.remove(&node).expect("listed");
                self.stats.nodes_dropped += 1;
                log!(
                    "node {node} silent for {:.1} s: dropped ({} members)",
                    silence.as_secs_f64(),
                    r.members.member_count()
                );
                post(
                    &self.kchat,
                    self.link.is_some(),
                    ToKchat::Drop { node: &node },
                    Kind::Volatile,
                );
            }
        }
        self.report_drops(now);
        if let (Some(at), Some(every)) = (self.next_stats, self.cfg.stats_every) {
            if now >= at {
                self.next_stats = Some(now + every);
                let line = self.stats().to_string();
                log!("stats: {line}");
            }
        }
    }

    /// Remote nodes known and their members (for the stats line on exit).
    pub fn remote_summary(&self) -> (usize, usize) {
        (
            self.remote.len(),
            self.remote.values().map(|r| r.members.member_count()).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    struct Core {
        b: Bridge,
        nats: Arc<Outbox>,
        kchat: Arc<Outbox>,
        max_payload: Arc<AtomicUsize>,
        t0: Instant,
    }

    impl Core {
        fn new(node: &str) -> Self {
            let nats = Arc::new(Outbox::new(1 << 20));
            let kchat = Arc::new(Outbox::new(1 << 20));
            let max_payload = Arc::new(AtomicUsize::new(1 << 20));
            let t0 = Instant::now();
            let cfg = Config {
                node: node.into(),
                heartbeat: 5 * S,
                silence: 15 * S,
                stats_every: None,
                kchat_max_frame: 4096,
            };
            let b = Bridge::new(cfg, nats.clone(), kchat.clone(), max_payload.clone(), t0);
            Self {
                b,
                nats,
                kchat,
                max_payload,
                t0,
            }
        }

        fn ev(&mut self, ev: Event) {
            let now = self.t0;
            assert_eq!(self.b.handle(ev, now), Flow::Go);
            self.b.idle();
        }

        /// Links (a new generation), sends the snapshot `joins` and `=synced`.
        fn link(&mut self, joins: &[&str]) -> u64 {
            let gen = self.kchat.attach();
            self.ev(Event::KchatUp { gen });
            for j in joins {
                self.frame(gen, j);
            }
            self.frame(gen, "=synced");
            gen
        }

        fn frame(&mut self, gen: u64, f: &str) {
            self.ev(Event::KchatFrames {
                gen,
                frames: vec![f.as_bytes().to_vec()],
            });
        }

        fn msg(&mut self, subject: &str, payload: &str) {
            self.ev(Event::NatsMsgs(vec![(
                subject.into(),
                payload.as_bytes().to_vec(),
            )]));
        }

        /// What was queued for kchat since the last call, as payload text.
        fn posted(&self) -> Vec<String> {
            self.kchat
                .drain()
                .iter()
                .map(|f| {
                    let len = u32::from_le_bytes(f[..4].try_into().unwrap()) as usize;
                    assert_eq!(len, f.len() - 4);
                    String::from_utf8_lossy(&f[4..]).into_owned()
                })
                .collect()
        }

        /// What was queued for NATS since the last call, as (subject, payload) of each PUB.
        fn published(&self) -> Vec<(String, String)> {
            self.nats
                .drain()
                .iter()
                .filter_map(|op| {
                    let text = String::from_utf8_lossy(op).into_owned();
                    let (line, rest) = text.split_once("\r\n").unwrap();
                    let mut a = line.split(' ');
                    if a.next() != Some("PUB") {
                        return None;
                    }
                    let subject = a.next().unwrap().to_string();
                    let len: usize = a.next().unwrap().parse().unwrap();
                    assert_eq!(&rest[len..], "\r\n");
                    Some((subject, rest[..len].to_string()))
                })
                .collect()
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn runs_of_one_room_in_one_read_are_batched_in_order() {
        let mut c = Core::new("n1");
        let gen = c.link(&["=join #lobby alice"]);
        c.ev(Event::NatsUp);
        c.published();
        let frames = [
            "=msg #lobby alice one",
            "=msg #Lobby bob two  spaces",
            "=msg #lobby alice three",
            "=msg #rust alice four",
            "=join #lobby carol",
            "=msg #lobby carol five",
            "=msg #lobby alice six",
        ];
        c.ev(Event::KchatFrames {
            gen,
            frames: frames.iter().map(|f| f.as_bytes().to_vec()).collect(),
        });
        assert_eq!(
            c.published(),
            pairs(&[
                (
                    "kchat.room.lobby",
                    "n1 @3 alice 3 onebob 11 two  spacesalice 5 three"
                ),
                ("kchat.room.rust", "n1 alice four"),
                ("kchat.presence", "n1 join #lobby carol"),
                ("kchat.room.lobby", "n1 @2 carol 4 fivealice 3 six"),
            ])
        );
        assert_eq!(c.b.stats().room_out, 6);
        assert_eq!(c.b.stats().room_batches_out, 3);

        // A batch that would outgrow max_payload goes in two.
        c.max_payload.store(40, Ordering::Relaxed);
        c.ev(Event::KchatFrames {
            gen,
            frames: [
                "=msg #lobby alice 0123456789",
                "=msg #lobby alice abcdefghij",
            ]
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect(),
        });
        assert_eq!(
            c.published(),
            pairs(&[
                ("kchat.room.lobby", "n1 alice 0123456789"),
                ("kchat.room.lobby", "n1 alice abcdefghij"),
            ])
        );

        // Another node's batch: each message posted in order, a =join before a newcomer's.
        let mut d = Core::new("n2");
        d.link(&[]);
        d.ev(Event::NatsUp);
        d.posted();
        d.msg(
            "kchat.room.lobby",
            "n1 @3 alice 3 onebob 11 two  spacesalice 5 three",
        );
        assert_eq!(
            d.posted(),
            [
                "=join #lobby alice@n1",
                "=msg #lobby alice@n1 one",
                "=join #lobby bob@n1",
                "=msg #lobby bob@n1 two  spaces",
                "=msg #lobby alice@n1 three",
            ]
        );
        // A malformed batch posts nothing.
        d.msg("kchat.room.lobby", "n1 @2 alice 3 one");
        assert!(d.posted().is_empty());
        assert_eq!(d.b.stats().malformed, 1);
    }

    #[test]
    fn local_events_are_published_once_kchat_is_synced() {
        let mut c = Core::new("n1");
        let gen = c.link(&["=join #lobby alice", "=join #rust alice"]);
        assert!(c.published().is_empty(), "nothing before NATS is up");
        c.ev(Event::NatsUp);
        assert_eq!(
            c.published(),
            pairs(&[
                ("kchat.presence", "n1 hello"),
                ("kchat.presence", "n1 state 1 #lobby alice;#rust alice"),
            ])
        );
        c.frame(gen, "=msg #Rust.Dev alice hi\r\nthere");
        c.frame(gen, "=priv bob@n2 alice psst");
        c.frame(gen, "=join #lobby bob");
        c.frame(gen, "=join #lobby bob");
        c.frame(gen, "=part #rust alice");
        c.frame(gen, "=nick alice al");
        c.frame(gen, "=quit al");
        c.frame(gen, "=quit nobody");
        c.frame(gen, "! link: no such member");
        c.frame(gen, "=bogus");
        assert_eq!(
            c.published(),
            pairs(&[
                ("kchat.room.rust%2Edev", "n1 alice hi\r\nthere"),
                ("kchat.priv.n2", "n1 bob alice psst"),
                ("kchat.presence", "n1 join #lobby bob"),
                ("kchat.presence", "n1 part #rust alice"),
                ("kchat.presence", "n1 nick alice al"),
                ("kchat.presence", "n1 quit al"),
            ])
        );
        let st = c.b.stats().clone();
        assert_eq!(
            (st.room_out, st.priv_out, st.refused, st.malformed),
            (1, 1, 1, 1)
        );
        // A frame of an old link is ignored.
        c.frame(gen + 7, "=msg #lobby bob old");
        assert!(c.published().is_empty());
    }

    #[test]
    fn remote_events_are_posted_and_own_ignored() {
        let mut c = Core::new("n1");
        c.link(&["=join #lobby alice"]);
        c.ev(Event::NatsUp);
        c.published();
        c.msg("kchat.room.lobby", "n2 bob hi there");
        c.msg("kchat.room.lobby", "n2 bob again");
        c.msg("kchat.room.lobby", "n1 alice my own");
        c.msg("kchat.room.rust%2Edev", "n2 bob dotted");
        c.msg("kchat.presence", "n2 join #go carol");
        c.msg("kchat.presence", "n2 nick carol caro");
        c.msg("kchat.presence", "n1 join #lobby alice");
        c.msg("kchat.priv.n1", "n2 alice bob psst");
        c.msg("kchat.priv.n1", "n1 alice bob loop");
        c.msg("kchat.presence", "n2 part #go caro");
        c.msg("kchat.presence", "n2 quit bob");
        assert_eq!(
            c.posted(),
            [
                "=join #lobby bob@n2",
                "=msg #lobby bob@n2 hi there",
                "=msg #lobby bob@n2 again",
                "=join #rust.dev bob@n2",
                "=msg #rust.dev bob@n2 dotted",
                "=join #go carol@n2",
                "=nick carol@n2 caro@n2",
                "=priv alice bob@n2 psst",
                "=part #go caro@n2",
                "=quit bob@n2",
            ]
        );
        let st = c.b.stats().clone();
        assert_eq!(st.own_ignored, 3);
        assert_eq!((st.room_in, st.priv_in, st.presence_in), (3, 1, 4));
    }

    #[test]
    fn a_state_reconciles_and_a_hello_is_answered() {
        let mut c = Core::new("n1");
        c.link(&["=join #lobby alice"]);
        c.ev(Event::NatsUp);
        c.published();
        c.msg("kchat.presence", "n2 join #lobby bob");
        c.msg("kchat.presence", "n2 join #rust bob");
        c.msg("kchat.presence", "n2 join #old carol");
        c.posted();
        c.msg("kchat.presence", "n2 state 4 #go bob;#Lobby dave");
        assert_eq!(
            c.posted(),
            [
                "=join #go bob@n2",
                "=join #Lobby dave@n2",
                "=part #lobby bob@n2",
                "=part #rust bob@n2",
                "=quit carol@n2",
            ]
        );
        c.msg("kchat.presence", "n2 state 5 #go bob;#lobby dave");
        assert!(c.posted().is_empty(), "nothing changed");
        c.msg("kchat.presence", "n2 hello");
        assert_eq!(
            c.published(),
            pairs(&[("kchat.presence", "n1 state 2 #lobby alice")])
        );
    }

    #[test]
    fn silent_nodes_are_dropped_but_not_while_we_are_cut_off() {
        let mut c = Core::new("n1");
        c.link(&[]);
        c.ev(Event::NatsUp);
        c.msg("kchat.presence", "n2 join #lobby bob");
        c.msg("kchat.presence", "n3 join #lobby carol");
        c.posted();
        let t0 = c.t0;
        c.b.handle(
            Event::NatsMsgs(vec![(
                "kchat.presence".into(),
                b"n3 state 1 #lobby carol".to_vec(),
            )]),
            t0 + 10 * S,
        );
        c.b.tick(t0 + 14 * S);
        assert!(c.posted().is_empty());
        c.b.tick(t0 + 15 * S);
        assert_eq!(c.posted(), ["=drop n2"], "n2 silent 15 s, n3 only 5 s");
        c.b.handle(Event::NatsDown, t0 + 16 * S);
        c.b.tick(t0 + 40 * S);
        assert!(
            c.posted().is_empty(),
            "nobody is dropped while we are cut off"
        );
        c.b.handle(Event::NatsUp, t0 + 40 * S);
        c.b.tick(t0 + 54 * S);
        assert!(c.posted().is_empty(), "a fresh start after reconnecting");
        c.b.tick(t0 + 55 * S);
        assert_eq!(c.posted(), ["=drop n3"]);
        assert_eq!(c.b.stats().nodes_dropped, 2);
        // A dropped node that speaks again is known again.
        c.msg("kchat.room.lobby", "n2 bob back");
        assert_eq!(
            c.posted(),
            ["=join #lobby bob@n2", "=msg #lobby bob@n2 back"]
        );
    }

    #[test]
    fn heartbeats_only_while_synced_and_connected() {
        let mut c = Core::new("n1");
        let t0 = c.t0;
        c.b.tick(t0 + 6 * S);
        assert!(c.published().is_empty(), "not synced, not connected");
        let gen = c.link(&["=join #lobby alice"]);
        c.b.tick(t0 + 12 * S);
        assert!(c.published().is_empty(), "not connected");
        c.b.handle(Event::NatsUp, t0 + 12 * S);
        assert_eq!(c.published().len(), 2, "hello and state");
        c.b.tick(t0 + 16 * S);
        assert!(c.published().is_empty());
        c.b.tick(t0 + 17 * S);
        assert_eq!(
            c.published(),
            pairs(&[("kchat.presence", "n1 state 2 #lobby alice")])
        );
        c.b.handle(Event::KchatDown { gen }, t0 + 18 * S);
        c.b.tick(t0 + 30 * S);
        assert!(c.published().is_empty(), "no state while the link is down");
        c.msg("kchat.presence", "n2 hello");
        assert!(c.published().is_empty(), "no answer while the link is down");
    }

    #[test]
    fn a_new_link_first_hears_every_remote_member_again() {
        let mut c = Core::new("n1");
        let gen = c.link(&[]);
        c.ev(Event::NatsUp);
        c.msg("kchat.presence", "n2 state 1 #lobby bob;#rust bob");
        c.msg("kchat.presence", "n3 join #lobby carol");
        c.msg("kchat.room.lobby", "n3 carol before");
        assert_eq!(c.posted().len(), 4);
        c.ev(Event::KchatDown { gen });
        c.msg("kchat.presence", "n3 join #go carol");
        c.msg("kchat.room.go", "n3 carol while down");
        c.msg("kchat.presence", "n2 quit bob");
        assert_eq!(
            c.posted(),
            ["=msg #go carol@n3 while down"],
            "presence waits for the new link, messages are queued"
        );
        c.ev(Event::NatsMsgs(vec![(
            "kchat.room.go".into(),
            b"n3 carol still down".to_vec(),
        )]));
        let gen2 = c.kchat.attach();
        c.ev(Event::KchatUp { gen: gen2 });
        assert_eq!(
            c.posted(),
            [
                "=join #go carol@n3",
                "=join #lobby carol@n3",
                "=msg #go carol@n3 still down",
            ]
        );
    }

    #[test]
    fn a_big_state_is_cut_to_max_payload_and_put_together() {
        let mut a = Core::new("n1");
        a.max_payload.store(300, Ordering::Relaxed);
        let joins: Vec<String> = (0..60)
            .map(|i| format!("=join #room{} member{i:03}", i % 4))
            .collect();
        let joins: Vec<&str> = joins.iter().map(String::as_str).collect();
        a.link(&joins);
        a.ev(Event::NatsUp);
        let states: Vec<(String, String)> = a
            .published()
            .into_iter()
            .filter(|(_, p)| p.starts_with("n1 state"))
            .collect();
        assert!(states.len() >= 3, "{} parts", states.len());
        let total = states.len();
        for (i, (_, p)) in states.iter().enumerate() {
            assert!(p.len() <= 300, "{} bytes", p.len());
            assert!(
                p.starts_with(&format!("n1 state 1 {}/{total} #room", i + 1)),
                "{p}"
            );
        }
        let mut b = Core::new("n2");
        b.link(&[]);
        b.ev(Event::NatsUp);
        // Parts arrive in any order; nothing is posted until the last.
        let mut order: Vec<usize> = (0..total).rev().collect();
        order.rotate_left(1);
        for (k, &i) in order.iter().enumerate() {
            b.msg("kchat.presence", &states[i].1);
            let posted = b.posted();
            if k + 1 < total {
                assert!(posted.is_empty());
            } else {
                assert_eq!(posted.len(), 60);
                assert!(posted.iter().all(|f| f.starts_with("=join #room")));
                assert!(posted.contains(&"=join #room3 member059@n1".to_string()));
            }
        }
    }

    #[test]
    fn empty_and_too_long_texts_are_not_relayed() {
        let mut c = Core::new("n1");
        let gen = c.link(&["=join #lobby alice"]);
        c.ev(Event::NatsUp);
        c.published();
        c.frame(gen, "=msg #lobby alice ");
        c.frame(gen, "=priv bob@n2 alice ");
        assert!(c.published().is_empty(), "kchat refuses an empty text");
        c.msg("kchat.room.lobby", "n2 bob ");
        c.msg("kchat.priv.n1", "n2 alice bob ");
        assert!(c.posted().is_empty());
        // `=msg #lobby bob@n2 ` is 19 bytes: 4077 bytes of text make the longest frame.
        let fits = "x".repeat(4077);
        c.msg("kchat.room.lobby", &format!("n2 bob {fits}"));
        c.msg("kchat.room.lobby", &format!("n2 bob {fits}y"));
        c.msg(
            "kchat.priv.n1",
            &format!("n2 alice bob {}", "z".repeat(5000)),
        );
        let posted = c.posted();
        assert_eq!(posted.len(), 2, "the join, the message that fits");
        assert_eq!(posted[1].len(), 4096);
        let st = c.b.stats().clone();
        assert_eq!((st.too_long, st.malformed, st.room_in), (2, 4, 1));
    }

    #[test]
    fn signal_exits() {
        let mut c = Core::new("n1");
        assert_eq!(c.b.handle(Event::Signal(15), c.t0), Flow::Exit(15));
    }
}
