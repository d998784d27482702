//! The PC's side of a session, driven on one plain thread: a non-blocking UDP socket for the
//! stream, a non-blocking TCP connection for control, `poll(2)` while nothing comes.
//!
//! Why not tokio here: a PC receives some 17,000 datagrams a second at 200 Mbit/s (85,000 at
//! 1 Gbit/s). Woken for each one, the receiver spends more CPU being woken (and makes the sender's
//! kernel path wake it, once per datagram and PC) than it spends on the data. So while the stream
//! flows the loop *naps*: it drains what the socket holds (up to [`BATCH`] datagrams), hands it to
//! the state machine, then sleeps [`NAP`] while the next datagrams gather in a deep socket buffer.
//! A sleeping thread is on no socket's wait queue, so the datagrams that arrive meanwhile cost the
//! kernel no wake-up. Only when the socket was empty does the loop block in `poll`, for the first
//! datagram, a control message or the state machine's next timeout, whichever comes first.

use super::{BlockSink, McastAddr, NetError, io_err, now};
use roomcast_proto::mcast::{Down, Receiver, ReceiverEvent, SessionId, Up};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Datagrams handled per turn of the loop before control and timeouts get a look.
const BATCH: usize = 64;

/// How long the loop sleeps after a turn that emptied the socket while the stream flows.
const NAP: Duration = Duration::from_millis(1);

/// Receive buffer asked for: at 1 Gbit/s, about 60 ms of stream, far more than a [`NAP`].
const RECV_BUFFER: usize = 8 << 20;

/// How long connecting to the deploy server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest datagram read (a data packet is one symbol plus its header, well under this).
const DATAGRAM_MAX: usize = 2048;

fn receiver_socket(addr: McastAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    force_recv_buffer(&s, RECV_BUFFER);
    s.bind(&SocketAddr::V4(SocketAddrV4::new(*addr.group.ip(), addr.group.port())).into())?;
    s.join_multicast_v4(addr.group.ip(), &addr.interface)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Asks for a `bytes` receive buffer past `net.core.rmem_max` (SO_RCVBUFFORCE: the agent runs as
/// root on the PC), falling back to what SO_RCVBUF allows. The nap needs the room.
fn force_recv_buffer(s: &Socket, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from a live local.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let _ = s.set_recv_buffer_size(bytes);
    }
    if let Ok(got) = s.recv_buffer_size() {
        tracing::debug!(asked = bytes, got, "multicast receive buffer");
    }
}

/// Waits until `udp` or `tcp` is readable (or `tcp` writable, if `want_write`), or `timeout`.
fn wait(udp: &UdpSocket, tcp: &TcpStream, want_write: bool, timeout: Duration) -> io::Result<()> {
    let mut fds = [
        libc::pollfd {
            fd: udp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: tcp.as_raw_fd(),
            events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
            revents: 0,
        },
    ];
    // Round up: a 0 ms poll for a timeout 400 µs away would spin.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a live array of two pollfd, its length passed with it.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Up to [`BATCH`] datagrams read with one `recvmmsg(2)`: at 17,000 datagrams a second, one
/// system call per datagram costs more than the kernel's copy of it.
struct Datagrams {
    data: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Datagrams {
    fn new() -> Self {
        Datagrams {
            data: vec![0; BATCH * DATAGRAM_MAX],
            iov: Vec::with_capacity(BATCH),
            // SAFETY: an all-zero mmsghdr is valid (no name, no control data, no iovec yet).
            hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Reads what the socket holds, up to [`BATCH`] datagrams, without waiting; [`Self::get`]
    /// returns them.
    fn read(&mut self, udp: &UdpSocket) -> io::Result<usize> {
        // Pointers are set afresh on every call (the buffers never move, but a struct holding
        // pointers into itself should not rely on that across calls).
        self.iov.clear();
        self.iov.extend(
            self.data
                .chunks_exact_mut(DATAGRAM_MAX)
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                }),
        );
        for (h, v) in self.hdrs.iter_mut().zip(self.iov.iter_mut()) {
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_len = 0;
        }
        // SAFETY: `hdrs` holds BATCH headers, each pointing at its own iovec in `iov`, each at its
        // own DATAGRAM_MAX bytes of `self.data`; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                udp.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last [`Self::read`] (mutable: it is opened in place).
    fn get(&mut self, i: usize) -> &mut [u8] {
        let at = i * DATAGRAM_MAX;
        let len = self.hdrs[i].msg_len as usize;
        &mut self.data[at..at + len]
    }
}

/// The control connection: length-prefixed frames in and out, without ever blocking.
struct Control {
    tcp: TcpStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    closed: bool,
}

impl Control {
    fn connect(server: SocketAddr) -> io::Result<Self> {
        let tcp = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)?;
        tcp.set_nodelay(true)?;
        tcp.set_nonblocking(true)?;
        Ok(Control {
            tcp,
            inbox: Vec::new(),
            outbox: Vec::new(),
            closed: false,
        })
    }

    fn queue(&mut self, msg: &[u8]) {
        self.outbox
            .extend_from_slice(&(msg.len() as u32).to_be_bytes());
        self.outbox.extend_from_slice(msg);
    }

    /// Writes what the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        while !self.outbox.is_empty() {
            match self.tcp.write(&self.outbox) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what has arrived; `closed` once the server shut the connection (or reset it: a
    /// server killed with data unread resets rather than closes).
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16 << 10];
        while !self.closed {
            match self.tcp.read(&mut buf) {
                Ok(0) => self.closed = true,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.closed = true,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next whole frame received, if any.
    fn next_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(len) = self.inbox.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > super::MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control frame too large",
            ));
        }
        if self.inbox.len() < 4 + len {
            return Ok(None);
        }
        let frame = self.inbox[4..4 + len].to_vec();
        self.inbox.drain(..4 + len);
        Ok(Some(frame))
    }
}

/// What a receiver learnt about its group membership, filled in as the session goes (also when
/// [`run_receiver_reporting`] returns an error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// MTU of the receiving interface, told to the sender in the HELLO (`None`: not found).
    pub mtu: Option<u32>,
    /// Times the group was joined again because the stream stopped reaching this PC.
    pub rejoins: u64,
    /// The stream reached this PC without a re-join (false as soon as one was needed).
    pub from_start: bool,
    /// Datagrams of the session received.
    pub datagrams: u64,
    /// Datagrams dropped because they did not authenticate under the session key (tampered,
    /// forged, of another session).
    pub rejected: u64,
}

