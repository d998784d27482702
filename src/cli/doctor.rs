//! `roomcast doctor`: checks a room's network before the night. A list of [`Check`]s, each run in
//! turn and printing one verdict per machine; today one check, [`MulticastReach`]: a few seconds of
//! a test stream on the room's group, from the server to the PCs that are up, and who receives it.
//!
//! On the server: `roomcast doctor --room rooms/0640058L/S12.yaml` (or `--interface` +
//! `--machine`). On each PC that is up (a live system, the lab, a PC booted into any Linux with
//! `roomcast`): `roomcast doctor --listen <server address>`. A listener connects to the server's
//! report port and says its MAC, joins the group (and joins again after each second of silence,
//! as the agent does), counts the test datagrams of two sizes (576-byte: any path carries them;
//! full-size: as large as the deploy's for the interface's MTU), and answers with its counts when
//! the server says the test is over. The test stream carries random padding only: nothing of an
//! image, no token; it goes to the room's group, TTL 1, from the room's interface.

use super::exit::{self, CliError};
use super::room::RoomArgs;
use clap::Args;
use roomcast_proto::mac::Mac;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// First bytes of a test datagram (never a roomcast data packet: those start with `RCMC`).
const MAGIC: &[u8; 4] = b"RCDR";
/// Bytes of a small test datagram's UDP payload: 576 (the IPv4 minimum) minus IP and UDP headers.
const SMALL: usize = 548;
/// Kind byte of a datagram: small, full-size.
const KIND_SMALL: u8 = 0;
const KIND_FULL: u8 = 1;

/// `roomcast doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The room file (same as `--room`).
    #[arg(value_name = "ROOM_FILE", conflicts_with = "room")]
    room_file: Option<std::path::PathBuf>,
    /// The room (`--room`, or `--interface` and `--machine`): who should answer.
    #[command(flatten)]
    room: RoomArgs,
    /// Only the server's checks (interface, ports, store, disk, clock, SSH key, boot environment,
    /// GLPI), not the multicast test stream to the PCs. With a room file, the server's checks
    /// run first anyway.
    #[arg(long)]
    server_only: bool,
    /// Leave out server checks by name: interface, ports, store, disk, clock, ssh-key, bootenv,
    /// glpi.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(super::doctor_server::NAMES))]
    skip: Vec<String>,
    /// The image store to check (from /etc/roomcast/roomcast.toml when not given).
    #[arg(long)]
    store: Option<std::path::PathBuf>,
    /// Free space the store must keep for the next capture, at least (GiB).
    #[arg(long, default_value_t = 20)]
    min_free_gib: u64,
    /// The SSH key for the PCs to check.
    #[arg(long)]
    ssh_key: Option<std::path::PathBuf>,
    /// The boot folder to check (`bootenv build --out`).
    #[arg(long)]
    boot_dir: Option<std::path::PathBuf>,
    /// GLPI's root URL to check (with the tokens below).
    #[arg(long)]
    glpi_url: Option<String>,
    /// GLPI's App-Token, a `secret:NAME` reference.
    #[arg(long, default_value = "secret:GLPI_APP_TOKEN")]
    app_token: String,
    /// The technician's GLPI token, a `secret:NAME` reference.
    #[arg(long, default_value = "secret:GLPI_USER_TOKEN")]
    user_token: String,
    /// Secrets file for the GLPI tokens.
    #[arg(long)]
    secrets: Option<std::path::PathBuf>,
    /// Be a PC: listen for the test of the server at this address, then report to it.
    #[arg(long, value_name = "SERVER")]
    listen: Option<Ipv4Addr>,
    /// Multicast group and port, in 239.255.0.0/16. Default: the room's group (or 239.255.0.1),
    /// port 9000.
    #[arg(long)]
    group: Option<String>,
    /// TCP port of the server where PCs report.
    #[arg(long, default_value_t = 9600)]
    report_port: u16,
    /// Seconds of test stream.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Server: longest wait, in seconds, for the room's PCs to connect before the test starts.
    /// PC: longest wait for the server.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Test datagrams per second (half small, half full-size): 2000 is about 12 Mbit/s.
    #[arg(long, default_value_t = 2000)]
    pps: u64,
}

/// Runs `roomcast doctor`.
pub fn run(mut a: DoctorArgs) -> Result<u8, CliError> {
    super::room::init_tracing();
    if let Some(f) = a.room_file.take() {
        a.room.room = Some(f);
    }
    match a.listen {
        Some(server) => listen(&a, server).map_err(|e| e.prefixed("roomcast doctor --listen: ")),
        None => serve(&a).map_err(|e| e.prefixed("roomcast doctor: ")),
    }
}

