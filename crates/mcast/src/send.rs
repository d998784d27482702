//! The sender's driver (feature `sender`): one multicast socket paced by the state machine, one
//! tokio task per control connection, RaptorQ encoding handed to tokio's blocking pool.

use super::{BlockSource, MAX_FRAME, McastAddr, NetError, StreamSample, io_err, now};
use roomcast_proto::mcast::{
    ConnId, RateConfig, ReceiverReport, Sender, SenderEvent, SenderStats, Up,
};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// SO_SNDBUF of the multicast socket for pacing at `rate_bps`: 10 ms of it, as the token bucket
/// ([`RateConfig::burst_for`]): 256 KiB at 200 Mbit/s, 128 KiB at 100 Mbit/s.
fn send_buffer_for(rate_bps: u64) -> usize {
    RateConfig::burst_for(rate_bps) as usize
}

fn sender_socket(addr: McastAddr, send_buffer: usize) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_if_v4(&addr.interface)?;
    s.set_multicast_loop_v4(false)?;
    // The socket's backlog keeps the link busy while the scheduler keeps the sender off the CPU;
    // Linux doubles this and counts whole buffers: at 200 Mbit/s about 230 datagrams (330 kB) may
    // wait in the queues below. Sized by the rate so it stays within the first queue's buffer
    // (`tbf` in the lab: 20 ms of its rate + 64 KiB, 314 kB at 100 Mbit/s, where a fixed 256 KiB
    // overran it; a NIC's 1000 packets on a real server).
    s.set_send_buffer_size(send_buffer)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(addr.interface, 0)).into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), msg: &[u8]) -> io::Result<()> {
    w.write_all(&(msg.len() as u32).to_be_bytes()).await?;
    w.write_all(msg).await
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control frame too large",
        ));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// What [`serve_events`] did.
enum Served {
    None,
    Some,
    Finished(Vec<ReceiverReport>),
}

/// Handles every pending sender event: reads the blocks it asks for, logs the rest.
fn serve_events(sender: &mut Sender, source: &mut impl BlockSource) -> Result<Served, NetError> {
    let mut served = Served::None;
    while let Some(prepare) = sender.poll_prepare() {
        // RaptorQ encoding (about 2 ms per MiB) away from the sending loop.
        tokio::task::spawn_blocking(move || prepare.run());
    }
    while let Some(ev) = sender.poll_event() {
        served = Served::Some;
        match ev {
            SenderEvent::NeedBlock(i) => {
                let data = source
                    .read_block(i)
                    .map_err(io_err("reading a block for the stream"))?;
                sender.supply_block(i, &data)?;
            }
            SenderEvent::Finished(reports) => {
                source.event(&SenderEvent::Finished(reports.clone()), sender.stats());
                return Ok(Served::Finished(reports));
            }
            other => {
                tracing::info!(event = ?other, "multicast session");
                source.event(&other, sender.stats());
            }
        }
    }
    Ok(served)
}

enum CtlIn {
    Msg(ConnId, Up),
    Closed(ConnId),
}

/// How often the stream's rate and loss are handed to [`BlockSource::sample`].
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Hands one [`StreamSample`] to `source`: the wire rate since `last` (when, wire bytes then).
fn sample(
    sender: &Sender,
    start: Instant,
    last: (Instant, u64),
    source: &mut impl BlockSource,
) -> (Instant, u64) {
    let wire = sender.stats().wire_bytes;
    let secs = last.0.elapsed().as_secs_f64().max(0.001);
    let loss = sender.loss();
    source.sample(&StreamSample {
        at_ms: start.elapsed().as_millis() as u64,
        wire_bps: (wire.saturating_sub(last.1) as f64 * 8.0 / secs) as u64,
        pacing_bps: sender.rate_bps(),
        loss: loss.map(|l| l.0),
        worst_loss: loss.map(|l| l.1),
    });
    (Instant::now(), wire)
}

/// Runs the deploy server's side of a session to its end: accepts control connections on
/// `control`, multicasts to `addr`. Returns the report per receiver.
pub async fn run_sender(
    sender: Sender,
    control: TcpListener,
    addr: McastAddr,
    source: &mut impl BlockSource,
) -> Result<Vec<ReceiverReport>, NetError> {
    run_sender_with_stats(sender, control, addr, source)
        .await
        .map(|(reports, _)| reports)
}

