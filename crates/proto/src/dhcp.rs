//! proxyDHCP for PXE, sans-IO: bytes of one DHCP request in, a reply (as a value) or the reason it was
//! ignored out. No sockets, no clock: the driver in `net::proxydhcp` feeds it.
//!
//! A school already runs a DHCP server that hands out addresses; roomcast must not compete with it.
//! A proxyDHCP server (PXE specification 2.1, section 2.2.2 "proxyDHCP") never offers an address
//! (`yiaddr` stays 0.0.0.0): it only tells a PXE client where its boot file is. Rules kept here:
//! - only PXE clients are answered: option 60 (vendor class, RFC 2132 section 9.13) starts with
//!   `PXEClient` (PXE spec 2.1, section 2.4);
//! - only machines of the running campaign (MAC allowlist) are answered; every other PC on the
//!   school network is left to its normal boot;
//! - the boot file follows the client architecture, option 93 (RFC 4578 section 2.1): 0 = BIOS gets
//!   `undionly.kpxe`, 7 and 9 = UEFI x64 get `snponly.efi` (or `ipxe.efi`), or Debian's signed shim
//!   when the room boots with Secure Boot ([`ProxyConfig::secure_boot_file`]), others are ignored;
//! - a client that is already iPXE (option 77 user class `iPXE`, RFC 3004) gets the HTTP URL of its
//!   boot script instead, which breaks the TFTP -> iPXE -> TFTP loop;
//! - every reply carries `siaddr` (next server): iPXE ignores a proxy ACK without it;
//! - option 43 carries PXE_DISCOVERY_CONTROL = 8 (PXE spec 2.1, table 2-1: boot file in the offer,
//!   no boot-server discovery); iPXE replies also carry option 175 with 176 = 1 (iPXE's
//!   "no-pxedhcp"), so iPXE does not wait for more proxy offers.
//!
//! Port 67 DISCOVER gets a proxy OFFER (broadcast), port 67 REQUEST naming this server (option 54)
//! gets an ACK; port 4011 REQUEST (PXE spec 2.1, section 2.2.5, boot-server request) gets an ACK sent
//! back to the requester. A REQUEST on port 67 for another server (the school's DHCP) is not ours.

use crate::mac::Mac;
use dhcproto::v4::{
    self, Decodable, DhcpOption, Encodable, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The UDP port a DHCP server listens on (RFC 2131 section 4.1).
pub const DHCP_SERVER_PORT: u16 = 67;
/// The UDP port a DHCP client listens on.
pub const DHCP_CLIENT_PORT: u16 = 68;
/// The PXE boot-server port (PXE spec 2.1, section 2.2.5).
pub const PXE_PORT: u16 = 4011;

/// On which of the two server ports a request arrived; the rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Port 67: broadcast DHCP, shared with the school's DHCP server.
    Dhcp,
    /// Port 4011: PXE boot-server requests, addressed to us.
    Pxe,
}

/// Client architecture from option 93 (RFC 4578 section 2.1, IANA "Processor Architecture Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// 0: x86 BIOS (legacy PXE ROM).
    Bios,
    /// 7 (EFI BC) or 9 (EFI x86-64): UEFI on x86-64.
    UefiX64,
}

/// What the handler needs to know about this server and the campaign.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Our address on the room interface: option 54 and `siaddr` (the TFTP next server).
    pub server: Ipv4Addr,
    /// TFTP file name for BIOS clients (Debian's `ipxe` package: `undionly.kpxe`).
    pub bios_boot_file: String,
    /// TFTP file name for UEFI x64 clients: `snponly.efi` (starts ~4 s sooner on OVMF) or `ipxe.efi`.
    pub uefi_boot_file: String,
    /// When the room's PCs boot with Secure Boot on: the signed first stage UEFI x64 firmware gets
    /// instead of iPXE (Debian's shim, `shimx64.efi`, which loads the Debian-signed GRUB beside it;
    /// docs/BOOT.md, *Secure Boot*). BIOS clients and iPXE are unchanged: Secure Boot is UEFI's.
    pub secure_boot_file: Option<String>,
    /// Base of the HTTP service, without a trailing slash, e.g. `http://198.18.0.1:8080`.
    pub http_base: String,
    /// MACs of the running campaign: nobody else gets an answer.
    pub allowlist: BTreeSet<Mac>,
}

