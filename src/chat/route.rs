// SPDX-License-Identifier: GPL-2.0

//! Who receives what: the one place that decides it.
//!
//! Every frame the chat core queues (relayed messages, notices, private messages, replies)
//! goes to the members that [`audience`] names and [`Audience::admits`] lets through. Nothing
//! else in kchat filters recipients.

use kernel::prelude::*;

use super::{
    MemberId,
    RoomId, //
};

/// What is being sent, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// A chat message from `from`, to its room.
    Say,
    /// `from` entered, left or renamed itself: a notice to its room.
    Notice,
    /// A private message from `from` to `to`.
    Private { to: MemberId },
    /// An answer to `from` alone (replayed history, `/who`, `/rooms`, the roster of a room
    /// just entered).
    Reply,
}

/// The members that receive one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Nobody.
    Nobody,
    /// The members of `room`, but not `except`.
    Room { room: RoomId, except: MemberId },
    /// One member.
    One(MemberId),
}

/// Who receives `what` from `from`, a member of `room`; `notices` is the module parameter.
pub(crate) fn audience(what: What, from: MemberId, room: RoomId, notices: bool) -> Audience {
    match what {
        What::Say => Audience::Room { room, except: from },
        What::Notice if notices => Audience::Room { room, except: from },
        What::Notice => Audience::Nobody,
        What::Private { to } => Audience::One(to),
        What::Reply => Audience::One(from),
    }
}

impl Audience {
    /// Whether `member`, of `room`, receives the frame; a member being disconnected receives
    /// nothing more.
    pub(crate) fn admits(&self, member: MemberId, room: RoomId, closing: bool) -> bool {
        if closing {
            return false;
        }
        match *self {
            Self::Nobody => false,
            Self::Room { room: r, except } => r == room && member != except,
            Self::One(m) => m == member,
        }
    }
}

#[kunit_tests(kchat_route)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_to_the_others_in_the_room() -> Result {
        let a = audience(What::Say, 1, 7, false);
        assert_eq!(a, Audience::Room { room: 7, except: 1 });
        let cases: [(MemberId, RoomId, bool, bool); 5] = [
            (2, 7, false, true),
            // The sender.
            (1, 7, false, false),
            // Another room.
            (2, 8, false, false),
            // Being disconnected.
            (3, 7, true, false),
            (0, 7, false, true),
        ];
        for (member, room, closing, want) in cases {
            let got = a.admits(member, room, closing);
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn notices_follow_the_parameter() -> Result {
        let on = audience(What::Notice, 1, 0, true);
        assert_eq!(on, Audience::Room { room: 0, except: 1 });
        let off = audience(What::Notice, 1, 0, false);
        assert_eq!(off, Audience::Nobody);
        let admitted = off.admits(2, 0, false);
        assert!(!admitted);
        Ok(())
    }

    #[test]
    fn private_and_replies_reach_one_member_anywhere() -> Result {
        let p = audience(What::Private { to: 5 }, 1, 0, true);
        let cases: [(MemberId, RoomId, bool, bool); 4] = [
            (5, 3, false, true),
            (5, 0, false, true),
            (1, 0, false, false),
            (5, 3, true, false),
        ];
        for (member, room, closing, want) in cases {
            let got = p.admits(member, room, closing);
            assert_eq!(got, want);
        }
        let r = audience(What::Reply, 4, 2, false);
        assert_eq!(r, Audience::One(4));
        // Even a private message to oneself reaches only oneself.
        let own = audience(What::Private { to: 4 }, 4, 2, true).admits(4, 2, false);
        assert!(own);
        Ok(())
    }
}