/// [`run_sender`], also returning the sender's counters (packets, bytes on the wire, repair).
pub async fn run_sender_with_stats(
    mut sender: Sender,
    control: TcpListener,
    addr: McastAddr,
    source: &mut impl BlockSource,
) -> Result<(Vec<ReceiverReport>, SenderStats), NetError> {
    let start = Instant::now();
    let udp = sender_socket(addr, send_buffer_for(sender.rate_bps()))
        .map_err(io_err("opening the multicast socket"))?;
    let (tx, mut rx) = mpsc::channel::<CtlIn>(1024);
    let mut writers: HashMap<ConnId, OwnedWriteHalf> = HashMap::new();
    let mut next_conn = 1u64;
    let mut last_rate = sender.rate_bps();
    let seal = crate::stream_key(&addr);
    let mut sealed = Vec::with_capacity(2048);
    let mut counter = 0u64;
    let mut last_sample = (Instant::now(), 0u64);
    loop {
        // Drain everything the state machine has to say before sleeping. One datagram per round:
        // blocks the sender asks for ahead of its cursor are read as soon as asked, not when the
        // pacing next pauses (which, with the socket's backpressure pacing, may be many blocks
        // later: the link then idled while nine blocks were read at once).
        let mut settled = false;
        loop {
            // Sampled here, inside the drain: while the stream flows this loop may not settle for
            // seconds (the socket's backpressure paces it), and the chart wants one a second.
            if last_sample.0.elapsed() >= SAMPLE_EVERY {
                last_sample = sample(&sender, start, last_sample, source);
            }
            let mut busy = false;
            match serve_events(&mut sender, source)? {
                Served::Finished(reports) => {
                    while let Some((conn, msg)) = sender.poll_control() {
                        if let Some(w) = writers.get_mut(&conn) {
                            let _ = write_frame(w, &msg.encode()).await;
                        }
                    }
                    return Ok((reports, sender.stats().clone()));
                }
                Served::Some => busy = true,
                Served::None => {}
            }
            while let Some((conn, msg)) = sender.poll_control() {
                busy = true;
                if let Some(w) = writers.get_mut(&conn)
                    && write_frame(w, &msg.encode()).await.is_err()
                {
                    writers.remove(&conn);
                    sender.handle_disconnect(conn, now(start));
                }
            }
            if let Some(d) = sender.poll_transmit(now(start)) {
                busy = true;
                let wire: &[u8] = match &seal {
                    Some(key) => {
                        key.seal(crate::SealedKind::Datagram, counter, &d, &mut sealed);
                        counter += 1;
                        &sealed
                    }
                    None => &d,
                };
                udp.send_to(wire, SocketAddr::V4(addr.group))
                    .await
                    .map_err(io_err("sending to the multicast group"))?;
            }
            if busy {
                settled = false;
            } else if settled {
                break;
            } else {
                // One more look: `poll_transmit` may just have asked for the block it waits for.
                settled = true;
            }
        }
        let wake = sender.poll_timeout().map(|t| {
            let ahead = t.saturating_since(now(start));
            tokio::time::Instant::now() + ahead
        });
        let sleep = async {
            match wake {
                Some(w) => tokio::time::sleep_until(w).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = control.accept() => {
                let (stream, peer) = accepted.map_err(io_err("accepting a control connection"))?;
                let _ = stream.set_nodelay(true);
                let conn = ConnId(next_conn);
                next_conn += 1;
                let (mut r, w) = stream.into_split();
                writers.insert(conn, w);
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Ok(Some(bytes)) = read_frame(&mut r).await {
                        match Up::decode(&bytes) {
                            Ok((_, msg)) => {
                                if tx.send(CtlIn::Msg(conn, msg)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "bad control message");
                                break;
                            }
                        }
                    }
                    let _ = tx.send(CtlIn::Closed(conn)).await;
                });
            }
            Some(msg) = rx.recv() => match msg {
                CtlIn::Msg(conn, up) => sender.handle_control(conn, up, now(start)),
                CtlIn::Closed(conn) => {
                    writers.remove(&conn);
                    sender.handle_disconnect(conn, now(start));
                }
            },
            _ = sleep => sender.handle_timeout(now(start)),
        }
        if sender.rate_bps() != last_rate {
            last_rate = sender.rate_bps();
            tracing::debug!(rate_bps = last_rate, stats = ?sender.stats(), at = ?start.elapsed(), "pacing");
        }
    }
}
