// SPDX-License-Identifier: GPL-2.0

//! The wire protocols kchat speaks, as the chat core sees them: a name for each, and how its
//! frames are rendered from the core's events and messages.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    chat::{
        Event,
        ModeChange,
        Origin,
        User, //
    },
    frame::Frame,
    irc,
    label::{
        Label,
        NodeName,
        RoomName, //
    },
    native, //
};

/// A wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Length-prefixed frames (DESIGN.md section 1).
    Native = 0,
    /// IRC lines (DESIGN.md section 1, "IRC"; docs/irc.md).
    Irc = 1,
}

impl Protocol {
    /// How many protocols there are: the chat core renders each event at most this often.
    pub(crate) const COUNT: usize = 2;

    /// Every protocol.
    pub(crate) const ALL: [Protocol; Self::COUNT] = [Self::Native, Self::Irc];

    /// Whether clients of this protocol keep their own copy of who is in each room, so must
    /// see every join, part, quit and nick change (their own included) whatever the
    /// `notices` parameter says.
    pub(crate) fn tracks_state(self) -> bool {
        matches!(self, Self::Irc)
    }

    /// The user name members of this protocol have until they give one.
    pub(crate) fn default_user(self) -> User {
        let name: &[u8] = match self {
            Self::Native => b"native",
            Self::Irc => b"user",
        };
        User::sanitized(name, b"user")
    }

    /// The frame that tells a client of this protocol about `event` (`None`: this protocol
    /// shows nothing for it); lists are cut to `max` bytes of text where the protocol cuts
    /// them.
    pub(crate) fn render(self, event: &Event<'_>, max: usize) -> Result<Option<Arc<Frame>>> {
        let frame = match self {
            Self::Native => native::render::event(event, max)?,
            Self::Irc => irc::render::event(event)?,
        };
        match frame {
            Some(f) => Ok(Some(Arc::new(f, GFP_KERNEL)?)),
            None => Ok(None),
        }
    }

    /// A chat message from `from` to `room` as this protocol shows it.
    pub(crate) fn render_message(
        self,
        from: &Origin<'_>,
        room: &RoomName,
        text: &[u8],
        notice: bool,
    ) -> Result<Frame> {
        match self {
            Self::Native => native::render::message(from, text),
            Self::Irc => irc::render::message(from, room.as_bytes(), text, notice),
        }
    }
}

/// The frame that tells a link (docs/link.md) of a local member's `event`, if links follow
/// that kind of event.
pub(crate) fn link_event(event: &Event<'_>) -> Result<Option<Arc<Frame>>> {
    match native::link::event(event)? {
        Some(f) => Ok(Some(Arc::new(f, GFP_KERNEL)?)),
        None => Ok(None),
    }
}

/// The frame a link gets for its remote member to which `event` is addressed: a private
/// message (`=priv`), nothing else.
pub(crate) fn link_private(event: &Event<'_>) -> Result<Option<Arc<Frame>>> {
    match native::link::private(event)? {
        Some(f) => Ok(Some(Arc::new(f, GFP_KERNEL)?)),
        None => Ok(None),
    }
}

/// The frame that tells a link that local member `from` said `text` in `room`.
pub(crate) fn link_message(room: &RoomName, from: &Label, text: &[u8]) -> Result<Arc<Frame>> {
    Ok(Arc::new(
        native::link::message(room, from, text)?,
        GFP_KERNEL,
    )?)
}

/// What a new link gets: `=link NODE`, then `=join #room NICK` for each local member of each
/// room (`rooms` yields each room's name and its members' labels), then `=synced`.
pub(crate) fn link_snapshot<'a>(
    node: &NodeName,
    rooms: impl Iterator<Item = (&'a RoomName, &'a Label)>,
) -> Result<KVec<Arc<Frame>>> {
    let mut frames = KVec::new();
    frames.push(Arc::new(native::link::up(node)?, GFP_KERNEL)?, GFP_KERNEL)?;
    for (room, who) in rooms {
        frames.push(
            Arc::new(native::link::joined(room, who)?, GFP_KERNEL)?,
            GFP_KERNEL,
        )?;
    }
    frames.push(Arc::new(native::link::synced()?, GFP_KERNEL)?, GFP_KERNEL)?;
    Ok(frames)
}

/// The sign and letter of a mode change, as both protocols write it (`+o`, `-t`, `+n`).
pub(crate) fn mode_letters(change: ModeChange) -> (char, char) {
    let (on, letter) = match change {
        ModeChange::Op(on) => (on, 'o'),
        ModeChange::TopicOps(on) => (on, 't'),
        ModeChange::NoExternal(on) => (on, 'n'),
    };
    (if on { '+' } else { '-' }, letter)
}
