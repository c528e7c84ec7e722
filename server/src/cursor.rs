//! The cursor channel: v1 announces "no cursor" and then only keeps the connection alive, so
//! interactive clients connect cleanly (the guest cursor is not forwarded yet).

use std::sync::Arc;

use crate::conn::{Common, ConnError, SendQueue, handle_common, read_message, spawn_writer};
use crate::session::Session;
use crate::tls::Stream;
use crate::wire::{Writer, msg};

/// Cursor flag NONE: no shape follows.
const CURSOR_FLAGS_NONE: u16 = 1;
pub(crate) const MAX_CURSOR_MESSAGE: u32 = 1024;

pub(crate) fn run(mut stream: Stream, session: &Arc<Session>, mini: bool) -> Result<(), ConnError> {
    let queue = SendQueue::new(1 << 20);
    let writer = spawn_writer(
        stream.try_clone()?,
        queue.clone(),
        mini,
        tracing::Span::current(),
    )?;
    let mut w = Writer::default();
    // position (0,0), trail length 0, frequency 0, visible 0, cursor flags NONE.
    w.u16(0).u16(0).u16(0).u16(0).u8(0).u16(CURSOR_FLAGS_NONE);
    let _ = queue.push(msg::CURSOR_INIT, w.buf, false);
    let result = loop {
        if session.is_closed() {
            break Ok(());
        }
        match read_message(&mut stream, mini, MAX_CURSOR_MESSAGE) {
            Ok((ty, body)) => match handle_common(&queue, ty, &body) {
                Ok(Common::Disconnecting) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            },
            Err(ConnError::Closed) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    queue.close();
    let _ = writer.join();
    result
}
