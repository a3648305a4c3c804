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
    KickError,
    Limits,
    Member,
    Message,
    NickError,
    PartError,
    RelayBatch, //
    User,
};
use crate::{
    frame::Frame,
    frontend::Protocol,
    label::{
        Label,
        RoomName, //
    },
    net::PeerAddr,
};

/// A member that keeps every frame it is sent.
#[pin_data]
struct Fake {
    id: u64,
    protocol: Protocol,
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
        self.protocol
    }

    fn peer(&self) -> PeerAddr {
        PeerAddr::V4([127, 0, 0, 1], self.id as u16)
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
        Self::speaking(id, Protocol::Native)
    }

    fn speaking(id: u64, protocol: Protocol) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                id,
                protocol,
                member_id: Atomic::new(u32::MAX),
                got <- new_spinlock!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Takes what it was sent, as IRC bytes, and checks them against `want`.
    fn expect_irc(&self, want: &[u8]) -> Result {
        let got = core::mem::take(&mut *self.got.lock());
        let mut all = KVec::new();
        for f in got.iter() {
            all.extend_from_slice(f.as_bytes(), GFP_KERNEL)?;
        }
        assert_eq!(&all[..], want);
        Ok(())
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
        protocols: [true, false],
        zerocopy: true,
    };
    KBox::pin_init(Core::new(limits)?, GFP_KERNEL)
}

fn nick(name: &[u8]) -> Result<Label> {
    Label::nick(name).map_err(|_| EINVAL)
}

fn user() -> User {
    User::sanitized(b"native", b"x")
}

fn room(name: &[u8]) -> Result<RoomName> {
    RoomName::parse(name).ok_or(EINVAL)
}

/// `from` says `text`: its front end's frame, relayed through a batch.
fn say(core: &Core<Fake>, from: &Arc<Fake>, label: &str, text: &str) -> Result {
    let frame = Arc::new(Frame::text(fmt!("{label}: {text}"))?, GFP_KERNEL)?;
    let at = frame.len() - text.len();
    let mut batch = RelayBatch::new();
    batch.push(
        core,
        from,
        None,
        Message::new(frame, Protocol::Native, at, text.len(), false),
    )?;
    core.publish(&mut batch);
    Ok(())
}