impl ProxyConfig {
    /// The URL of a machine's boot script, served by `net::http`.
    pub fn boot_script_url(&self, mac: Mac) -> String {
        format!("{}/boot/{}.ipxe", self.http_base, mac.hyphenated())
    }
}

/// Where the driver must send a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the room interface: the client has no address yet.
    Broadcast,
    /// Back to the address and port the request came from (port 4011 requests).
    Sender,
    /// To a relay agent (`giaddr`), port 67 (RFC 2131 section 4.1).
    Relay(Ipv4Addr),
}

/// A reply to send, as a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The machine it is for.
    pub mac: Mac,
    /// The firmware stage we answered (decides the boot file).
    pub stage: Stage,
    /// The DHCP message (OFFER or ACK).
    pub message: Message,
    /// Where to send it.
    pub destination: Destination,
}

impl Reply {
    /// The wire bytes of the reply.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding a message we built ourselves cannot fail: every option fits in its length byte.
        self.message.to_vec().unwrap_or_default()
    }

    /// The boot file name or URL the reply hands out.
    pub fn boot_file(&self) -> Option<String> {
        match self.message.opts().get(OptionCode::BootfileName) {
            Some(DhcpOption::BootfileName(f)) => Some(String::from_utf8_lossy(f).into_owned()),
            _ => None,
        }
    }
}

/// Which program is asking: the firmware's PXE ROM, or iPXE that it already loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Firmware PXE: gets a TFTP file name.
    Firmware(Firmware),
    /// iPXE: gets the HTTP URL of its boot script.
    Ipxe(Firmware),
}

/// Why a request got no answer. Every case is normal on a school network; the driver logs it at
/// debug level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Not decodable as DHCP.
    #[error("malformed DHCP packet: {0}")]
    Malformed(String),
    /// A BOOTREPLY or a non-Ethernet client.
    #[error("not an Ethernet BOOTREQUEST")]
    NotRequest,
    /// No PXE vendor class: an ordinary DHCP client, the school's DHCP server's business.
    #[error("{0}: not a PXE client (option 60 does not start with PXEClient)")]
    NotPxeClient(Mac),
    /// A PXE client outside the running campaign: it must boot as usual.
    #[error("{0}: not in the running campaign")]
    NotInCampaign(Mac),
    /// An architecture we have no boot file for (e.g. 32-bit UEFI, ARM, UEFI HTTP boot).
    #[error("{mac}: unsupported client architecture {arch}")]
    UnsupportedArchitecture {
        /// The client.
        mac: Mac,
        /// Option 93 value.
        arch: u16,
    },
    /// A message type proxyDHCP does not answer on this port (RELEASE, INFORM, DECLINE...).
    #[error("{mac}: message type {kind} is not answered on this port")]
    MessageType {
        /// The client.
        mac: Mac,
        /// Its message type.
        kind: String,
    },
    /// A REQUEST addressed to another DHCP server (option 54).
    #[error("{mac}: REQUEST for server {server}, not us")]
    OtherServer {
        /// The client.
        mac: Mac,
        /// The server it chose.
        server: Ipv4Addr,
    },
}

/// The result of handling one request.
pub type Decision = Result<Reply, Ignored>;

/// The vendor class prefix of every PXE client (PXE spec 2.1, section 2.4, option 60).
pub(crate) const PXE_CLASS: &[u8] = b"PXEClient";
/// Option 77 user class sent by iPXE.
const IPXE_USER_CLASS: &[u8] = b"iPXE";
/// iPXE's encapsulated options (option 175) and its "no-pxedhcp" setting inside them.
const IPXE_ENCAP: u8 = 175;
const IPXE_NO_PXEDHCP: u8 = 176;
/// Option 43 contents: sub-option 6 PXE_DISCOVERY_CONTROL, length 1, value 8 (use the boot file of
/// this offer, no discovery), then END.
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

