//! The write half of an upgraded WebSocket connection: a queue of shared, pre-encoded frames
//! written with vectored sends, many frames per syscall, straight to the socket ([`send_now`])
//! and through tokio only to wait for writability. Part of the transport layer's WebSocket
//! module.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use bytes::{Buf, Bytes};
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::frame::encode_close_frame;
use super::WsError;

/// Up to this many frames, the I/O vectors of a write are built in a plain array.
const SMALL_IOV: usize = 8;
/// At most this many frames go to one vectored send.
const MAX_IOV: usize = 64;

/// Write half: a queue of shared frames written with vectored sends (`sendmsg`), many frames
/// per syscall.
#[derive(Debug)]
pub(crate) struct WsWriter {
    /// The socket.
    write: OwnedWriteHalf,
    /// Its descriptor, for the direct send path ([`send_now`]).
    fd: RawFd,
    /// Complete frames, the front one possibly partly written (advanced past what was).
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    pending: usize,
    /// A close frame was queued: nothing more may be sent (RFC 6455 §5.5.1).
    closing: bool,
}

impl WsWriter {
    /// The writer of an upgraded connection.
    pub(crate) fn new(write: OwnedWriteHalf) -> WsWriter {
        let fd = write.as_ref().as_raw_fd();
        WsWriter { write, fd, queue: VecDeque::new(), pending: 0, closing: false }
    }