/// Three members in `#lobby`: a, b, c, with what they were told on arrival taken.
fn three(core: &Core<Fake>) -> Result<[Arc<Fake>; 3]> {
    let m = [Fake::new(1)?, Fake::new(2)?, Fake::new(3)?];
    for (i, name) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
        core.add(&m[i], nick(name)?, user(), true)
            .map_err(|_| ENOMEM)?;
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
        core.join(&*b, &room(b"#Rust")?, 1).map_err(|_| EINVAL)?;
        a.expect(&[b"* b left"])?;
        c.expect(&[b"* b left"])?;
        b.expect(&[b"* now in #Rust (1): b"])?;
        // Case-insensitive, shown as first spelled.
        core.join(&*c, &room(b"#rust")?, 1).map_err(|_| EINVAL)?;
        a.expect(&[b"* c left"])?;
        b.expect(&[b"* c joined"])?;
        c.expect(&[b"* now in #Rust (2): b, c"])?;
        say(&core, &b, "b", "hi")?;
        c.expect(&[b"b: hi"])?;
        a.expect(&[])?;
        b.expect(&[])?;
        let again = core.join(&*c, &room(b"#RUST")?, 1);
        assert_eq!(again, Err(JoinError::Already(room(b"#Rust")?)));
        core.rooms(&*a)?;
        a.expect(&[b"* 2 rooms: #lobby (1), #Rust (2)"])?;
        // The room disappears with its last member.
        core.part_to_lobby(&*b).map_err(|_| EINVAL)?;
        core.part_to_lobby(&*c).map_err(|_| EINVAL)?;
        let rooms = core.stats.rooms_now.load(Relaxed);
        assert_eq!(rooms, 1);
        core.who(&*a)?;
        a.expect(&[
            b"* b joined",
            b"* c joined",
            b"* 3 online in #lobby: a, b, c",
        ])?;
        let lobby = core.part_to_lobby(&*a);
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
        core.add(&d, nick(b"d")?, user(), true)
            .map_err(|_| ENOMEM)?;
        d.expect(&[b"* last 2 messages of #lobby:", b"a: two", b"a: three"])?;
        say(&core, &a, "a", "four")?;
        d.expect(&[b"a: four"])?;
        // Moving to an empty room replays nothing; coming back replays the lobby's.
        core.join(&*d, &room(b"#x")?, 1).map_err(|_| EINVAL)?;
        d.expect(&[b"* now in #x (1): d"])?;
        core.part_to_lobby(&*d).map_err(|_| EINVAL)?;
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
        core.join(&*c, &room(b"#elsewhere")?, 1)
            .map_err(|_| EINVAL)?;
        a.expect(&[b"* c left"])?;
        b.expect(&[b"* c left"])?;
        c.expect(&[b"* now in #elsewhere (1): c"])?;
        core.private(&*a, b"C", b"psst", false)
            .map_err(|_| EINVAL)?;
        c.expect(&[b"a (private): psst"])?;
        b.expect(&[])?;
        let unknown = core.private(&*a, b"zed", b"hello", false);
        assert!(unknown.is_err());
        // Private messages are never history.
        let d = Fake::new(4)?;
        core.add(&d, nick(b"d")?, user(), true)
            .map_err(|_| ENOMEM)?;
        d.expect(&[])?;
        let taken = core.set_nick(&*b, nick(b"A")?, false);
        assert_eq!(taken, Err(NickError::Taken));
        core.set_nick(&*b, nick(b"bee")?, false)
            .map_err(|_| EINVAL)?;
        a.expect(&[b"* d joined", b"* b is now bee"])?;
        core.private(&*c, b"BEE", b"hi", false)
            .map_err(|_| EINVAL)?;
        b.expect(&[b"* d joined", b"c (private): hi"])?;
        // The old nick is free again.
        let freed = core.private(&*c, b"b", b"hi", false);
        assert!(freed.is_err());
        Ok(())
    }

    #[test]
    fn max_rooms_and_removal() -> Result {
        let core = chat(0, 2)?;
        let [a, b, c] = three(&core)?;
        core.join(&*a, &room(b"#one")?, 1).map_err(|_| EINVAL)?;
        let full = core.join(&*b, &room(b"#two")?, 1);
        assert_eq!(full, Err(JoinError::TooMany(2)));
        // Leaving the last member of #one frees it for another room.
        let label = core.remove(&*a, b"");
        assert_eq!(label, Some(nick(b"a")?));
        core.join(&*b, &room(b"#two")?, 1).map_err(|_| EINVAL)?;
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

    #[test]
    fn irc_members_share_rooms_and_operators() -> Result {
        let core = chat(0, 10)?;
        let x = Fake::speaking(1, Protocol::Irc)?;
        let y = Fake::speaking(2, Protocol::Irc)?;
        let n = Fake::new(3)?;
        for (m, name, lobby) in [(&x, &b"x"[..], false), (&y, b"y", false), (&n, b"n", true)] {
            core.add(m, nick(name)?, user(), lobby)
                .map_err(|_| ENOMEM)?;
        }
        core.join(&*x, &room(b"#a")?, 20).map_err(|_| EINVAL)?;
        x.expect_irc(
            b":x!native@127.0.0.1 JOIN #a\r\n:kchat 353 x = #a :@x\r\n\
              :kchat 366 x #a :End of /NAMES list.\r\n",
        )?;
        core.join(&*y, &room(b"#a")?, 20).map_err(|_| EINVAL)?;
        core.join(&*x, &room(b"#b")?, 20).map_err(|_| EINVAL)?;
        core.join(&*y, &room(b"#b")?, 20).map_err(|_| EINVAL)?;
        core.join(&*n, &room(b"#b")?, 1).map_err(|_| EINVAL)?;
        x.got.lock().clear();
        y.got.lock().clear();
        n.got.lock().clear();
        // A nick change reaches each neighbour once, however many rooms they share, and
        // the IRC member itself.
        core.set_nick(&*y, nick(b"z")?, true).map_err(|_| EINVAL)?;
        x.expect_irc(b":y!native@127.0.0.1 NICK :z\r\n")?;
        y.expect_irc(b":y!native@127.0.0.1 NICK :z\r\n")?;
        n.expect(&[b"* y is now z"])?;
        // Only operators kick; the kick reaches the room, both ends included.
        let refused = core.kick(&*y, b"#a", b"x", b"bye");
        assert_eq!(refused, Err(KickError::NotOp));
        core.kick(&*x, b"#B", b"Z", b"bye").map_err(|_| EINVAL)?;
        x.expect_irc(b":x!native@127.0.0.1 KICK #b z :bye\r\n")?;
        y.expect_irc(b":x!native@127.0.0.1 KICK #b z :bye\r\n")?;
        n.expect(&[b"* z was kicked from #b by x (bye)"])?;
        let out = core.part(&*y, b"#b", None);
        assert_eq!(out, Err(PartError::NotMember));
        // A message from the native member reaches IRC as PRIVMSG, rendered once.
        say(&core, &n, "n", "hello")?;
        x.expect_irc(b":n!native@127.0.0.1 PRIVMSG #b :hello\r\n")?;
        // A quit reaches the neighbours once.
        core.join(&*y, &room(b"#b")?, 20).map_err(|_| EINVAL)?;
        x.got.lock().clear();
        n.got.lock().clear();
        core.remove(&*x, b"Quit: bye");
        y.expect_irc(
            b":z!native@127.0.0.1 JOIN #b\r\n:kchat 353 z = #b :@x z n\r\n\
              :kchat 366 z #b :End of /NAMES list.\r\n:x!native@127.0.0.1 QUIT :Quit: bye\r\n",
        )?;
        n.expect(&[b"* x left"])?;
        let rooms = core.room_stats()?;
        assert_eq!(rooms.len(), 3);
        Ok(())
    }
}
