// SPDX-License-Identifier: GPL-2.0

//! The wire protocols kchat speaks, as the chat core sees them: a name for each, and how its
//! frames are rendered from the core's events.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    chat::Event,
    frame::Frame,
    native, //
};

/// A wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Length-prefixed frames (DESIGN.md section 1).
    Native = 0,
}

impl Protocol {
    /// How many protocols there are: the chat core renders each event at most this often.
    pub(crate) const COUNT: usize = 1;

    /// The frame that tells a client of this protocol about `event`; lists are cut to `max`
    /// bytes of text.
    pub(crate) fn render(self, event: &Event<'_>, max: usize) -> Result<Arc<Frame>> {
        let frame = match self {
            Self::Native => native::render::event(event, max)?,
        };
        Ok(Arc::new(frame, GFP_KERNEL)?)
    }
}
