// SPDX-License-Identifier: GPL-2.0

//! The chat core without sockets: members that record what they are sent.

use kernel::{
    new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        SpinLock, //
    },
};

use super::{
    Core,
    JoinError,
    Limits,
    Member,
    Message,
    NickError,
    RelayBatch, //
};
use crate::{
    frame::Frame,
    frontend::Protocol,
    label::{
        Label,
        RoomName, //
    },
};

/// A member that keeps every frame it is sent.
#[pin_data]
struct Fake {
    id: u64,
    member_id: Atomic<u32>,
    #[pin]
    got: SpinLock<KVec<Arc<Frame>>>,
}

impl Member for Fake {
    fn conn_id(&self) -> u64 {
        self.id
    }

    fn slot(&self) -> &Atomic<u32> {
        &self.member_id
    }

    fn is_closing(&self) -> bool {
        false
    }

    fn protocol(&self) -> Protocol {
        Protocol::Native
    }

    fn deliver<'a>(this: &Arc<Self>, frames: impl Iterator<Item = &'a Arc<Frame>>) -> (u64, u64) {
        let mut got = this.got.lock();
        let (mut n, mut bytes) = (0, 0);
        for f in frames {
            if got.push(f.clone(), GFP_ATOMIC).is_ok() {
                n += 1;
                bytes += f.len() as u64;
            }
        }
        (n, bytes)
    }
}

impl Fake {
    fn new(id: u64) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                id,
                member_id: Atomic::new(u32::MAX),
                got <- new_spinlock!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Takes what it was sent, as payloads, and checks them against `want`.
    fn expect(&self, want: &[&[u8]]) -> Result {
        let got = core::mem::take(&mut *self.got.lock());
        assert_eq!(got.len(), want.len());
        for (f, w) in got.iter().zip(want) {
            let payload = &f.as_bytes()[4..];
            assert_eq!(payload, *w);
        }
        Ok(())
    }
}

fn chat(history: u32, max_rooms: u32) -> Result<Pin<KBox<Core<Fake>>>> {
    let limits = Limits {
        max_members: 100,
        max_rooms,
        history,
        notices: true,
        max_text: 4096,
    };
    KBox::pin_init(Core::new(limits)?, GFP_KERNEL)
}

fn nick(name: &[u8]) -> Result<Label> {
    Label::nick(name).map_err(|_| EINVAL)
}

fn room(name: &[u8]) -> Result<RoomName> {
    RoomName::parse(name).ok_or(EINVAL)
}

/// `from` says `text`: its front end's frame, relayed through a batch.
fn say(core: &Core<Fake>, from: &Arc<Fake>, label: &str, text: &str) -> Result {
    let frame = Arc::new(Frame::text(fmt!("{label}: {text}"))?, GFP_KERNEL)?;
    let mut batch = RelayBatch::new();
    batch.push(core, from, Message::new(frame))?;
    core.publish(&mut batch);
    Ok(())
}

/// Three members in `#lobby`: a, b, c, with what they were told on arrival taken.
fn three(core: &Core<Fake>) -> Result<[Arc<Fake>; 3]> {
    let m = [Fake::new(1)?, Fake::new(2)?, Fake::new(3)?];
    for (i, name) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
        core.add(&m[i], nick(name)?).map_err(|_| ENOMEM)?;
    }
    m[0].expect(&[b"* b joined", b"* c joined"])?;
    m[1].expect(&[b"* c joined"])?;
    m[2].expect(&[])?;
    Ok(m)
}

#[kunit_tests(kchat_chat)]
mod cases {
    use super::*;

    #[test]
    fn rooms_scope_messages_and_notices() -> Result {
        let core = chat(0, 10)?;
        let [a, b, c] = three(&core)?;
        core.join(&*b, &room(b"#Rust")?).map_err(|_| EINVAL)?;
        a.expect(&[b"* b left"])?;
        c.expect(&[b"* b left"])?;
        b.expect(&[b"* now in #Rust (1): b"])?;
        // Case-insensitive, shown as first spelled.
        core.join(&*c, &room(b"#rust")?).map_err(|_| EINVAL)?;
        a.expect(&[b"* c left"])?;
        b.expect(&[b"* c joined"])?;
        c.expect(&[b"* now in #Rust (2): b, c"])?;
        say(&core, &b, "b", "hi")?;
        c.expect(&[b"b: hi"])?;
        a.expect(&[])?;
        b.expect(&[])?;
        let again = core.join(&*c, &room(b"#RUST")?);
        assert_eq!(again, Err(JoinError::Already(room(b"#Rust")?)));
        core.rooms(&*a)?;
        a.expect(&[b"* 2 rooms: #lobby (1), #Rust (2)"])?;
        // The room disappears with its last member.
        core.part(&*b).map_err(|_| EINVAL)?;
        core.part(&*c).map_err(|_| EINVAL)?;
        let rooms = core.stats.rooms_now.load(Relaxed);
        assert_eq!(rooms, 1);
        core.who(&*a)?;
        a.expect(&[
            b"* b joined",
            b"* c joined",
            b"* 3 online in #lobby: a, b, c",
        ])?;
        let lobby = core.part(&*a);
        assert_eq!(lobby, Err(JoinError::Already(RoomName::lobby())));
        Ok(())
    }

