//! One connection of fanout, lobby, echo or idle: connect (and reconnect when told), join its
//! room with an ack, then either hand the socket to the thread's event loop (a connection
//! that only receives, see `hot`) or run the loop that receives and sends until the end.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;

use super::control::Control;
use super::publisher::Publisher;
use super::receiver::Receiver;
use super::thread::Local;
use crate::conn::{Conn, ConnError, Incoming, Resume};
use crate::proto::{self, Eio, Kind};
use crate::stats::record_ns;
use crate::sys::mono_ns;

enum End {
    Stop,
    Lost(ConnError),
    /// `recover`: cut on purpose, to come back with its session.
    Cut,
}

/// One connection of fanout, lobby, echo or idle, for the whole run.
pub(super) async fn client(l: Rc<Local>, g: u32) {
    let plan = l.plan.clone();
    let role = plan.role(g);
    let polling = plan.is_polling(g);
    let bind = plan.source_ip(g);
    let mut setup_done = false;
    // In a cluster its deliveries are counted under the server it started on.
    let server = plan.is_cluster().then(|| plan.server_of(g));
    // The server it connects to: its own, and after a `recover` cut in a cluster the next.
    let mut on = plan.server_of(g);
    let mut rx = Receiver {
        trackers: Vec::new(),
        room: role.join,
        own: role.publish.map(|p| p.id),
        server,
        offset: None,
    };
    // `recover`: the subscribers' connections are cut once, in the first measured phase.
    let cuts = plan.recover.filter(|_| role.join.is_some() && role.publish.is_none());
    let mut cut_done = false;
    // The session of the connection (socket id, private id) and, after a cut, what to
    // send back and the server it was cut from.
    let mut session: Option<(Option<String>, String)> = None;
    let mut resume: Option<Resume> = None;
    let mut comeback: Option<usize> = None;
    let mut publ = role.publish.map(|p| Publisher::new(&l, p));
    // A connection that only receives is served by the thread's event loop once set up
    // (`hot`); the others need this task for the whole run.
    let hand_over = publ.is_none() && cuts.is_none() && !plan.reconnect && !polling;
    let slot = l.ctl.slot();
    let mut backoff = Duration::from_millis(100);
    loop {
        if l.stopping() {
            break;
        }
        let opened = {
            let _permit = l.sem.acquire().await;
            let open = Conn::open_resuming(l.server_endpoint(on), polling, bind, resume.as_ref());
            tokio::time::timeout(l.connect_timeout(), open).await
        };
        let mut recovered = false;
        let mut conn = match opened {
            Ok(Ok((conn, hs))) => {
                let mut st = l.st.borrow_mut();
                st.c.connects_ok += 1;
                record_ns(&mut st.connect, hs.ns_connect_ns);
                record_ns(&mut st.eio_open, hs.eio_open_ns);
                record_ns(&mut st.ns_connect, hs.ns_connect_ns - hs.eio_open_ns);
                let resumed = resume.take().is_some();
                if let Some(from) = comeback.take() {
                    st.c.recover_attempts += 1;
                    recovered = resumed
                        && hs.sid.is_some()
                        && session.as_ref().map(|s| &s.0) == Some(&hs.sid);
                    if recovered {
                        st.c.recovered += 1;
                        record_ns(&mut st.recover, hs.ns_connect_ns);
                    } else {
                        st.c.recover_refused += 1;
                    }
                    if on != from {
                        st.c.recover_other_server += 1;
                        st.c.recovered_other_server += u64::from(recovered);
                    }
                    // In a cluster, counted under the server it came back on too.
                    if let Some(s) = st.servers.get_mut(on) {
                        s.comebacks += 1;
                        if recovered {
                            s.recovered += 1;
                            record_ns(&mut s.recover, hs.ns_connect_ns);
                        }
                    }
                }
                drop(st);
                // What the socket missed came before the CONNECT reply.
                let now = mono_ns();
                for m in &hs.early {
                    if let Err(e) = rx.early(&l, m, now) {
                        l.error(&e.0);
                    }
                }
                session = hs.pid.map(|pid| (hs.sid, pid));
                conn
            }
            failed => {
                l.st.borrow_mut().c.connect_failures += 1;
                match failed {
                    Ok(Err(e)) => l.error(&e.0),
                    _ => l.error("connect: timed out"),
                }
                if !setup_done {
                    setup_done = true;
                    l.setup_finished();
                }
                // A comeback after a cut keeps trying, as socket.io-client does.
                if (plan.reconnect || comeback.is_some()) && !l.stopping() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    l.st.borrow_mut().c.reconnects += 1;
                    continue;
                }
                break;
            }
        };
        backoff = Duration::from_millis(100);
        l.gauge.connected.store(l.gauge.connected.load(Relaxed) + 1, Relaxed);
        let mut end = None;
        // A recovered socket is in its rooms again: no join.
        if let (Some(room), false) = (role.join, recovered) {
            match tokio::time::timeout(l.connect_timeout(), join(&l, &mut conn, room)).await {
                Ok(Ok(())) => {
                    let mut st = l.st.borrow_mut();
                    st.c.joins_ok += 1;
                    if !setup_done && !cut_done {
                        st.joined[room as usize] += 1;
                        if let Some(s) = server {
                            st.servers[s].joined[room as usize] += 1;
                        }
                    }
                }
                r => {
                    l.st.borrow_mut().c.join_failures += 1;
                    let e = match r {
                        Ok(Err(e)) => e,
                        _ => ConnError("join: no ack".into()),
                    };
                    l.error(&e.0);
                    if !matches!(e.0.as_str(), s if s.starts_with("join")) {
                        end = Some(End::Lost(e));
                    }
                }
            }
        }
        if !setup_done {
            setup_done = true;
            l.setup_finished();
        }
        if end.is_none() && hand_over && !l.stopping() && conn.can_hand_over() {
            match conn.into_parts() {
                Some((sock, rest, rng)) => {
                    // From here the event loop counts it live and connected until it ends.
                    l.hot.adopt(&l, sock, rest, rng, rx);
                    l.ctl.release(slot);
                    return;
                }
                None => {
                    l.gauge.connected.store(l.gauge.connected.load(Relaxed) - 1, Relaxed);
                    l.st.borrow_mut().c.disconnects += 1;
                    l.error("lost: hand-over to the event loop failed");
                    break;
                }
            }
        }
        let end = match end {
            Some(e) => e,
            None => {
                let cut_at = if cut_done { None } else { cuts };
                run_conn(&l, &mut conn, slot, &mut rx, &mut publ, cut_at).await
            }
        };
        l.gauge.connected.store(l.gauge.connected.load(Relaxed) - 1, Relaxed);
        match end {
            End::Stop => {
                conn.close(&plan.namespace).await;
                l.st.borrow_mut().c.closed_by_harness += 1;
                break;
            }
            End::Cut => {
                cut_done = true;
                l.st.borrow_mut().c.cuts += 1;
                // Dropped as a network would drop it: no close, no namespace disconnect.
                drop(conn);
                if let Some(r) = cuts {
                    tokio::time::sleep(Duration::from_secs_f64(r.down_s)).await;
                }
                // Without a pid (the server has recovery off) it comes back as a new client.
                resume = session
                    .as_ref()
                    .map(|(_, pid)| Resume { pid: pid.clone(), offset: rx.offset.clone() });
                // In a cluster, on the next server: the session crosses servers.
                comeback = Some(on);
                on = plan.comeback_server(on);
                continue;
            }
            End::Lost(e) => {
                l.st.borrow_mut().c.disconnects += 1;
                l.error(&format!("lost: {}", e.0));
                if plan.reconnect && !l.stopping() {
                    l.st.borrow_mut().c.reconnects += 1;
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                break;
            }
        }
    }
    if !setup_done {
        l.setup_finished();
    }
    l.ctl.release(slot);
    l.task_done();
}

