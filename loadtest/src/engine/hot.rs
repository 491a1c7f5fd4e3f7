//! One event loop per client thread over all its receive-only WebSocket connections: no task
//! per connection once it is set up.
//!
//! A connection is connected and joined by its task (`client`), which then hands the socket
//! over here ([`Hot::adopt`]) and ends. From then on the thread's one loop task
//! ([`hot_loop`]) serves it: the sockets sit in a edge-triggered epoll set of their own,
//! whose descriptor is itself registered with tokio's reactor (`AsyncFd`), so one wake of
//! the loop task serves every socket that became readable. Per ready socket: one `read` into
//! the thread's shared buffer (edge-triggered: a short read means it is drained, and data
//! that comes later raises a new event; a read that fills the buffer is followed by another),
//! every complete frame parsed in place there, the rest (a frame cut by the read) kept for
//! the next read, pings answered at once.
//!
//! Why hand-written rather than a task per connection or a crate: with a tokio task per
//! socket, each delivery batch costs a task wake, a `select!` over the phase control and
//! the socket, and a second read that returns `EAGAIN` to clear tokio's readiness. At
//! 1,000 × 1,000/s that made the harness cost 0.89 µs per delivery, more than the server it
//! measures (issue 12). Connections that send (publishers, echo clients) and the special
//! modes (long-polling, `--reconnect`, `recover` cuts) keep their task: they are few, or
//! they need what the task does (the pacer, reconnects, a transport of several sockets).

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;

use super::control::Control;
use super::receiver::Receiver;
use super::thread::Local;
use crate::conn::{io_kind, ConnError};
use crate::proto;
use crate::sys::mono_ns;
use crate::wsclient::{encode_masked, parse_header, Reassembly, Step};

/// The shared read buffer. A frame longer than this is collected in its connection's own
/// buffer instead.
const READ_BUF: usize = 256 * 1024;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 512;
/// Rounds of `epoll_wait` per wake before the loop lets the thread's other tasks run.
const ROUNDS: usize = 8;
/// Unwritten answers (pongs) a connection may hold before it is given up.
const MAX_OUT: usize = 1024 * 1024;

/// One adopted connection.
struct HotConn {
    sock: std::net::TcpStream,
    /// Bytes of a frame cut by the last read (or a whole frame longer than the shared buffer
    /// being collected).
    rest: Vec<u8>,
    /// Answers not written yet (the socket's send buffer was full).
    out: Vec<u8>,
    /// Fragments being put together.
    reassembly: Reassembly,
    rx: Receiver,
    rng: u64,
}

/// The event loop's state: the epoll set and the adopted connections by token.
pub(super) struct Hot {
    epoll: AsyncFd<OwnedFd>,
    conns: RefCell<Vec<Option<HotConn>>>,
    free: RefCell<Vec<usize>>,
    buf: RefCell<Vec<u8>>,
}

