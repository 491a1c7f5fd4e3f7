//! The read half of an upgraded WebSocket connection: the socket's read half, a read buffer
//! sized to what arrives (none while idle) and the [`FrameParser`] that turns its bytes into
//! messages. Part of the transport layer's WebSocket module.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedReadHalf;

use super::frame::FrameParser;
use super::{WsConfig, WsError, WsMessage};

/// The smallest read: a read buffer starts (and starts again after being released) this
/// large, enough for a few small frames per syscall.
const READ_MIN: usize = 512;
/// How much a read buffer may grow by in one step before holding that much data itself.
const READ_GROW_MIN: usize = 16 * 1024;

/// Read half: the socket's read half, a read buffer and the frame parser.
///
/// The read buffer is taken (small) only once the socket is readable, grows with the frame
/// being received, at most doubling what it holds at each step (so a header announcing a
/// large frame commits memory only as the frame's bytes arrive), and is released whenever
/// it is empty before waiting again: an idle reader holds no buffer.
#[derive(Debug)]
pub(crate) struct WsReader {
    /// The socket.
    read: OwnedReadHalf,
    /// Received bytes not yet decoded; unallocated when empty while waiting.
    buf: BytesMut,
    /// Frame decoding and message reassembly.
    parser: FrameParser,
    /// A close frame was returned: nothing more is read.
    closed: bool,
}

impl WsReader {
    /// The reader of an upgraded connection; `already_read` is what the HTTP layer read past
    /// the upgrade request (the start of the first frames, if the client did not wait).
    pub(crate) fn new(read: OwnedReadHalf, already_read: Vec<u8>, cfg: &WsConfig) -> WsReader {
        let buf = if already_read.is_empty() {
            BytesMut::new()
        } else {
            // Takes over the vector's allocation, no copy.
            BytesMut::from(Bytes::from(already_read))
        };
        WsReader { read, buf, parser: FrameParser::new(cfg), closed: false }
    }

    /// The next complete message: fragmented messages reassembled, unmasked, inflated,
    /// UTF-8 checked (text), within `max_message_size`; control frames as they come, even
    /// between fragments. After a close frame (returned once) or end of stream:
    /// `Err(Closed)`.
    ///
    /// Cancel-safe: the only await is for the socket to become readable, and every byte
    /// read is kept in `self` (partial frames in the buffer, fragments in the parser), so a
    /// call dropped inside `select!` loses nothing and the next call goes on.
    #[cfg(test)]
    pub(crate) async fn read(&mut self) -> Result<WsMessage, WsError> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// [`WsReader::read`] as a poll. The waiting state lives in the socket's registration,
    /// not in a future: a session waiting for its client's next message costs nothing
    /// beyond the reader itself.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<WsMessage, WsError>> {
        use std::task::Poll;
        if self.closed {
            return Poll::Ready(Err(WsError::Closed));
        }
        loop {
            if let Some(message) = self.parser.decode(&mut self.buf)? {
                self.closed = matches!(message, WsMessage::Close(_));
                return Poll::Ready(Ok(message));
            }
            if self.buf.is_empty() {
                // Nothing half-received: release the buffer (messages already returned keep
                // the part they were split from) so waiting, however long, holds none.
                self.buf = BytesMut::new();
            }
            match self.read.as_ref().poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
            self.reserve();
            match self.read.try_read_buf(&mut self.buf) {
                Ok(0) => return Poll::Ready(Err(WsError::Closed)),
                Ok(_) => {}
                // Readiness was stale (now cleared): poll again, which registers the task.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(WsError::Io(e))),
            }
        }
    }

    /// Makes room for the next read: at least [`READ_MIN`] (a few small frames per
    /// syscall), at most what the frame in progress still lacks, and never more than the
    /// buffer already holds (or [`READ_GROW_MIN`]) at once.
    fn reserve(&mut self) {
        let len = self.buf.len();
        let missing = self.parser.needed().saturating_sub(len);
        let want = missing.min(len.max(READ_GROW_MIN)).max(READ_MIN);
        if self.buf.capacity() - len < want {
            self.buf.reserve(want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::tests::{cfg, client_frame, text};
    use super::super::writer::tests::socket_pair;
    use super::*;

    #[tokio::test]
    async fn idle_reader_holds_no_buffer() {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, server) = socket_pair().await;
        let (read, _write) = server.into_split();
        let first = client_frame(0x81, b"first");
        // The upgrade left part of the first frame read already.
        let mut reader = WsReader::new(read, first[..3].to_vec(), &cfg(false));
        client.write_all(&first[3..]).await.unwrap();
        assert_eq!(reader.read().await.unwrap(), text("first"));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read());
        assert!(waiting.await.is_err(), "nothing was sent");
        assert_eq!(reader.buf.capacity(), 0);
        // A large message grows the buffer; idle again, it is released.
        let big = client_frame(0x82, &vec![5u8; 300_000]);
        client.write_all(&big).await.unwrap();
        let got = reader.read().await.unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::from(vec![5u8; 300_000])));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read());
        assert!(waiting.await.is_err());
        assert_eq!(reader.buf.capacity(), 0);
        drop(client);
        assert!(matches!(reader.read().await, Err(WsError::Closed)));
    }
}
