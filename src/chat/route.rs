// SPDX-License-Identifier: GPL-2.0

//! Who receives what: the one place that decides it.
//!
//! Every frame the chat core queues (relayed messages, notices, private messages, replies)
//! goes to the members that [`audience`] names and [`Audience::admits`] lets through. Nothing
//! else in kchat filters recipients.
//!
//! Two kinds of recipients differ: a member whose protocol keeps its own copy of the chat's
//! state (IRC: a client tracks who is in each channel from `JOIN`, `PART`, `QUIT`) must see
//! every change, and sees its own; a member whose protocol does not (native) sees changes as
//! notices, which the `notices` parameter turns off, and never its own.

use kernel::prelude::*;

use super::{
    MemberId,
    RoomId,
    NO_SLOT, //
};

/// What is being sent, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// A chat message from `from`, to a room it may speak in.
    Say { room: RoomId },
    /// A change in `room` made by `from` (it joined, parted, set the topic or a mode, kicked
    /// someone); `echo`: `from` sees it too (if its protocol tracks state).
    Notice { room: RoomId, echo: bool },
    /// A change of `from` itself seen in every room it is in (it quit, changed its nick):
    /// each member sharing a room with it receives it once; `echo` as above.
    Change { echo: bool },
    /// A private message from `from` to `to`.
    Private { to: MemberId },
    /// An answer to `from` alone (replayed history, rosters, lists, errors).
    Reply,
}

/// Where an audience's candidates come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Nobody.
    Nobody,
    /// The members of a room.
    Room(RoomId),
    /// The members of every room a member is in, each once, and that member.
    Neighbours(MemberId),
    /// One member.
    One(MemberId),
}

/// The members that receive one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Audience {
    pub(crate) scope: Scope,
    /// The member the event is about: it receives the frame only if `echo` is set and its
    /// protocol tracks state.
    except: MemberId,
    echo: bool,
    /// Notices are off: only members whose protocol tracks state receive it.
    quiet: bool,
    /// A private message: the one thing a remote member receives.
    private: bool,
}

/// Who receives `what` from `from`; `notices` is the module parameter.
pub(crate) fn audience(what: What, from: MemberId, notices: bool) -> Audience {
    let (scope, except, echo, quiet) = match what {
        What::Say { room } => (Scope::Room(room), from, false, false),
        What::Notice { room, echo } => (Scope::Room(room), from, echo, !notices),
        What::Change { echo } => (Scope::Neighbours(from), from, echo, !notices),
        What::Private { to } => (Scope::One(to), NO_SLOT, false, false),
        What::Reply => (Scope::One(from), NO_SLOT, false, false),
    };
    Audience {
        scope,
        except,
        echo,
        quiet,
        private: matches!(what, What::Private { .. }),
    }
}

impl Audience {
    /// Whether the links (bridges to other nodes, docs/link.md) are told too: of everything
    /// said or done in rooms, and of quits and nick changes of a local member in a room
    /// (`seated`: a link knows members by their rooms), whatever `notices` says (a link keeps
    /// its node's state); never of a private message or a reply.
    ///
    /// What a remote member (one that came through a link, `remote_origin`) says or does is
    /// never told to a link: its own node's bridge has it already, and no other node may
    /// learn it from this one.
    pub(crate) fn reaches_links(&self, seated: bool, remote_origin: bool) -> bool {
        if remote_origin {
            return false;
        }
        match self.scope {
            Scope::Room(_) => true,
            Scope::Neighbours(_) => seated,
            Scope::One(_) | Scope::Nobody => false,
        }
    }

    /// The member the event is about (the sender, the one who joined, quit or was renamed);
    /// [`NO_SLOT`] for a private message or a reply.
    pub(crate) fn about(&self) -> MemberId {
        self.except
    }

    /// Whether `member`, a remote member (reached through its link, which has the room
    /// traffic once already), receives the frame: only what is addressed to it alone, a
    /// private message.
    pub(crate) fn admits_remote(&self, member: MemberId, closing: bool) -> bool {
        !closing && self.private && self.scope == Scope::One(member)
    }

    /// Whether `member`, one of the scope's candidates, receives the frame: `stateful` if its
    /// protocol tracks the chat's state; a member being disconnected receives nothing more.
    pub(crate) fn admits(&self, member: MemberId, closing: bool, stateful: bool) -> bool {
        if closing || self.scope == Scope::Nobody {
            return false;
        }
        if self.quiet && !stateful {
            return false;
        }
        if member == self.except {
            return self.echo && stateful;
        }
        match self.scope {
            Scope::One(m) => m == member,
            _ => true,
        }
    }
}