impl Hot {
    pub(super) fn new() -> std::io::Result<Hot> {
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just created and owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd stays open, the same descriptor, for the AsyncFd's lifetime (it
        // owns it and never gives it out).
        let epoll =
            unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Hot {
            epoll,
            conns: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            buf: RefCell::new(vec![0; READ_BUF]),
        })
    }

    /// Takes over a connected, joined WebSocket: `rest` holds bytes already received and not
    /// parsed. Counted as live and connected until it ends here.
    pub(super) fn adopt(
        &self,
        l: &Local,
        sock: std::net::TcpStream,
        rest: BytesMut,
        rng: u64,
        rx: Receiver,
    ) {
        let c = HotConn {
            sock,
            rest: Vec::new(),
            out: Vec::new(),
            reassembly: Reassembly::default(),
            rx,
            rng,
        };
        let token = match self.free.borrow_mut().pop() {
            Some(t) => t,
            None => {
                let mut conns = self.conns.borrow_mut();
                conns.push(None);
                conns.len() - 1
            }
        };
        let fd = c.sock.as_raw_fd();
        self.conns.borrow_mut()[token] = Some(c);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: both descriptors are open; `ev` lives across the call.
        let r = unsafe {
            libc::epoll_ctl(self.epoll.get_ref().as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev)
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            self.end(l, token, Some(ConnError(format!("epoll: {}", io_kind(&e)))));
            return;
        }
        // What came with the last read of the join is handled now.
        if !rest.is_empty() {
            let r = {
                let mut conns = self.conns.borrow_mut();
                let Some(c) = conns[token].as_mut() else { return };
                let now = mono_ns();
                let data = rest.to_vec();
                let r = c.frames(l, &data, now);
                r.and_then(|used| {
                    c.rest.extend_from_slice(&data[used..]);
                    c.write_out()
                })
            };
            if let Err(e) = r {
                self.end(l, token, Some(e));
            }
        }
    }

    /// Reads socket `token` once and handles what came; true when the read filled the space
    /// it was offered (more may be waiting: edge-triggered epoll will not say so again).
    fn service(&self, l: &Local, token: usize) -> bool {
        let r = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(token).and_then(Option::as_mut) else { return false };
            let mut buf = self.buf.borrow_mut();
            c.read_and_handle(l, &mut buf)
        };
        match r {
            Ok(more) => more,
            Err(e) => {
                self.end(l, token, Some(e));
                false
            }
        }
    }

    /// Ends connection `token`: lost with `why`, or closed by the harness (`None`).
    fn end(&self, l: &Local, token: usize, why: Option<ConnError>) {
        let Some(mut c) = self.conns.borrow_mut().get_mut(token).and_then(Option::take) else {
            return;
        };
        self.free.borrow_mut().push(token);
        // Closing the descriptor removes it from the epoll set.
        match why {
            Some(e) => {
                l.st.borrow_mut().c.disconnects += 1;
                l.error(&format!("lost: {}", e.0));
            }
            None => {
                // Leave the namespace and close, politely and without waiting (the send
                // buffer takes these few bytes).
                let mut b = BytesMut::new();
                proto::write_header(&mut b, b'1', &l.plan.namespace, None);
                let mut frame = std::mem::take(&mut c.out);
                encode_masked(&mut frame, 0x1, &b, &mut c.rng);
                encode_masked(&mut frame, 0x8, &1000u16.to_be_bytes(), &mut c.rng);
                let _ = c.sock.write(&frame);
                let _ = c.sock.shutdown(std::net::Shutdown::Write);
                l.st.borrow_mut().c.closed_by_harness += 1;
            }
        }
        l.gauge.connected.store(l.gauge.connected.load(Relaxed) - 1, Relaxed);
        l.task_done();
    }

    /// Closes every connection (the run is over).
    fn close_all(&self, l: &Local) {
        let n = self.conns.borrow().len();
        for token in 0..n {
            self.end(l, token, None);
        }
    }
}