/// Decides the answer to one request that arrived on `port`.
pub fn handle(config: &ProxyConfig, port: Port, packet: &[u8]) -> Decision {
    let clean = sanitize(packet)?;
    let request = Message::from_bytes(&clean).map_err(|e| Ignored::Malformed(e.to_string()))?;
    if request.opcode() != Opcode::BootRequest || request.hlen() != 6 {
        return Err(Ignored::NotRequest);
    }
    let mac = Mac::from_slice(request.chaddr()).ok_or(Ignored::NotRequest)?;
    let opts = request.opts();
    let class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => c.as_slice(),
        _ => &[],
    };
    if !class.starts_with(PXE_CLASS) {
        return Err(Ignored::NotPxeClient(mac));
    }
    if !config.allowlist.contains(&mac) {
        return Err(Ignored::NotInCampaign(mac));
    }
    let firmware =
        firmware(&request, class).map_err(|arch| Ignored::UnsupportedArchitecture { mac, arch })?;
    let stage = if is_ipxe(&request) {
        Stage::Ipxe(firmware)
    } else {
        Stage::Firmware(firmware)
    };
    let kind = opts.msg_type();
    let (reply_type, destination) = match (port, kind) {
        (Port::Dhcp, Some(MessageType::Discover)) => {
            (MessageType::Offer, broadcast_or_relay(&request))
        }
        (Port::Dhcp, Some(MessageType::Request)) => {
            match opts.get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(s)) if *s == config.server => {}
                Some(DhcpOption::ServerIdentifier(s)) => {
                    return Err(Ignored::OtherServer { mac, server: *s });
                }
                // A REQUEST without option 54 is a renewal or INIT-REBOOT: the school server's.
                _ => {
                    return Err(Ignored::MessageType {
                        mac,
                        kind: "REQUEST without server id".into(),
                    });
                }
            }
            (MessageType::Ack, broadcast_or_relay(&request))
        }
        (Port::Pxe, Some(MessageType::Request)) => (MessageType::Ack, Destination::Sender),
        (_, other) => {
            return Err(Ignored::MessageType {
                mac,
                kind: format!("{other:?}"),
            });
        }
    };
    let message = build_reply(config, &request, mac, stage, reply_type);
    Ok(Reply {
        mac,
        stage,
        message,
        destination,
    })
}

/// What proxyDHCP learns about a PXE client of the campaign from one request it hears, answered or
/// not (the REQUEST a client sends the school's DHCP server is broadcast on port 67 too): that a boot
/// exchange starts, or which address the client takes. `net::pxe_gate` binds boot tokens to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The client.
    pub mac: Mac,
    /// What it said.
    pub kind: Sighted,
}

/// The part of a PXE client's exchange a [`Sighting`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighted {
    /// A DISCOVER: a boot exchange (firmware or iPXE) starts; no address yet.
    Discover,
    /// The address the client takes: a REQUEST's option 50 (requested address), else its
    /// `ciaddr` (port 4011 requests, renewals), else the packet's source address.
    Address(Ipv4Addr),
}

/// The [`Sighting`] in one request from `source` (the packet's source address, 0.0.0.0 for a
/// client without one): only PXE clients (option 60 `PXEClient`) of the campaign's allowlist, only
/// DISCOVERs and REQUESTs that name an address.
pub fn sighting(config: &ProxyConfig, packet: &[u8], source: Ipv4Addr) -> Option<Sighting> {
    let clean = sanitize(packet).ok()?;
    let request = Message::from_bytes(&clean).ok()?;
    if request.opcode() != Opcode::BootRequest || request.hlen() != 6 {
        return None;
    }
    let mac = Mac::from_slice(request.chaddr())?;
    let opts = request.opts();
    let pxe = matches!(opts.get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(c)) if c.starts_with(PXE_CLASS));
    if !pxe || !config.allowlist.contains(&mac) {
        return None;
    }
    let kind = match opts.msg_type() {
        Some(MessageType::Discover) => Sighted::Discover,
        Some(MessageType::Request) => {
            let requested = match opts.get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
                _ => None,
            };
            let addr = [requested, Some(request.ciaddr()), Some(source)]
                .into_iter()
                .flatten()
                .find(|a| !a.is_unspecified() && !a.is_broadcast())?;
            Sighted::Address(addr)
        }
        _ => return None,
    };
    Some(Sighting { mac, kind })
}

