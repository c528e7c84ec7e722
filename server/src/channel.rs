//! One channel abstraction: what every linked channel (main, display, cursor, inputs, and the
//! playback, record and browser channels to come) does the same way.
//!
//! A channel owns its connection: a bounded send queue drained by its writer thread, optional
//! ACK flow control, the helper threads that feed the queue (pinger, encoder, cursor updates),
//! and the read loop, which answers the common messages (ACK_SYNC, ACK, DISCONNECTING,
//! migration) itself and hands the rest to the channel's own handler. Closing it closes the
//! queue and joins every thread it started.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::conn::{
    Common, ConnError, SendQueue, Traffic, handle_common, read_counted, spawn_writer,
};
use crate::session::Session;
use crate::tls::Stream;

/// What the read loop hands a channel.
pub(crate) enum Event<'a> {
    /// A channel-specific message.
    Message(u16, &'a [u8]),
    /// A PONG to the channel's PING `id`.
    Pong(u32),
}

/// A linked channel's connection.
pub(crate) struct Channel {
    stream: Stream,
    queue: Arc<SendQueue>,
    mini: bool,
    traffic: Arc<Traffic>,
    max_message: u32,
    threads: Vec<JoinHandle<()>>,
}

impl Channel {
    /// Starts the writer for `stream` with a queue bounded at `queue_limit` bytes, reads
    /// messages of at most `max_message` bytes, and turns ACK flow control on when `ack_window`
    /// is given (SET_ACK is the first message then).
    pub(crate) fn open(
        stream: Stream,
        mini: bool,
        traffic: Arc<Traffic>,
        queue_limit: usize,
        max_message: u32,
        ack_window: Option<u32>,
    ) -> Result<Channel, ConnError> {
        let queue = SendQueue::new(queue_limit);
        let writer = spawn_writer(
            stream.try_clone()?,
            queue.clone(),
            mini,
            tracing::Span::current(),
            traffic.clone(),
        )?;
        if let Some(window) = ack_window {
            queue.set_ack(window);
        }
        Ok(Channel {
            stream,
            queue,
            mini,
            traffic,
            max_message,
            threads: vec![writer],
        })
    }

    /// The send queue.
    pub(crate) fn queue(&self) -> &Arc<SendQueue> {
        &self.queue
    }

    /// Runs `work` on a thread named `name`, in the channel's tracing span, for the life of
    /// the connection: it must return once the queue is closed. Joined by [`Channel::close`].
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> Result<(), ConnError> {
        let span = tracing::Span::current();
        let t = thread::Builder::new().name(name.into()).spawn(move || {
            let _e = span.enter();
            work()
        })?;
        self.threads.push(t);
        Ok(())
    }

    /// Reads the client's messages until it leaves (or the session closes), answering the
    /// common ones and handing PONGs and the channel's own messages to `on`. An error from
    /// `on` ends the channel with that error.
    pub(crate) fn serve(
        &mut self,
        session: &Session,
        mut on: impl FnMut(&SendQueue, Event<'_>) -> Result<(), ConnError>,
    ) -> Result<(), ConnError> {
        loop {
            if session.is_closed() {
                return Ok(());
            }
            let (ty, body) =
                match read_counted(&mut self.stream, self.mini, self.max_message, &self.traffic) {
                    Ok(m) => m,
                    Err(ConnError::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                };
            match handle_common(&self.queue, ty, &body)? {
                Common::Handled => {}
                Common::Disconnecting => return Ok(()),
                Common::Pong { id, .. } => on(&self.queue, Event::Pong(id))?,
                Common::NotCommon => on(&self.queue, Event::Message(ty, &body))?,
            }
        }
    }

    /// Ends the connection: the queue closes (the writer and helpers return) and every thread
    /// is joined.
    pub(crate) fn close(self) {
        self.queue.close();
        for t in self.threads {
            let _ = t.join();
        }
    }
}