/// Emits the join event with an ack and waits for `true`.
async fn join(l: &Local, conn: &mut Conn, room: u32) -> Result<(), ConnError> {
    let mut args = BytesMut::new();
    proto::write_json_str(&mut args, &l.plan.room_name(room));
    conn.queue(proto::event_packet(&l.plan.namespace, Some(0), &l.plan.join_event, &args).freeze());
    conn.flush().await?;
    loop {
        let Incoming::Text(payload) = conn.recv().await? else { continue };
        let mut result = None;
        for p in payload.packets() {
            match proto::eio(p) {
                Ok(Eio::Ping(d)) => {
                    conn.queue_pong(d);
                    l.st.borrow_mut().c.pings += 1;
                }
                Ok(Eio::Close) => {
                    return Err(ConnError("closed by server (engine.io close)".into()))
                }
                Ok(Eio::Message(m)) => match proto::sio(m, &l.plan.namespace) {
                    Ok(Some(s)) if s.kind == Kind::Ack && s.ack == Some(0) => {
                        result = Some(if s.data == b"[true]" {
                            Ok(())
                        } else {
                            Err(ConnError(format!(
                                "join refused: {}",
                                String::from_utf8_lossy(&s.data[..s.data.len().min(40)])
                            )))
                        });
                    }
                    Ok(Some(s)) if s.kind == Kind::Disconnect => {
                        return Err(ConnError("namespace disconnect by server".into()))
                    }
                    Ok(_) => l.st.borrow_mut().c.other_packets += 1,
                    Err(m) => l.malformed(m),
                },
                Ok(_) => {}
                Err(m) => l.malformed(m),
            }
        }
        conn.flush().await?;
        if let Some(r) = result {
            return r;
        }
    }
}