/// Runs one PC's side of a session on the calling thread: connects to the deploy server at
/// `server`, listens on `addr`, hands every rebuilt block to `sink`. Returns once every block is
/// written (`true`) or the server ended the session without it (`false`); gives up with
/// [`NetError::Stalled`] when no block was written for `stall` (counted from the start, so it must
/// exceed how long the server waits for the room before streaming).
pub fn run_receiver(
    receiver: Receiver,
    server: SocketAddr,
    addr: McastAddr,
    sink: &mut impl BlockSink,
    stall: Duration,
) -> Result<bool, NetError> {
    run_receiver_reporting(
        receiver,
        server,
        addr,
        sink,
        stall,
        &mut Membership::default(),
    )
}

/// [`run_receiver`], telling the sender this interface's MTU and filling `membership`: a PC the
/// stream stops reaching (its snooping switch forgot or never learnt its port) leaves and joins
/// the group again after each `ReceiverConfig::rejoin_after` of silence, which sends a fresh
/// membership report.
pub fn run_receiver_reporting(
    mut receiver: Receiver,
    server: SocketAddr,
    addr: McastAddr,
    sink: &mut impl BlockSink,
    stall: Duration,
    membership: &mut Membership,
) -> Result<bool, NetError> {
    let start = Instant::now();
    membership.mtu = crate::interface_mtu(addr.interface);
    membership.from_start = true;
    if let Some(mtu) = membership.mtu {
        receiver.set_path_mtu(mtu.min(u32::from(u16::MAX)) as u16);
    }
    let udp = receiver_socket(addr).map_err(io_err("joining the multicast group"))?;
    let mut ctl = Control::connect(server).map_err(io_err("connecting to the deploy server"))?;
    let mut datagrams = Datagrams::new();
    let open = crate::stream_key(&addr);
    let mut complete = false;
    let mut progress = Instant::now();
    loop {
        while let Some(ev) = receiver.poll_event() {
            match ev {
                ReceiverEvent::BlockComplete { index, data } => {
                    if sink
                        .verify_and_write(index, &data)
                        .map_err(io_err("writing a verified block"))?
                    {
                        receiver.mark_written(index);
                        progress = Instant::now();
                    } else {
                        tracing::warn!(block = index, "block failed verification; asking again");
                        receiver.mark_bad(index);
                    }
                    receiver.recycle(data);
                }
                ReceiverEvent::Complete => complete = true,
                ReceiverEvent::Ended { complete: all } => return Ok(all || complete),
                ReceiverEvent::Rejected { reason } => {
                    return Err(NetError::Io {
                        step: "joining the session",
                        source: io::Error::new(io::ErrorKind::PermissionDenied, reason),
                    });
                }
                ReceiverEvent::Joined { .. } => {}
            }
        }
        let mut done_sent = false;
        while let Some(msg) = receiver.poll_control(now(start)) {
            done_sent |= matches!(msg, Up::Done { .. });
            ctl.queue(&msg.encode(receiver.session().unwrap_or(SessionId(0))));
        }
        ctl.flush()
            .map_err(io_err("writing to the deploy server"))?;
        if done_sent && complete {
            // The DONE must reach the server before the connection closes with us.
            ctl.tcp
                .set_nonblocking(false)
                .and_then(|()| ctl.tcp.write_all(&ctl.outbox))
                .map_err(io_err("writing to the deploy server"))?;
            return Ok(true);
        }
        if progress.elapsed() >= stall {
            return Err(NetError::Stalled(stall));
        }
        membership.datagrams = receiver.stats().datagrams;

        ctl.fill()
            .map_err(io_err("reading from the deploy server"))?;
        let mut got_control = false;
        while let Some(frame) = ctl
            .next_frame()
            .map_err(io_err("reading from the deploy server"))?
        {
            let msg = Down::decode(&frame).map_err(|source| NetError::Wire {
                peer: server,
                source,
            })?;
            receiver.handle_control(msg, now(start));
            got_control = true;
        }
        if ctl.closed && !got_control {
            return Err(NetError::ServerGone);
        }

        let got = datagrams
            .read(&udp)
            .map_err(io_err("receiving from the multicast group"))?;
        for i in 0..got {
            let d = datagrams.get(i);
            match &open {
                None => receiver.handle_datagram(d, now(start)),
                Some(key) => match key.open(crate::SealedKind::Datagram, d) {
                    Some(plain) => receiver.handle_datagram(plain, now(start)),
                    None => {
                        membership.rejected += 1;
                        if membership.rejected.is_power_of_two() {
                            tracing::warn!(
                                rejected = membership.rejected,
                                "datagrams that do not authenticate under the session key dropped"
                            );
                        }
                    }
                },
            }
        }
        // Only after reading what the socket holds: a loop held up by a slow write finds the
        // stream waiting in its buffer, which is not silence.
        if receiver.poll_rejoin(now(start)) {
            // Leave, then join: the kernel sends a fresh report (a membership it already holds
            // would not be reported again before the next query).
            let group = addr.group.ip();
            let _ = udp.leave_multicast_v4(group, &addr.interface);
            udp.join_multicast_v4(group, &addr.interface)
                .map_err(io_err("joining the multicast group again"))?;
            membership.rejoins = receiver.stats().rejoins;
            membership.from_start = receiver.received_from_start();
            tracing::info!(
                rejoins = membership.rejoins,
                "no datagram from the stream: joined the group again"
            );
        }
        if got == BATCH || got_control {
            continue;
        }
        let at = now(start);
        let until_timeout = receiver
            .poll_timeout()
            .map_or(Duration::MAX, |t| t.saturating_since(at));
        let until_stall = stall.saturating_sub(progress.elapsed());
        let limit = until_timeout.min(until_stall);
        if got > 0 {
            // The stream flows: let the next datagrams gather rather than be woken for each.
            std::thread::sleep(NAP.min(limit));
        } else if !limit.is_zero() {
            wait(&udp, &ctl.tcp, !ctl.outbox.is_empty(), limit)
                .map_err(io_err("waiting for the deploy server"))?;
        }
    }
}