fn group_of(a: &DoctorArgs, room_group: Option<&str>) -> Result<SocketAddrV4, CliError> {
    let g = a.group.as_deref().or(room_group).unwrap_or("239.255.0.1");
    let addr = match g.parse::<SocketAddrV4>() {
        Ok(a) => a,
        Err(_) => SocketAddrV4::new(
            g.parse::<Ipv4Addr>()
                .map_err(|_| format!("multicast group {g:?}: want IP or IP:port"))?,
            9000,
        ),
    };
    let o = addr.ip().octets();
    if o[0] != 239 || o[1] != 255 || addr.port() == 0 {
        return Err(
            format!("multicast group {addr}: must be in 239.255.0.0/16, port not 0").into(),
        );
    }
    Ok(addr)
}

/// What a check needs: the room's interface address, the machines, the group.
pub struct Context {
    /// Address of the room interface.
    pub interface: Ipv4Addr,
    /// MTU of the room interface, if known.
    pub mtu: Option<u32>,
    /// The machines that should answer, with their names.
    pub machines: BTreeMap<Mac, String>,
    /// The room's group.
    pub group: SocketAddrV4,
}

/// One verdict line about one machine (or the room, `machine: None`).
pub struct Finding {
    /// The machine, if the finding is about one.
    pub machine: Option<Mac>,
    /// Whether it is fine.
    pub ok: bool,
    /// What to tell the technician.
    pub text: String,
}

/// One check of the room; more (DHCP, TFTP, disk sizes...) are added to [`checks`].
pub trait Check {
    /// Short name, printed before its findings.
    fn name(&self) -> &'static str;
    /// Runs the check.
    fn run(&self, ctx: &Context) -> Result<Vec<Finding>, CliError>;
}

/// The checks `roomcast doctor` runs, in order.
fn checks(a: &DoctorArgs) -> Vec<Box<dyn Check>> {
    vec![Box::new(MulticastReach {
        report_port: a.report_port,
        seconds: a.seconds,
        wait: Duration::from_secs(a.wait),
        pps: a.pps.clamp(10, 100_000),
    })]
}

/// The server's checks (`doctor_server`), printed like the room's; true when all passed.
fn server_checks(a: &DoctorArgs, room: &super::room::RoomTarget) -> Result<bool, CliError> {
    let glpi = match &a.glpi_url {
        None => None,
        Some(url) => {
            let secrets = crate::secrets::SecretStore::new(a.secrets.clone());
            let token = |r: &str| secrets.resolve(r).map_err(|e| format!("GLPI token: {e}"));
            Some(crate::inventory::glpi::GlpiConfig {
                url: url.clone(),
                app_token: Some(token(&a.app_token)?),
                user_token: token(&a.user_token)?,
                timeout: Duration::from_secs(10),
            })
        }
    };
    let setup = super::doctor_server::ServerSetup {
        interface: room.interface.clone(),
        subnet: room.subnet,
        store: a.store.clone(),
        min_free: a.min_free_gib << 30,
        ssh_key: a.ssh_key.clone(),
        boot_dir: a.boot_dir.clone(),
        glpi,
        skip: a.skip.clone(),
    };
    let mut all_ok = true;
    for (name, findings) in super::doctor_server::run(&setup) {
        println!("check {name}:");
        for f in findings {
            all_ok &= f.ok;
            println!("  {} {}", if f.ok { "ok  " } else { "FAIL" }, f.text);
        }
    }
    Ok(all_ok)
}

fn serve(a: &DoctorArgs) -> Result<u8, CliError> {
    let room = a.room.resolve()?;
    if room.interface.is_empty() {
        return Err("need --interface or --room (or --listen SERVER on a PC)".into());
    }
    // The server's checks go with a room file (the night's real room) or --server-only; the lab's
    // `--interface` + `--machine` form runs the multicast test alone.
    let server_ok = if a.room.room.is_some() || a.server_only {
        server_checks(a, &room)?
    } else {
        true
    };
    if a.server_only || !server_ok {
        if !a.server_only {
            println!("multicast test not run: fix the server first");
        }
        return Ok(if server_ok { exit::OK } else { exit::FAILURE });
    }
    let interface =
        crate::serve::interface_addr(&room.interface, room.subnet).map_err(|e| e.to_string())?;
    let ctx = Context {
        interface,
        mtu: roomcast_mcast::interface_mtu(interface),
        machines: room.machines.iter().cloned().collect(),
        group: group_of(a, room.group.as_deref())?,
    };
    let mut all_ok = true;
    for check in checks(a) {
        println!("check {}:", check.name());
        for f in check.run(&ctx)? {
            all_ok &= f.ok;
            let who = f
                .machine
                .map(|m| match ctx.machines.get(&m) {
                    Some(h) => format!("{h} ({m}): "),
                    None => format!("{m}: "),
                })
                .unwrap_or_default();
            println!("  {} {who}{}", if f.ok { "ok  " } else { "FAIL" }, f.text);
        }
    }
    Ok(if all_ok { exit::OK } else { exit::FAILURE })
}