/// The options the handler reads, with the lengths it accepts (`None`: any length).
const READ_OPTIONS: [(u8, Option<usize>); 7] = [
    (50, Some(4)),
    (53, Some(1)),
    (54, Some(4)),
    (60, None),
    (77, None),
    (93, None),
    (97, None),
];

/// Walks the option list ourselves and passes only the options we read, with valid lengths, to
/// `dhcproto`: its decoder trusts option lengths (a property test found a `debug_assert` on option
/// 94 and reads that run past a short option), and a PXE answer needs none of the others.
pub(crate) fn sanitize(packet: &[u8]) -> Result<Vec<u8>, Ignored> {
    const FIXED: usize = 236;
    let malformed = |why: String| Err(Ignored::Malformed(why));
    if packet.len() < FIXED + 4 {
        return malformed(format!(
            "{} bytes, shorter than a BOOTP header",
            packet.len()
        ));
    }
    if packet[FIXED..FIXED + 4] != v4::MAGIC {
        return malformed("no DHCP magic cookie".into());
    }
    let mut clean = packet[..FIXED + 4].to_vec();
    let mut i = FIXED + 4;
    while i < packet.len() {
        let code = packet[i];
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = packet.get(i + 1) else {
                    return malformed(format!("option {code} at byte {i} has no length"));
                };
                let len = usize::from(len);
                let Some(data) = packet.get(i + 2..i + 2 + len) else {
                    return malformed(format!("option {code} at byte {i} runs past the end"));
                };
                let wanted = READ_OPTIONS.iter().find(|(c, _)| *c == code);
                let data = match (code, wanted) {
                    // RFC 4578: a list of 16-bit types; the first is the one that booted.
                    (93, Some(_)) if len >= 2 => &data[..2],
                    (93, Some(_)) => return malformed(format!("option 93 of length {len}")),
                    (_, Some((_, Some(fixed)))) if *fixed != len => {
                        return malformed(format!("option {code} of length {len}, want {fixed}"));
                    }
                    (_, Some(_)) => data,
                    (_, None) => {
                        i += 2 + len;
                        continue;
                    }
                };
                clean.extend_from_slice(&[code, data.len() as u8]);
                clean.extend_from_slice(data);
                i += 2 + len;
            }
        }
    }
    clean.push(255);
    Ok(clean)
}

/// Option 93 first; a PXE 2.1 client without it states its architecture in option 60
/// (`PXEClient:Arch:00000:UNDI:002001`); with neither it is a pre-RFC 4578 BIOS ROM.
pub(crate) fn firmware(request: &Message, class: &[u8]) -> Result<Firmware, u16> {
    let arch = match request.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => u16::from(*a),
        _ => class_arch(class).unwrap_or(0),
    };
    match arch {
        0 => Ok(Firmware::Bios),
        7 | 9 => Ok(Firmware::UefiX64),
        other => Err(other),
    }
}

fn class_arch(class: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(class).ok()?;
    let mut fields = text.split(':');
    while let Some(f) = fields.next() {
        if f == "Arch" {
            return fields.next()?.parse().ok();
        }
    }
    None
}

pub(crate) fn is_ipxe(request: &Message) -> bool {
    matches!(request.opts().get(OptionCode::UserClass), Some(DhcpOption::UserClass(u)) if u.as_slice() == IPXE_USER_CLASS)
}

pub(crate) fn broadcast_or_relay(request: &Message) -> Destination {
    if request.giaddr().is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Relay(request.giaddr())
    }
}