/// The receive and publish loop of an established connection.
async fn run_conn(
    l: &Rc<Local>,
    conn: &mut Conn,
    ctl_slot: usize,
    rx: &mut Receiver,
    publ: &mut Option<Publisher>,
    cut: Option<crate::plan::RecoverPlan>,
) -> End {
    // `recover`: when this connection is cut (in the first measured phase); one timer, set
    // when the phase starts (none of this is polled in the other scenarios).
    let mut cut_armed = false;
    let cut_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(cut_timer);
    let arm = |spec: &super::control::PhaseSpec, timer: std::pin::Pin<&mut tokio::time::Sleep>| {
        let Some(c) = cut.filter(|_| spec.phase == 0) else { return false };
        let at = spec.start_ns + (c.drop_at_s * 1e9) as u64;
        let wait = Duration::from_nanos(at.saturating_sub(mono_ns()));
        timer.reset(tokio::time::Instant::now() + wait);
        true
    };
    // A client that (re)connects mid-phase picks the phase up where its schedule stands.
    let mut seen = l.ctl.gen.get();
    let current = l.ctl.get();
    match current {
        Control::Run(spec) => {
            cut_armed = arm(&spec, cut_timer.as_mut());
            if let Some(p) = publ {
                p.start(l, &spec);
            }
        }
        Control::Stop => return End::Stop,
        _ => {}
    }
    loop {
        let due = publ.as_ref().and_then(Publisher::next_due);
        let slot = publ.as_ref().map_or(0, |p| p.slot);
        tokio::select! {
            biased;
            g = l.ctl.changed(ctl_slot, seen) => {
                seen = g;
                match l.ctl.get() {
                    Control::Run(spec) => {
                        cut_armed = arm(&spec, cut_timer.as_mut());
                        if let Some(p) = publ {
                            p.start(l, &spec);
                        }
                    }
                    Control::End(_) => {
                        if let Some(p) = publ {
                            p.active = false;
                        }
                    }
                    Control::Stop => return End::Stop,
                    Control::Setup => {}
                }
            }
            r = conn.recv() => {
                // Every message of this read is handled here, with one arrival time, before
                // going back to waiting (the select and a clock read per message cost more
                // than the message once a server writes several per segment).
                let now = mono_ns();
                let mut next = r.map(Some);
                loop {
                    match next {
                        Ok(Some(Incoming::Text(payload))) => {
                            if let Err(e) = rx.handle(l, conn, &payload, now) {
                                return End::Lost(e);
                            }
                        }
                        Ok(Some(Incoming::Binary)) => l.st.borrow_mut().c.binary_frames += 1,
                        Ok(None) => break,
                        Err(e) => return End::Lost(e),
                    }
                    next = conn.try_recv();
                }
                if conn.has_pending() {
                    if let Err(e) = conn.flush().await {
                        return End::Lost(e);
                    }
                }
            }
            () = &mut cut_timer, if cut_armed => return End::Cut,
            _ = l.pacer.wait(slot, due.unwrap_or(u64::MAX)), if due.is_some() => {
                if let Some(p) = publ {
                    p.send_due(l, conn);
                }
                if let Err(e) = conn.flush().await {
                    return End::Lost(e);
                }
            }
        }
    }
}