/// A few seconds of test stream to the PCs that are up; who receives it, small and full-size.
pub struct MulticastReach {
    report_port: u16,
    seconds: u64,
    wait: Duration,
    pps: u64,
}

/// What a listener answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    small: u64,
    full: u64,
    rejoins: u64,
    mtu: u32,
}

impl Check for MulticastReach {
    fn name(&self) -> &'static str {
        "multicast reaches the PCs"
    }

    fn run(&self, ctx: &Context) -> Result<Vec<Finding>, CliError> {
        let bind = SocketAddrV4::new(ctx.interface, self.report_port);
        let listener = TcpListener::bind(bind).map_err(|e| format!("report port {bind}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("report port {bind}: {e}"))?;
        println!(
            "  waiting up to {} s for {} PC(s) on {bind} (on each: roomcast doctor --listen {})",
            self.wait.as_secs(),
            ctx.machines.len(),
            ctx.interface
        );
        let mut peers: Vec<(Mac, BufReader<TcpStream>)> = Vec::new();
        let deadline = Instant::now() + self.wait;
        let all_here = |p: &[(Mac, BufReader<TcpStream>)]| {
            !ctx.machines.is_empty() && ctx.machines.keys().all(|m| p.iter().any(|(x, _)| x == m))
        };
        while Instant::now() < deadline && !all_here(&peers) {
            match listener.accept() {
                Ok((s, _)) => {
                    if let Some(p) = hello(s) {
                        peers.push(p);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("report port {bind}: {e}").into()),
            }
        }
        let full = ctx
            .mtu
            .map_or(1464, |m| (m as usize).saturating_sub(28).clamp(SMALL, 1472));
        println!(
            "  {} PC(s) listening; {} s of test stream to {} ({} small and {}-byte datagrams)",
            peers.len(),
            self.seconds,
            ctx.group,
            SMALL,
            full + 28
        );
        let run: u64 = rand::random();
        let sent = stream(ctx, run, full, self.seconds, self.pps)?;
        let mut answers: BTreeMap<Mac, Counts> = BTreeMap::new();
        for (_, r) in &mut peers {
            let _ = writeln!(r.get_mut(), "end {run}");
        }
        for (mac, r) in &mut peers {
            let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            if r.read_line(&mut line).is_ok()
                && let Some(c) = parse_counts(&line)
            {
                answers.insert(*mac, c);
            }
        }
        Ok(findings(
            ctx,
            &peers.iter().map(|p| p.0).collect::<Vec<_>>(),
            &answers,
            sent,
            full,
        ))
    }
}

/// A listener's first line: `hello <mac>`.
fn hello(s: TcpStream) -> Option<(Mac, BufReader<TcpStream>)> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mac = line.trim().strip_prefix("hello ")?.parse::<Mac>().ok()?;
    Some((mac, r))
}

fn parse_counts(line: &str) -> Option<Counts> {
    let mut c = Counts::default();
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "small" => c.small = v.parse().ok()?,
            "full" => c.full = v.parse().ok()?,
            "rejoins" => c.rejoins = v.parse().ok()?,
            "mtu" => c.mtu = v.parse().ok()?,
            _ => {}
        }
    }
    Some(c)
}