    /// Queues a complete pre-encoded frame (no copy: the `Bytes` is kept). Ignored once a
    /// close frame was queued.
    pub(crate) fn queue(&mut self, frame: Bytes) {
        if self.closing || frame.is_empty() {
            return;
        }
        self.pending += frame.len();
        self.queue.push_back(frame);
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Frames queued (the front one possibly partly written).
    pub(crate) fn queued_frames(&self) -> usize {
        self.queue.len()
    }

    /// [`WsWriter::flush`] as a poll: writes what the socket takes and, when it takes no
    /// more, registers the task for writability.
    pub(crate) fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), WsError>> {
        use std::task::Poll;
        loop {
            match self.try_flush() {
                Ok(true) => return Poll::Ready(Ok(())),
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.write.as_ref().poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes everything queued, in as few syscalls as possible (up to [`MAX_IOV`] frames per
    /// vectored send, going on from where a partial write stopped).
    ///
    /// Cancel-safe: the only await is for the socket to become writable, and what each
    /// write took is removed from the queue before anything else, so a cancelled flush has
    /// written a prefix of the queue and the next one resumes after it, without loss or
    /// duplication.
    pub(crate) async fn flush(&mut self) -> Result<(), WsError> {
        while !self.try_flush()? {
            self.write.writable().await?;
        }
        Ok(())
    }

    /// Writes what it can of the queue now, without waiting: the common case of a socket
    /// with room in its send buffer costs one `send` or `sendmsg` and no extra wake-up. What
    /// the kernel does not take stays queued for [`WsWriter::flush`]. True once the queue is
    /// empty.
    pub(crate) fn try_flush(&mut self) -> Result<bool, WsError> {
        while !self.queue.is_empty() {
            // The I/O vectors are built in place, in an array just big enough for the common
            // case (a collected `SmallVec` of 64 would be copied around: a kilobyte per write).
            let result = if self.queue.len() <= SMALL_IOV {
                let mut iov = [IoSlice::new(&[]); SMALL_IOV];
                for (slot, frame) in iov.iter_mut().zip(self.queue.iter()) {
                    *slot = IoSlice::new(frame);
                }
                write_vectored(self.fd, &self.write, &iov[..self.queue.len()])
            } else {
                let mut iov: SmallVec<[IoSlice<'_>; MAX_IOV]> = SmallVec::new();
                iov.extend(self.queue.iter().take(MAX_IOV).map(|frame| IoSlice::new(frame)));
                write_vectored(self.fd, &self.write, &iov)
            };
            match result {
                Ok(0) => return Err(WsError::Io(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    crate::transport::counters::wrote(written);
                    self.consume(written)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(WsError::Io(e)),
            }
        }
        // The queue's allocation is kept for the next write (a busy connection would
        // otherwise allocate and free it per write); the shard's idle sweep releases it
        // ([`WsWriter::release_idle`]).
        Ok(true)
    }

    /// Releases the queue's memory if nothing is queued: an idle connection holds none.
    pub(crate) fn release_idle(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Whether the queue holds memory.
    pub(crate) fn holds_queue(&self) -> bool {
        self.queue.capacity() > 0
    }

    /// Drops every queued frame but the front one (which may be partly written already), so
    /// a close frame queued next still follows whole frames.
    pub(crate) fn truncate_unsent(&mut self) {
        self.queue.truncate(1);
        self.pending = self.queue.front().map_or(0, Bytes::len);
    }

    /// Drops `written` bytes off the front of the queue.
    fn consume(&mut self, mut written: usize) {
        self.pending = self.pending.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if front.len() > written {
                // Only this connection's view of the shared frame moves.
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }

    /// Queues a close frame with `code` (once, however often this is called) and flushes,
    /// then shuts down the write side. Bound it with a timeout: a client that does not read
    /// would keep it waiting. Cancel-safe like [`WsWriter::flush`].
    pub(crate) async fn close(&mut self, code: u16) -> Result<(), WsError> {
        if !self.closing {
            self.queue(encode_close_frame(code));
            self.closing = true;
        }
        self.flush().await?;
        self.write.shutdown().await?;
        Ok(())
    }
}

/// Writes `iov` to the socket: straight through [`send_now`], and through tokio only when
/// the kernel refuses (so tokio's readiness, which the writer waits on, learns the socket is
/// full).
fn write_vectored(fd: RawFd, write: &OwnedWriteHalf, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    match send_now(fd, iov) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => write.try_write_vectored(iov),
        r => r,
    }
}

/// One non-blocking `send` (one frame) or `sendmsg` (several) on a connected socket.
///
/// Hand-written on purpose: this is the one system call per delivery at low rates (every
/// frame of a 1,000-member broadcast is a write to a different socket), and tokio's path to
/// it (`try_write_vectored`: its readiness check and bookkeeping, then `writev` through the
/// VFS layer) cost about a tenth of the shard's time in a profile of that load. The socket
/// stays registered with tokio; a refused write goes through tokio again
/// ([`write_vectored`]), so waiting for writability works as before.
fn send_now(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    loop {
        let n = match iov {
            // SAFETY: the pointer and length describe a slice borrowed for the whole call.
            [one] => unsafe { libc::send(fd, one.as_ptr().cast(), one.len(), flags) },
            _ => {
                // SAFETY: an all-zero msghdr is valid (no address, no control data); IoSlice
                // is ABI-compatible with iovec on Unix (std's guarantee), and the slices are
                // borrowed for the whole call; the kernel only reads them.
                unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                    msg.msg_iovlen = iov.len() as _;
                    libc::sendmsg(fd, &msg, flags)
                }
            }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A connected pair: our reader on one end, the raw client socket on the other.
    pub(in crate::transport::ws) async fn socket_pair(
    ) -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    /// Frames `0..n`, each 1 KiB of its own index byte.
    fn frames(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i as u8; 1024])).collect()
    }

    /// A peer that stops reading fills the socket: the direct send path reports a refused
    /// write (`try_flush` false), the writer then waits on tokio's readiness, and once the
    /// peer drains, everything arrives whole and in order (nothing lost, sent twice or
    /// stuck waiting for a readiness event tokio never saw).
    #[tokio::test]
    async fn refused_write_waits_for_the_peer_and_resumes_in_order() {
        use tokio::io::AsyncReadExt as _;
        let (mut client, server) = socket_pair().await;
        let (_read, write) = server.into_split();
        let mut w = WsWriter::new(write);
        // Far more than loopback socket buffers hold (a few MiB at most).
        let sent = frames(16 * 1024);
        for f in &sent {
            w.queue(f.clone());
        }
        assert!(!w.try_flush().unwrap(), "16 MiB cannot fit in the socket buffers");
        assert!(w.pending_bytes() > 0);
        let expected: Vec<u8> = sent.iter().flat_map(|f| f.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            got == expected
        });
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(20), w.flush());
        flushed.await.expect("flush finished once the peer read").unwrap();
        assert_eq!(w.pending_bytes(), 0);
        assert_eq!(w.queued_frames(), 0);
        assert!(reader.await.unwrap(), "the peer got every byte, in order");
    }

    /// Several frames go out in one vectored send; one frame in a plain send.
    #[test]
    fn send_now_writes_one_or_several_slices() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        assert_eq!(send_now(fd, &[IoSlice::new(b"one")]).unwrap(), 3);
        let n = send_now(fd, &[IoSlice::new(b"tw"), IoSlice::new(b"o"), IoSlice::new(b"3")]);
        assert_eq!(n.unwrap(), 4);
        let mut got = [0u8; 7];
        std::io::Read::read_exact(&mut b, &mut got).unwrap();
        assert_eq!(&got, b"onetwo3");
        drop(b);
        let e = send_now(fd, &[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "no SIGPIPE, an error");
    }
}