pub(crate) fn build_reply(
    config: &ProxyConfig,
    request: &Message,
    mac: Mac,
    stage: Stage,
    kind: MessageType,
) -> Message {
    let mut reply = Message::new_with_id(
        request.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        config.server,
        request.giaddr(),
        &request.chaddr()[..6],
    );
    reply
        .set_opcode(Opcode::BootReply)
        .set_flags(request.flags());
    if kind == MessageType::Ack {
        // A port-4011 ACK goes to an address the client already has.
        reply.set_ciaddr(request.ciaddr());
    }
    let file = match stage {
        Stage::Firmware(Firmware::Bios) => config.bios_boot_file.clone(),
        Stage::Firmware(Firmware::UefiX64) => config
            .secure_boot_file
            .clone()
            .unwrap_or_else(|| config.uefi_boot_file.clone()),
        Stage::Ipxe(_) => config.boot_script_url(mac),
    };
    // The BOOTP `file` field holds 128 bytes; option 67 carries longer URLs on its own.
    if file.len() < 128 {
        reply.set_fname_str(&file);
    }
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(config.server));
    opts.insert(DhcpOption::ClassIdentifier(PXE_CLASS.to_vec()));
    opts.insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    opts.insert(DhcpOption::BootfileName(file.into_bytes()));
    // PXE spec 2.1 section 2.4: a server answering a client that sent its UUID (option 97) echoes it;
    // some UEFI firmware drops replies without it.
    if let Some(DhcpOption::ClientMachineIdentifier(uuid)) =
        request.opts().get(OptionCode::ClientMachineIdentifier)
    {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    if matches!(stage, Stage::Ipxe(_)) {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(IPXE_ENCAP),
            vec![IPXE_NO_PXEDHCP, 1, 1],
        )));
    }
    reply
}