impl HotConn {
    /// One read, then every complete frame of it; true when the read filled the space it was
    /// offered.
    fn read_and_handle(&mut self, l: &Local, buf: &mut [u8]) -> Result<bool, ConnError> {
        // A frame longer than the shared buffer is collected in `rest` itself.
        if let Some(need) = self.pending_len()? {
            if need > buf.len() {
                let have = self.rest.len();
                self.rest.resize(need, 0);
                let n = match self.sock.read(&mut self.rest[have..]) {
                    Ok(0) => return Err(ConnError("closed by server".into())),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(ConnError(format!("websocket: {}", io_kind(&e)))),
                };
                self.rest.truncate(have + n);
                let more = n > 0 && have + n == need;
                if self.rest.len() < need {
                    return Ok(more);
                }
                let now = mono_ns();
                let data = std::mem::take(&mut self.rest);
                let used = self.frames(l, &data, now)?;
                self.rest.extend_from_slice(&data[used..]);
                return self.write_out().map(|()| more);
            }
        }
        let pre = self.rest.len();
        buf[..pre].copy_from_slice(&self.rest);
        self.rest.clear();
        let n = match self.sock.read(&mut buf[pre..]) {
            Ok(0) => return Err(ConnError("closed by server".into())),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.rest.extend_from_slice(&buf[..pre]);
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                self.rest.extend_from_slice(&buf[..pre]);
                return Ok(true);
            }
            Err(e) => return Err(ConnError(format!("websocket: {}", io_kind(&e)))),
        };
        let more = pre + n == buf.len();
        let now = mono_ns();
        let data = &buf[..pre + n];
        let used = self.frames(l, data, now)?;
        self.rest.extend_from_slice(&data[used..]);
        self.write_out().map(|()| more)
    }

    /// The whole length of the frame `rest` begins, once its header is there.
    fn pending_len(&self) -> Result<Option<usize>, ConnError> {
        Ok(parse_header(&self.rest)?.map(|(_, _, h, len)| h + len))
    }

    /// Handles every complete frame at the front of `data`; returns the bytes used.
    fn frames(&mut self, l: &Local, data: &[u8], now: u64) -> Result<usize, ConnError> {
        let mut at = 0;
        while let Some((fin, opcode, hlen, len)) = parse_header(&data[at..])? {
            let end = at + hlen + len;
            if end > data.len() {
                break;
            }
            let payload = &data[at + hlen..end];
            at = end;
            match self.reassembly.frame(fin, opcode, payload)? {
                Step::Whole(text) => self.message(l, text, payload, now)?,
                Step::Joined(text, m) => self.message(l, text, &m, now)?,
                Step::Ping => encode_masked(&mut self.out, 0xA, payload, &mut self.rng),
                Step::Nothing => {}
            }
        }
        Ok(at)
    }

    /// One whole message: a text message is one Engine.IO packet.
    fn message(&mut self, l: &Local, text: bool, m: &[u8], now: u64) -> Result<(), ConnError> {
        if !text {
            l.st.borrow_mut().c.binary_frames += 1;
            return Ok(());
        }
        let (out, rng) = (&mut self.out, &mut self.rng);
        self.rx.packet(l, m, now, &mut |d| encode_masked(out, 0x1, &proto::pong(d), rng))
    }

    /// Writes what answers are waiting, as far as the socket takes them now.
    fn write_out(&mut self) -> Result<(), ConnError> {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError(format!("websocket write: {}", io_kind(&e)))),
            }
        }
        if self.out.len() > MAX_OUT {
            return Err(ConnError("websocket write: the server does not read".into()));
        }
        Ok(())
    }
}

/// The thread's event loop over its adopted connections, until the run stops.
pub(super) async fn hot_loop(l: Rc<Local>) {
    let slot = l.ctl.slot();
    let mut seen = l.ctl.gen.get();
    let mut again = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let epfd = l.hot.epoll.get_ref().as_raw_fd();
    loop {
        if l.stopping() {
            break;
        }
        let mut guard = tokio::select! {
            biased;
            g = l.ctl.changed(slot, seen) => {
                seen = g;
                if matches!(l.ctl.get(), Control::Stop) {
                    break;
                }
                continue;
            }
            r = l.hot.epoll.readable() => match r {
                Ok(g) => g,
                Err(e) => {
                    l.error(&format!("epoll: {}", io_kind(&e)));
                    break;
                }
            },
        };
        let mut drained = false;
        for _ in 0..ROUNDS {
            // SAFETY: `events` holds EVENTS initialised entries and outlives the call.
            let n =
                unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as libc::c_int, 0) };
            if n <= 0 {
                drained =
                    n == 0 || std::io::Error::last_os_error().kind() != ErrorKind::Interrupted;
                break;
            }
            for ev in &events[..n as usize] {
                if l.hot.service(&l, ev.u64 as usize) {
                    again.push(ev.u64 as usize);
                }
            }
            // Edge-triggered: a socket whose read filled the buffer is read again until a
            // short read says it is drained.
            while let Some(t) = again.pop() {
                if l.hot.service(&l, t) {
                    again.push(t);
                }
            }
        }
        if drained {
            guard.clear_ready();
        } else {
            // Still busy: let the thread's other tasks (publishers, ticks) run, then go on.
            drop(guard);
            tokio::task::yield_now().await;
        }
    }
    l.hot.close_all(&l);
    l.ctl.release(slot);
}