/// Sends the test stream: small and full-size datagrams in turn, paced, for `seconds`. Returns how
/// many of each kind were sent.
fn stream(
    ctx: &Context,
    run: u64,
    full: usize,
    seconds: u64,
    pps: u64,
) -> Result<(u64, u64), CliError> {
    let err = |e: std::io::Error| CliError::from(format!("test stream to {}: {e}", ctx.group));
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(err)?;
    s.set_multicast_ttl_v4(1).map_err(err)?;
    s.set_multicast_if_v4(&ctx.interface).map_err(err)?;
    s.set_multicast_loop_v4(false).map_err(err)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(ctx.interface, 0)).into())
        .map_err(err)?;
    let udp: UdpSocket = s.into();
    let mut buf = vec![0u8; full];
    let start = Instant::now();
    let total = seconds * pps;
    let mut sent = (0u64, 0u64);
    for seq in 0..total {
        let due = start + Duration::from_micros(seq * 1_000_000 / pps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let kind = if seq % 2 == 0 { KIND_SMALL } else { KIND_FULL };
        let len = if kind == KIND_SMALL { SMALL } else { full };
        buf[..4].copy_from_slice(MAGIC);
        buf[4..12].copy_from_slice(&run.to_be_bytes());
        buf[12..20].copy_from_slice(&seq.to_be_bytes());
        buf[20] = kind;
        // A send the local queue refuses is a datagram not sent: count only what left.
        if udp.send_to(&buf[..len], ctx.group).is_ok() {
            if kind == KIND_SMALL {
                sent.0 += 1;
            } else {
                sent.1 += 1;
            }
        }
    }
    Ok(sent)
}

/// One finding per machine of the room, and per unknown machine that answered.
fn findings(
    ctx: &Context,
    connected: &[Mac],
    answers: &BTreeMap<Mac, Counts>,
    sent: (u64, u64),
    full: usize,
) -> Vec<Finding> {
    let share = |got: u64, of: u64| if of == 0 { 0.0 } else { got as f64 / of as f64 };
    let mut out = Vec::new();
    let mut macs: Vec<Mac> = ctx.machines.keys().copied().collect();
    macs.extend(connected.iter().filter(|m| !ctx.machines.contains_key(m)));
    for mac in macs {
        let (ok, text) = match answers.get(&mac) {
            None if connected.contains(&mac) => (false, "connected but did not answer".into()),
            None => (
                true,
                "no answer (not up, or not listening): not tested".into(),
            ),
            Some(c) => {
                let (s, f) = (share(c.small, sent.0), share(c.full, sent.1));
                let got = format!(
                    "received {}/{} small and {}/{} {}-byte datagrams, {} re-join(s), MTU {}",
                    c.small,
                    sent.0,
                    c.full,
                    sent.1,
                    full + 28,
                    c.rejoins,
                    c.mtu
                );
                if c.small == 0 && c.full == 0 {
                    (
                        false,
                        format!(
                            "receives nothing from the multicast group: IGMP snooping? see \
                             docs/MULTICAST.md ({got})"
                        ),
                    )
                } else if f < 0.5 && s >= 0.5 {
                    (
                        false,
                        format!(
                            "small datagrams only: the path's MTU is below {} (roomcast sizes \
                             its datagrams for the PCs' own MTU; a smaller one between them is \
                             for the network team) ({got})",
                            full + 28
                        ),
                    )
                } else if c.rejoins > 0 || s < 0.9 || f < 0.9 {
                    (
                        false,
                        format!(
                            "receives the stream only partly or after re-joining: IGMP \
                             snooping or querier? see docs/MULTICAST.md ({got})"
                        ),
                    )
                } else {
                    (true, got)
                }
            }
        };
        out.push(Finding {
            machine: Some(mac),
            ok,
            text,
        });
    }
    if ctx.machines.is_empty() && connected.is_empty() {
        out.push(Finding {
            machine: None,
            ok: false,
            text: "no PC listened: nothing was tested".into(),
        });
    }
    out
}