/// Decodes a DHCP message, for tests and diagnostics.
pub fn decode(packet: &[u8]) -> Result<Message, v4::DecodeError> {
    Message::from_bytes(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real packets, see tests/fixtures/dhcp/README.md.
    const BIOS_DISCOVER: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/bios-01-discover-67-ipxe.bin");
    const BIOS_REQUEST_4011: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/bios-03-request-4011-ipxe.bin");
    const UNDIONLY_DISCOVER: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/bios-04-discover-67-ipxe.bin");
    const UEFI_DISCOVER: &[u8] = include_bytes!("../tests/fixtures/dhcp/uefi-01-discover-67.bin");
    const UEFI_REQUEST_67: &[u8] = include_bytes!("../tests/fixtures/dhcp/uefi-02-request-67.bin");
    const UEFI_REQUEST_4011: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/uefi-03-request-4011.bin");
    const UEFI_IPXE_DISCOVER: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/uefi-04-discover-67-ipxe.bin");
    const UEFI_IPXE_REQUEST_4011: &[u8] =
        include_bytes!("../tests/fixtures/dhcp/uefi-06-request-4011-ipxe.bin");
    const ALL: [&[u8]; 8] = [
        BIOS_DISCOVER,
        BIOS_REQUEST_4011,
        UNDIONLY_DISCOVER,
        UEFI_DISCOVER,
        UEFI_REQUEST_67,
        UEFI_REQUEST_4011,
        UEFI_IPXE_DISCOVER,
        UEFI_IPXE_REQUEST_4011,
    ];

    const BIOS_MAC: &str = "52:54:00:18:00:00";
    const UEFI_MAC: &str = "52:54:00:18:00:07";
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn config(allowed: &[&str]) -> ProxyConfig {
        ProxyConfig {
            server: SERVER,
            bios_boot_file: "undionly.kpxe".into(),
            uefi_boot_file: "snponly.efi".into(),
            secure_boot_file: None,
            http_base: "http://198.18.0.1:8080".into(),
            allowlist: allowed.iter().map(|m| m.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn sightings_of_real_firmware_name_the_address_it_takes() {
        let uefi: Mac = UEFI_MAC.parse().unwrap();
        let none = Ipv4Addr::UNSPECIFIED;
        let seen = |p: &[u8], from| sighting(&both(), p, from).map(|s| (s.mac, s.kind));
        assert_eq!(seen(UEFI_DISCOVER, none), Some((uefi, Sighted::Discover)));
        let Some((mac, Sighted::Address(taken))) = seen(UEFI_REQUEST_67, none) else {
            panic!("a REQUEST to the school's server names the address (option 50)");
        };
        assert_eq!(mac, uefi);
        let req = decode(UEFI_REQUEST_67).unwrap();
        assert!(
            matches!(req.opts().get(OptionCode::RequestedIpAddress), Some(DhcpOption::RequestedIpAddress(a)) if *a == taken)
        );
        // Port 4011: the client already has its address (ciaddr).
        let at_4011 = decode(UEFI_REQUEST_4011).unwrap().ciaddr();
        assert!(!at_4011.is_unspecified());
        assert_eq!(
            seen(UEFI_REQUEST_4011, at_4011),
            Some((uefi, Sighted::Address(at_4011)))
        );
        assert_eq!(
            seen(UEFI_IPXE_DISCOVER, none),
            Some((uefi, Sighted::Discover))
        );
        // Outside the allowlist, or not a PXE client: nothing seen.
        assert_eq!(sighting(&config(&[BIOS_MAC]), UEFI_REQUEST_67, none), None);
        let mut plain = decode(UEFI_REQUEST_67).unwrap();
        plain.opts_mut().remove(OptionCode::ClassIdentifier);
        assert_eq!(seen(&plain.to_vec().unwrap(), none), None);
        for p in ALL {
            for cut in 0..p.len() {
                let _ = sighting(&both(), &p[..cut], none);
            }
        }
    }

    fn both() -> ProxyConfig {
        config(&[BIOS_MAC, UEFI_MAC])
    }

    fn opt(m: &Message, code: u8) -> Option<DhcpOption> {
        m.opts().get(OptionCode::from(code)).cloned()
    }

    /// Properties every reply of ours has, whatever the round.
    fn check_reply(request: &[u8], reply: &Reply, kind: MessageType) {
        let req = decode(request).unwrap();
        let m = decode(&reply.to_bytes()).expect("our reply decodes");
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), req.xid());
        assert_eq!(m.chaddr(), req.chaddr());
        assert_eq!(
            m.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "a proxy never offers an address"
        );
        assert_eq!(
            m.siaddr(),
            SERVER,
            "iPXE ignores a proxy reply without next-server"
        );
        assert_eq!(m.opts().msg_type(), Some(kind));
        assert_eq!(opt(&m, 54), Some(DhcpOption::ServerIdentifier(SERVER)));
        assert_eq!(
            opt(&m, 60),
            Some(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            opt(&m, 43),
            Some(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        let file = reply.boot_file().unwrap();
        assert_eq!(
            opt(&m, 67),
            Some(DhcpOption::BootfileName(file.into_bytes()))
        );
        if let Some(uuid) = opt(&req, 97) {
            assert_eq!(opt(&m, 97), Some(uuid), "the client UUID is echoed");
        }
    }

    #[test]
    fn uefi_firmware_discover_gets_offer_of_snponly() {
        let reply = handle(&both(), Port::Dhcp, UEFI_DISCOVER).unwrap();
        check_reply(UEFI_DISCOVER, &reply, MessageType::Offer);
        assert_eq!(reply.stage, Stage::Firmware(Firmware::UefiX64));
        assert_eq!(reply.boot_file().as_deref(), Some("snponly.efi"));
        assert_eq!(reply.destination, Destination::Broadcast);
        assert_eq!(reply.mac.to_string(), UEFI_MAC);
        assert!(
            opt(&reply.message, 175).is_none(),
            "firmware PXE gets no iPXE options"
        );
    }

    #[test]
    fn uefi_boot_file_is_configurable() {
        let mut c = both();
        c.uefi_boot_file = "ipxe.efi".into();
        let reply = handle(&c, Port::Pxe, UEFI_REQUEST_4011).unwrap();
        assert_eq!(reply.boot_file().as_deref(), Some("ipxe.efi"));
    }

    #[test]
    fn uefi_firmware_gets_the_shim_only_when_secure_boot_is_asked() {
        let mut sb = both();
        sb.secure_boot_file = Some("shimx64.efi".into());
        for (packet, port) in [(UEFI_DISCOVER, Port::Dhcp), (UEFI_REQUEST_4011, Port::Pxe)] {
            let file = |c: &ProxyConfig| handle(c, port, packet).unwrap().boot_file();
            assert_eq!(file(&sb).as_deref(), Some("shimx64.efi"));
            assert_eq!(file(&both()).as_deref(), Some("snponly.efi"));
        }
        // BIOS firmware has no Secure Boot: still iPXE.
        let mut m = decode(BIOS_DISCOVER).unwrap();
        m.opts_mut().remove(OptionCode::UserClass);
        let reply = handle(&sb, Port::Dhcp, &m.to_vec().unwrap()).unwrap();
        assert_eq!(reply.boot_file().as_deref(), Some("undionly.kpxe"));
        // An iPXE already running still gets its script.
        let reply = handle(&sb, Port::Dhcp, UEFI_IPXE_DISCOVER).unwrap();
        assert!(reply.boot_file().unwrap().ends_with(".ipxe"));
    }

    #[test]
    fn uefi_firmware_port_4011_request_gets_ack_to_sender() {
        let reply = handle(&both(), Port::Pxe, UEFI_REQUEST_4011).unwrap();
        check_reply(UEFI_REQUEST_4011, &reply, MessageType::Ack);
        assert_eq!(reply.destination, Destination::Sender);
        assert_eq!(reply.boot_file().as_deref(), Some("snponly.efi"));
    }

    #[test]
    fn ipxe_rounds_get_the_boot_script_url_and_no_pxedhcp() {
        for (packet, port, kind, mac) in [
            (UEFI_IPXE_DISCOVER, Port::Dhcp, MessageType::Offer, UEFI_MAC),
            (
                UEFI_IPXE_REQUEST_4011,
                Port::Pxe,
                MessageType::Ack,
                UEFI_MAC,
            ),
            (BIOS_DISCOVER, Port::Dhcp, MessageType::Offer, BIOS_MAC),
            (BIOS_REQUEST_4011, Port::Pxe, MessageType::Ack, BIOS_MAC),
            (UNDIONLY_DISCOVER, Port::Dhcp, MessageType::Offer, BIOS_MAC),
        ] {
            let reply = handle(&both(), port, packet).unwrap();
            check_reply(packet, &reply, kind);
            assert!(matches!(reply.stage, Stage::Ipxe(_)));
            let url = format!("http://198.18.0.1:8080/boot/{}.ipxe", mac.replace(':', "-"));
            assert_eq!(reply.boot_file(), Some(url));
            let encap = opt(&reply.message, 175).expect("option 175");
            let DhcpOption::Unknown(u) = encap else {
                panic!("{encap:?}")
            };
            assert_eq!(u.data(), &[176, 1, 1]);
        }
    }

    #[test]
    fn bios_architecture_is_recognised() {
        let reply = handle(&both(), Port::Dhcp, BIOS_DISCOVER).unwrap();
        assert_eq!(reply.stage, Stage::Ipxe(Firmware::Bios));
        // The same packet without its user class is what a plain BIOS PXE ROM sends.
        let mut m = decode(BIOS_DISCOVER).unwrap();
        m.opts_mut().remove(OptionCode::UserClass);
        let reply = handle(&both(), Port::Dhcp, &m.to_vec().unwrap()).unwrap();
        assert_eq!(reply.stage, Stage::Firmware(Firmware::Bios));
        assert_eq!(reply.boot_file().as_deref(), Some("undionly.kpxe"));
    }

    #[test]
    fn architecture_falls_back_to_option_60() {
        let mut m = decode(UEFI_DISCOVER).unwrap();
        m.opts_mut().remove(OptionCode::ClientSystemArchitecture);
        let reply = handle(&both(), Port::Dhcp, &m.to_vec().unwrap()).unwrap();
        assert_eq!(reply.stage, Stage::Firmware(Firmware::UefiX64));
    }

    #[test]
    fn unsupported_architecture_is_ignored() {
        let mut m = decode(UEFI_DISCOVER).unwrap();
        m.opts_mut()
            .insert(DhcpOption::ClientSystemArchitecture(6.into()));
        let got = handle(&both(), Port::Dhcp, &m.to_vec().unwrap());
        assert!(
            matches!(got, Err(Ignored::UnsupportedArchitecture { arch: 6, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn machines_outside_the_campaign_get_nothing() {
        for packet in ALL {
            let got = handle(&config(&["6c:4b:90:0c:a8:01"]), Port::Dhcp, packet);
            assert!(matches!(got, Err(Ignored::NotInCampaign(_))), "{got:?}");
            let got = handle(&config(&[]), Port::Pxe, packet);
            assert!(matches!(got, Err(Ignored::NotInCampaign(_))), "{got:?}");
        }
    }

    #[test]
    fn non_pxe_clients_get_nothing() {
        let mut m = decode(UEFI_DISCOVER).unwrap();
        m.opts_mut().remove(OptionCode::ClassIdentifier);
        let got = handle(&both(), Port::Dhcp, &m.to_vec().unwrap());
        assert!(matches!(got, Err(Ignored::NotPxeClient(_))), "{got:?}");
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"MSFT 5.0".to_vec()));
        let got = handle(&both(), Port::Dhcp, &m.to_vec().unwrap());
        assert!(matches!(got, Err(Ignored::NotPxeClient(_))), "{got:?}");
    }

    #[test]
    fn request_to_the_school_server_is_not_ours() {
        let got = handle(&both(), Port::Dhcp, UEFI_REQUEST_67);
        let school = Ipv4Addr::new(198, 18, 0, 2);
        assert!(
            matches!(got, Err(Ignored::OtherServer { server, .. }) if server == school),
            "{got:?}"
        );
        // The same REQUEST naming us (authoritative mode, or a client that chose our offer) is acked.
        let mut m = decode(UEFI_REQUEST_67).unwrap();
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        let reply = handle(&both(), Port::Dhcp, &m.to_vec().unwrap()).unwrap();
        assert_eq!(reply.message.opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn discover_on_port_4011_and_replies_are_ignored() {
        let got = handle(&both(), Port::Pxe, UEFI_DISCOVER);
        assert!(matches!(got, Err(Ignored::MessageType { .. })), "{got:?}");
        let reply = handle(&both(), Port::Dhcp, UEFI_DISCOVER).unwrap();
        assert_eq!(
            handle(&both(), Port::Dhcp, &reply.to_bytes()),
            Err(Ignored::NotRequest)
        );
    }

    #[test]
    fn relayed_requests_are_answered_through_the_relay() {
        let mut m = decode(UEFI_DISCOVER).unwrap();
        let relay = Ipv4Addr::new(198, 18, 5, 254);
        m.set_giaddr(relay);
        let reply = handle(&both(), Port::Dhcp, &m.to_vec().unwrap()).unwrap();
        assert_eq!(reply.destination, Destination::Relay(relay));
        assert_eq!(reply.message.giaddr(), relay);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = handle(&both(), Port::Dhcp, &bytes);
            let _ = handle(&both(), Port::Pxe, &bytes);
        }

        #[test]
        fn truncated_or_corrupted_captures_never_panic(
            which in 0usize..8, cut in 0usize..600, flip in 0usize..600, value in any::<u8>()
        ) {
            let mut bytes = ALL[which].to_vec();
            if flip < bytes.len() {
                bytes[flip] = value;
            }
            bytes.truncate(cut);
            let _ = handle(&both(), Port::Dhcp, &bytes);
            let _ = handle(&both(), Port::Pxe, &bytes);
        }
    }
}