    #[test]
    fn history_is_replayed_exactly_once() -> Result {
        let core = chat(2, 10)?;
        let [a, b, c] = three(&core)?;
        for text in ["one", "two", "three"] {
            say(&core, &a, "a", text)?;
        }
        b.expect(&[b"a: one", b"a: two", b"a: three"])?;
        c.expect(&[b"a: one", b"a: two", b"a: three"])?;
        // A newcomer gets the last two, then only what comes after.
        let d = Fake::new(4)?;
        core.add(&d, nick(b"d")?).map_err(|_| ENOMEM)?;
        d.expect(&[b"* last 2 messages of #lobby:", b"a: two", b"a: three"])?;
        say(&core, &a, "a", "four")?;
        d.expect(&[b"a: four"])?;
        // Moving to an empty room replays nothing; coming back replays the lobby's.
        core.join(&*d, &room(b"#x")?).map_err(|_| EINVAL)?;
        d.expect(&[b"* now in #x (1): d"])?;
        core.part(&*d).map_err(|_| EINVAL)?;
        d.expect(&[
            b"* now in #lobby (4): a, b, c, d",
            b"* last 2 messages of #lobby:",
            b"a: three",
            b"a: four",
        ])?;
        Ok(())
    }

    #[test]
    fn private_messages_and_nicks() -> Result {
        let core = chat(5, 10)?;
        let [a, b, c] = three(&core)?;
        core.join(&*c, &room(b"#elsewhere")?).map_err(|_| EINVAL)?;
        a.expect(&[b"* c left"])?;
        b.expect(&[b"* c left"])?;
        c.expect(&[b"* now in #elsewhere (1): c"])?;
        core.private(&*a, b"C", b"psst").map_err(|_| EINVAL)?;
        c.expect(&[b"a (private): psst"])?;
        b.expect(&[])?;
        let unknown = core.private(&*a, b"zed", b"hello");
        assert!(unknown.is_err());
        // Private messages are never history.
        let d = Fake::new(4)?;
        core.add(&d, nick(b"d")?).map_err(|_| ENOMEM)?;
        d.expect(&[])?;
        let taken = core.set_nick(&*b, nick(b"A")?);
        assert_eq!(taken, Err(NickError::Taken));
        core.set_nick(&*b, nick(b"bee")?).map_err(|_| EINVAL)?;
        a.expect(&[b"* d joined", b"* b is now bee"])?;
        core.private(&*c, b"BEE", b"hi").map_err(|_| EINVAL)?;
        b.expect(&[b"* d joined", b"c (private): hi"])?;
        // The old nick is free again.
        let freed = core.private(&*c, b"b", b"hi");
        assert!(freed.is_err());
        Ok(())
    }

    #[test]
    fn max_rooms_and_removal() -> Result {
        let core = chat(0, 2)?;
        let [a, b, c] = three(&core)?;
        core.join(&*a, &room(b"#one")?).map_err(|_| EINVAL)?;
        let full = core.join(&*b, &room(b"#two")?);
        assert_eq!(full, Err(JoinError::TooMany(2)));
        // Leaving the last member of #one frees it for another room.
        let label = core.remove(&*a);
        assert_eq!(label, Some(nick(b"a")?));
        core.join(&*b, &room(b"#two")?).map_err(|_| EINVAL)?;
        let n = core.len();
        assert_eq!(n, 2);
        c.got.lock().clear();
        let rooms = core.room_stats()?;
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms[1].name, room(b"#two")?);
        let gone = core.close_all().count();
        assert_eq!(gone, 2);
        Ok(())
    }
}