/// The PC's side: report to the server, count the test stream, answer at the end.
fn listen(a: &DoctorArgs, server: Ipv4Addr) -> Result<u8, CliError> {
    let group = group_of(a, None)?;
    let to = SocketAddr::V4(SocketAddrV4::new(server, a.report_port));
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let tcp = loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("no server at {to} after {} s: {e}", a.wait).into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let local = match tcp.local_addr() {
        Ok(SocketAddr::V4(l)) => *l.ip(),
        _ => return Err(format!("{to}: no IPv4 address of ours").into()),
    };
    let name = roomcast_mcast::interface_name(local)
        .ok_or_else(|| format!("no interface holds {local}"))?;
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .map_err(|e| format!("MAC of {name}: {e}"))?;
    let mac: Mac = mac_text
        .trim()
        .parse()
        .map_err(|_| format!("MAC of {name}: {:?}", mac_text.trim()))?;
    let mtu = roomcast_mcast::interface_mtu(local).unwrap_or(0);
    let mut tcp_w = tcp.try_clone().map_err(|e| e.to_string())?;
    writeln!(tcp_w, "hello {mac}").map_err(|e| format!("{to}: {e}"))?;
    let udp = join(group, local).map_err(|e| format!("joining {group} on {name}: {e}"))?;
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    println!("{name} ({mac}, MTU {mtu}) listening on {group} for the test of {server}");
    let mut c = Counts {
        mtu,
        ..Counts::default()
    };
    let mut run: Option<u64> = None;
    let mut quiet = Instant::now();
    let mut inbox = Vec::new();
    let mut tcp_r = tcp;
    let mut buf = vec![0u8; 65536];
    loop {
        match udp.recv(&mut buf) {
            Ok(n) if n >= 21 && &buf[..4] == MAGIC => {
                let r = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
                if *run.get_or_insert(r) == r {
                    quiet = Instant::now();
                    if buf[20] == KIND_SMALL {
                        c.small += 1;
                    } else {
                        c.full += 1;
                    }
                }
            }
            _ => {}
        }
        if quiet.elapsed() >= Duration::from_secs(1) {
            // As the agent does: leave and join again, a fresh membership report.
            let _ = udp.leave_multicast_v4(group.ip(), &local);
            let _ = udp.join_multicast_v4(group.ip(), &local);
            if run.is_some() || c.rejoins > 0 {
                c.rejoins += 1;
            }
            quiet = Instant::now();
        }
        let mut chunk = [0u8; 256];
        match tcp_r.read(&mut chunk) {
            Ok(0) => return Err(format!("{to} closed before the end of the test").into()),
            Ok(n) => inbox.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("{to}: {e}").into()),
        }
        if inbox.contains(&b'\n') {
            break;
        }
        if Instant::now() >= deadline + Duration::from_secs(a.seconds + 60) {
            return Err("the server never ended the test".into());
        }
    }
    tcp_r.set_nonblocking(false).map_err(|e| e.to_string())?;
    writeln!(
        tcp_w,
        "small={} full={} rejoins={} mtu={}",
        c.small, c.full, c.rejoins, c.mtu
    )
    .map_err(|e| format!("{to}: {e}"))?;
    println!(
        "received {} small and {} full-size test datagrams, {} re-join(s)",
        c.small, c.full, c.rejoins
    );
    Ok(exit::OK)
}

fn join(group: SocketAddrV4, local: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(*group.ip(), group.port())).into())?;
    s.join_multicast_v4(group.ip(), &local)?;
    let udp: UdpSocket = s.into();
    udp.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(udp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(macs: &[Mac]) -> Context {
        Context {
            interface: Ipv4Addr::new(198, 18, 0, 1),
            mtu: Some(1500),
            machines: macs.iter().map(|m| (*m, format!("pc{}", m.0[5]))).collect(),
            group: "239.255.0.1:9000".parse().unwrap(),
        }
    }

    #[test]
    fn verdicts_name_the_cause() {
        let m = |i| Mac([2, 0, 0, 0, 0, i]);
        let c = ctx(&[m(1), m(2), m(3), m(4), m(5)]);
        let answers: BTreeMap<Mac, Counts> = [
            (
                m(1),
                Counts {
                    small: 100,
                    full: 100,
                    rejoins: 0,
                    mtu: 1500,
                },
            ),
            (
                m(2),
                Counts {
                    small: 0,
                    full: 0,
                    rejoins: 4,
                    mtu: 1500,
                },
            ),
            (
                m(3),
                Counts {
                    small: 100,
                    full: 0,
                    rejoins: 0,
                    mtu: 1400,
                },
            ),
            (
                m(4),
                Counts {
                    small: 100,
                    full: 99,
                    rejoins: 2,
                    mtu: 1500,
                },
            ),
        ]
        .into();
        let f = findings(&c, &[m(1), m(2), m(3), m(4)], &answers, (100, 100), 1472);
        let by = |i: u8| f.iter().find(|f| f.machine == Some(m(i))).unwrap();
        assert!(by(1).ok, "{}", by(1).text);
        assert!(
            !by(2).ok
                && by(2)
                    .text
                    .contains("receives nothing from the multicast group")
        );
        assert!(
            !by(3).ok && by(3).text.contains("MTU is below 1500"),
            "{}",
            by(3).text
        );
        assert!(
            !by(4).ok && by(4).text.contains("re-joining"),
            "{}",
            by(4).text
        );
        assert!(by(5).ok && by(5).text.contains("not tested"));
        assert_eq!(
            parse_counts("small=3 full=2 rejoins=1 mtu=1400\n"),
            Some(Counts {
                small: 3,
                full: 2,
                rejoins: 1,
                mtu: 1400
            })
        );
        assert_eq!(parse_counts("small=x"), None);
    }
}