#[kunit_tests(kchat_route)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_to_the_others_in_the_room() -> Result {
        let a = audience(What::Say { room: 7 }, 1, false);
        assert_eq!(a.scope, Scope::Room(7));
        // (member, closing, stateful, admitted)
        let cases: [(MemberId, bool, bool, bool); 5] = [
            (2, false, false, true),
            (2, false, true, true),
            // The sender, whatever its protocol.
            (1, false, false, false),
            (1, false, true, false),
            // Being disconnected.
            (3, true, false, false),
        ];
        for (member, closing, stateful, want) in cases {
            let got = a.admits(member, closing, stateful);
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn notices_follow_the_parameter_but_state_always_goes() -> Result {
        let on = audience(
            What::Notice {
                room: 0,
                echo: true,
            },
            1,
            true,
        );
        assert_eq!(on.scope, Scope::Room(0));
        let native_sees = on.admits(2, false, false);
        assert!(native_sees);
        // The member that joined sees its own change only if it tracks state.
        let own_irc = on.admits(1, false, true);
        assert!(own_irc);
        let own_native = on.admits(1, false, false);
        assert!(!own_native);
        let off = audience(
            What::Notice {
                room: 0,
                echo: false,
            },
            1,
            false,
        );
        let native_quiet = off.admits(2, false, false);
        assert!(!native_quiet);
        let irc_told = off.admits(2, false, true);
        assert!(irc_told);
        let no_echo = off.admits(1, false, true);
        assert!(!no_echo);
        Ok(())
    }

    #[test]
    fn changes_reach_the_neighbours() -> Result {
        let a = audience(What::Change { echo: true }, 4, true);
        assert_eq!(a.scope, Scope::Neighbours(4));
        let other = a.admits(5, false, false);
        assert!(other);
        let own = a.admits(4, false, true);
        assert!(own);
        Ok(())
    }

    #[test]
    fn private_and_replies_reach_one_member() -> Result {
        let p = audience(What::Private { to: 5 }, 1, true);
        let cases: [(MemberId, bool, bool); 3] =
            [(5, false, true), (1, false, false), (5, true, false)];
        for (member, closing, want) in cases {
            let got = p.admits(member, closing, false);
            assert_eq!(got, want);
        }
        let r = audience(What::Reply, 4, false);
        assert_eq!(r.scope, Scope::One(4));
        // Even a private message to oneself reaches only oneself.
        let own = audience(What::Private { to: 4 }, 4, true).admits(4, false, false);
        assert!(own);
        Ok(())
    }

    #[test]
    fn links_hear_rooms_and_seated_changes_never_private() -> Result {
        let notices_off = false;
        let say = audience(What::Say { room: 3 }, 1, notices_off).reaches_links(true, false);
        assert!(say);
        let remote = audience(What::Say { room: 3 }, 1, notices_off).reaches_links(true, true);
        assert!(!remote);
        let notice = audience(
            What::Notice {
                room: 3,
                echo: false,
            },
            1,
            notices_off,
        )
        .reaches_links(true, false);
        assert!(notice);
        let change = audience(What::Change { echo: false }, 1, notices_off);
        let seated = change.reaches_links(true, false);
        assert!(seated);
        let roomless = change.reaches_links(false, false);
        assert!(!roomless);
        let private = audience(What::Private { to: 2 }, 1, true).reaches_links(true, false);
        assert!(!private);
        let reply = audience(What::Reply, 1, true).reaches_links(true, false);
        assert!(!reply);
        Ok(())
    }

    #[test]
    fn remote_members_get_only_private_messages() -> Result {
        let private = audience(What::Private { to: 5 }, 1, true);
        let to_it = private.admits_remote(5, false);
        assert!(to_it);
        let other = private.admits_remote(6, false);
        assert!(!other);
        let closing = private.admits_remote(5, true);
        assert!(!closing);
        let room = audience(What::Say { room: 0 }, 1, true).admits_remote(5, false);
        assert!(!room);
        // A reply goes to the asker alone, and a remote member asks nothing.
        let reply = audience(What::Reply, 5, true).admits_remote(5, false);
        assert!(!reply);
        Ok(())
    }
}
