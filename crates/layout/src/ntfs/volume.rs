//! The NTFS structures roomcast reads: the boot sector, MFT records (with their update-sequence
//! fixups), attributes (resident and not), attribute lists and data runs.
//!
//! Every length, offset and count read from the disk is checked before use; every loop is bounded
//! by a size read from the boot sector or by one of the limits below. A structure that does not add
//! up is [`FsError::Unsupported`] (the partition is then taken whole), never a panic.

use crate::{FsError, ReadAt};

/// Attribute types (MS-FSCC / the NTFS documentation of the Linux-NTFS project).
pub(super) const AT_ATTRIBUTE_LIST: u32 = 0x20;
pub(super) const AT_FILE_NAME: u32 = 0x30;
pub(super) const AT_VOLUME_INFORMATION: u32 = 0x70;
pub(super) const AT_DATA: u32 = 0x80;
pub(super) const AT_INDEX_ROOT: u32 = 0x90;
pub(super) const AT_INDEX_ALLOCATION: u32 = 0xA0;
pub(super) const AT_BITMAP: u32 = 0xB0;
const AT_END: u32 = 0xFFFF_FFFF;

/// Attribute flags.
const ATTR_COMPRESSION_MASK: u16 = 0x00FF;
const ATTR_ENCRYPTED: u16 = 0x4000;

/// MFT record flags.
pub(super) const MFT_RECORD_IN_USE: u16 = 0x0001;
pub(super) const MFT_RECORD_IS_DIRECTORY: u16 = 0x0002;

/// Well-known MFT records.
pub(super) const FILE_MFT: u64 = 0;
pub(super) const FILE_LOGFILE: u64 = 2;
pub(super) const FILE_VOLUME: u64 = 3;
pub(super) const FILE_ROOT: u64 = 5;
pub(super) const FILE_BITMAP: u64 = 6;
pub(super) const FILE_UPCASE: u64 = 10;

/// Update sequence arrays protect every 512-byte block of a multi-sector record, whatever the
/// sector size.
const FIXUP_BLOCK: usize = 512;

/// Data runs of one attribute, all its segments together (a badly fragmented `pagefile.sys` has
/// thousands; a million is far beyond any real file and bounds memory at 24 MB).
pub(super) const MAX_RUNS: usize = 1 << 20;
/// An attribute list larger than this is not a real one (real lists are a few KiB).
const MAX_ATTRIBUTE_LIST: u64 = 4 << 20;
/// Extension records one attribute may spread over (each holds ~100 runs: a file in 100,000
/// fragments or more is beyond what Windows writes for the files read here).
const MAX_EXTENSIONS: usize = 4096;
/// Cluster sizes Windows can format (512 B .. 2 MiB).
const MAX_CLUSTER: u64 = 2 << 20;

/// A malformed or unexpected structure: the partition is taken whole with this reason.
pub(super) fn bad(what: impl std::fmt::Display) -> FsError {
    FsError::Unsupported(format!("NTFS: {what}"))
}

pub(super) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
pub(super) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// What the boot sector says.
#[derive(Debug, Clone)]
pub(super) struct BootSector {
    pub sector_size: u64,
    pub cluster_size: u64,
    /// Sectors in the volume (the backup boot sector lies just past them).
    pub total_sectors: u64,
    pub mft_lcn: u64,
    pub mftmirr_lcn: u64,
    pub record_size: usize,
}

/// Which kind of volume a boot sector announces.
pub(super) enum BootKind {
    Ntfs(BootSector),
    BitLocker,
    Other,
}

/// Size from the boot sector's "clusters per record" byte: positive = clusters, negative = 2^-n bytes.
fn record_size(v: u8, cluster: u64) -> Option<u64> {
    let v = v as i8;
    if v > 0 {
        (v as u64).checked_mul(cluster)
    } else {
        let shift = v.unsigned_abs() as u32;
        (shift < 32).then(|| 1u64 << shift)
    }
}

/// Reads and checks the boot sector (the first 512 bytes).
pub(super) fn boot_sector(part: &dyn ReadAt) -> Result<BootKind, FsError> {
    if part.size() < 512 {
        return Ok(BootKind::Other);
    }
    let mut b = [0u8; 512];
    part.read_exact_at(&mut b, 0)?;
    match &b[3..11] {
        b"NTFS    " => {}
        b"-FVE-FS-" => return Ok(BootKind::BitLocker),
        _ => return Ok(BootKind::Other),
    }
    let sector_size = u64::from(le16(&b, 0x0B).unwrap_or(0));
    if !(256..=4096).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Err(bad(format!("boot sector: {sector_size} bytes per sector")));
    }
    let spc = b[0x0D];
    // Above 0x80 the byte is a negative power of two (clusters of 64 KiB and more).
    let sectors_per_cluster: u64 = if spc <= 0x80 {
        u64::from(spc)
    } else {
        let shift = 256 - u32::from(spc);
        if shift > 20 { 0 } else { 1 << shift }
    };
    if sectors_per_cluster == 0 || !sectors_per_cluster.is_power_of_two() {
        return Err(bad(format!(
            "boot sector: sectors per cluster byte 0x{spc:02x}"
        )));
    }
    let cluster_size = sector_size * sectors_per_cluster;
    if cluster_size > MAX_CLUSTER {
        return Err(bad(format!("boot sector: {cluster_size}-byte clusters")));
    }
    let total_sectors = le64(&b, 0x28).unwrap_or(0);
    let mft_lcn = le64(&b, 0x30).unwrap_or(0);
    let mftmirr_lcn = le64(&b, 0x38).unwrap_or(0);
    let rs = record_size(b[0x40], cluster_size).unwrap_or(0);
    if !(512..=65536).contains(&rs) || !rs.is_power_of_two() {
        return Err(bad(format!("boot sector: {rs}-byte MFT records")));
    }
    let clusters = total_sectors / sectors_per_cluster;
    if clusters == 0 || mft_lcn == 0 || mft_lcn >= clusters || mftmirr_lcn >= clusters {
        return Err(bad(format!(
            "boot sector: MFT at cluster {mft_lcn}, mirror at {mftmirr_lcn}, {clusters} clusters"
        )));
    }
    let volume_bytes = total_sectors
        .checked_mul(sector_size)
        .ok_or_else(|| bad("boot sector: volume size overflows"))?;
    if volume_bytes > part.size() {
        return Err(bad(format!(
            "the volume is {volume_bytes} bytes but its partition only {} bytes",
            part.size()
        )));
    }
    Ok(BootKind::Ntfs(BootSector {
        sector_size,
        cluster_size,
        total_sectors,
        mft_lcn,
        mftmirr_lcn,
        record_size: rs as usize,
    }))
}

/// Applies the update sequence array of a multi-sector record (`FILE` or `INDX`): checks that the
/// last two bytes of each 512-byte block carry the sequence number (else the record was torn by an
/// interrupted write) and puts back the bytes they stand for.
pub(super) fn apply_fixups(buf: &mut [u8], magic: &[u8; 4]) -> Result<(), String> {
    if buf.get(0..4) != Some(&magic[..]) {
        return Err(format!("no {} signature", String::from_utf8_lossy(magic)));
    }
    let ofs = usize::from(le16(buf, 4).unwrap_or(0));
    let count = usize::from(le16(buf, 6).unwrap_or(0));
    if count < 2 || (count - 1) * FIXUP_BLOCK != buf.len() || !ofs.is_multiple_of(2) || ofs < 8 {
        return Err(format!(
            "update sequence array ({count} entries) does not fit"
        ));
    }
    if ofs + 2 * count > FIXUP_BLOCK - 2 {
        return Err("update sequence array beyond its first block".into());
    }
    let usn = [buf[ofs], buf[ofs + 1]];
    for i in 1..count {
        let end = i * FIXUP_BLOCK;
        if buf[end - 2..end] != usn {
            return Err("incomplete multi-sector write (update sequence mismatch)".into());
        }
        let (a, b) = (buf[ofs + 2 * i], buf[ofs + 2 * i + 1]);
        buf[end - 2] = a;
        buf[end - 1] = b;
    }
    Ok(())
}

/// One run of clusters: `len` clusters from virtual cluster `vcn`, at logical cluster `lcn` on the
/// volume (`None`: a sparse run, reads as zeros, occupies nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

/// Decodes a mapping-pairs array into `out`, starting at `vcn`; returns the next VCN.
pub(super) fn decode_runs(bytes: &[u8], mut vcn: u64, out: &mut Vec<Run>) -> Result<u64, FsError> {
    let mut i = 0usize;
    let mut lcn: i64 = 0;
    loop {
        let Some(&h) = bytes.get(i) else {
            return Err(bad("data runs not terminated"));
        };
        if h == 0 {
            return Ok(vcn);
        }
        let (ln, on) = (usize::from(h & 0x0F), usize::from(h >> 4));
        if ln == 0 || ln > 8 || on > 8 {
            return Err(bad(format!("data run header 0x{h:02x}")));
        }
        let field = bytes
            .get(i + 1..i + 1 + ln + on)
            .ok_or_else(|| bad("data run beyond its attribute"))?;
        let mut len = 0u64;
        for (k, &byte) in field[..ln].iter().enumerate() {
            len |= u64::from(byte) << (8 * k);
        }
        if len == 0 || len > i64::MAX as u64 {
            return Err(bad(format!("data run of {len} clusters")));
        }
        let run_lcn = if on == 0 {
            None
        } else {
            let mut delta: i64 = 0;
            for (k, &byte) in field[ln..].iter().enumerate() {
                delta |= i64::from(byte) << (8 * k);
            }
            // Sign-extend from `on` bytes.
            if on < 8 && field[ln + on - 1] & 0x80 != 0 {
                delta |= -1i64 << (8 * on);
            }
            lcn = lcn
                .checked_add(delta)
                .filter(|&l| l >= 0)
                .ok_or_else(|| bad("data run before the start of the volume"))?;
            Some(lcn as u64)
        };
        if out.len() >= MAX_RUNS {
            return Err(bad(format!(
                "more than {MAX_RUNS} data runs in one attribute"
            )));
        }
        out.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| bad("data runs overflow"))?;
        i += 1 + ln + on;
    }
}

/// A non-resident attribute's value: where its clusters are and how long it is.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    pub runs: Vec<Run>,
    pub data_size: u64,
    pub initialized: u64,
    /// NTFS-compressed or EFS-encrypted: the clusters do not hold the bytes as they are.
    pub transformed: bool,
}

/// An attribute's value, all its segments together.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Resident(Vec<u8>),
    NonResident(Stream),
}

impl Value {
    pub fn len(&self) -> u64 {
        match self {
            Value::Resident(v) => v.len() as u64,
            Value::NonResident(s) => s.data_size,
        }
    }
}

/// One attribute record inside an MFT record, as found.
pub(super) struct Attr<'r> {
    pub ty: u32,
    /// Name, UTF-16 code units.
    pub name: Vec<u16>,
    pub flags: u16,
    pub body: Body<'r>,
}

pub(super) enum Body<'r> {
    Resident(&'r [u8]),
    NonResident {
        lowest_vcn: u64,
        highest_vcn: u64,
        runs: &'r [u8],
        compression_unit: u8,
        allocated: u64,
        data_size: u64,
        initialized: u64,
    },
}

/// An MFT record after its fixups.
pub(super) struct Record {
    pub number: u64,
    pub buf: Vec<u8>,
}

impl Record {
    pub fn flags(&self) -> u16 {
        le16(&self.buf, 0x16).unwrap_or(0)
    }
    pub fn sequence(&self) -> u16 {
        le16(&self.buf, 0x10).unwrap_or(0)
    }
    pub fn in_use(&self) -> bool {
        self.flags() & MFT_RECORD_IN_USE != 0
    }
    pub fn is_directory(&self) -> bool {
        self.flags() & MFT_RECORD_IS_DIRECTORY != 0
    }
    /// The base record this extension record belongs to (0 for a base record).
    pub fn base(&self) -> u64 {
        le64(&self.buf, 0x20).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF
    }

    /// The attribute records, in order.
    pub fn attrs(&self) -> Result<Vec<Attr<'_>>, FsError> {
        let b = &self.buf;
        let n = self.number;
        let first = usize::from(le16(b, 0x14).unwrap_or(0));
        let in_use = le32(b, 0x18).unwrap_or(0) as usize;
        if in_use > b.len() || first < 0x18 || first >= in_use {
            return Err(bad(format!("MFT record {n}: header sizes do not fit")));
        }
        let mut out = Vec::new();
        let mut at = first;
        loop {
            let ty = le32(b, at).ok_or_else(|| bad(format!("MFT record {n}: no end marker")))?;
            if ty == AT_END {
                return Ok(out);
            }
            let len = le32(b, at + 4).unwrap_or(0) as usize;
            if len < 0x18 || !len.is_multiple_of(8) || at + len > in_use {
                return Err(bad(format!(
                    "MFT record {n}: attribute 0x{ty:x} of {len} bytes"
                )));
            }
            let a = &b[at..at + len];
            let non_resident = a[8];
            let name_len = usize::from(a[9]);
            let name_ofs = usize::from(le16(a, 0x0A).unwrap_or(0));
            let name = a
                .get(name_ofs..name_ofs + 2 * name_len)
                .ok_or_else(|| bad(format!("MFT record {n}: attribute name beyond its record")))?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let flags = le16(a, 0x0C).unwrap_or(0);
            let body = if non_resident == 0 {
                let vlen = le32(a, 0x10).unwrap_or(0) as usize;
                let vofs = usize::from(le16(a, 0x14).unwrap_or(0));
                let v = a.get(vofs..vofs.saturating_add(vlen)).ok_or_else(|| {
                    bad(format!(
                        "MFT record {n}: resident value beyond its attribute"
                    ))
                })?;
                Body::Resident(v)
            } else {
                if len < 0x40 {
                    return Err(bad(format!("MFT record {n}: short non-resident attribute")));
                }
                let mp = usize::from(le16(a, 0x20).unwrap_or(0));
                let runs = a
                    .get(mp..)
                    .filter(|_| mp >= 0x40)
                    .ok_or_else(|| bad(format!("MFT record {n}: data runs beyond attribute")))?;
                Body::NonResident {
                    lowest_vcn: le64(a, 0x10).unwrap_or(0),
                    highest_vcn: le64(a, 0x18).unwrap_or(0),
                    runs,
                    compression_unit: a[0x22],
                    allocated: le64(a, 0x28).unwrap_or(0),
                    data_size: le64(a, 0x30).unwrap_or(0),
                    initialized: le64(a, 0x38).unwrap_or(0),
                }
            };
            out.push(Attr {
                ty,
                name,
                flags,
                body,
            });
            at += len;
        }
    }
}

/// An attribute list entry: where a segment of an attribute lives.
struct ListEntry {
    ty: u32,
    name: Vec<u16>,
    lowest_vcn: u64,
    record: u64,
}

fn parse_attribute_list(v: &[u8]) -> Result<Vec<ListEntry>, FsError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 0x1A <= v.len() {
        let ty = le32(v, at).unwrap_or(0);
        let len = usize::from(le16(v, at + 4).unwrap_or(0));
        if len < 0x1A || at + len > v.len() {
            return Err(bad("attribute list entry does not fit"));
        }
        let name_len = usize::from(v[at + 6]);
        let name_ofs = usize::from(v[at + 7]);
        let name = v
            .get(at + name_ofs..at + name_ofs + 2 * name_len)
            .filter(|_| name_ofs + 2 * name_len <= len)
            .ok_or_else(|| bad("attribute list name beyond its entry"))?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        out.push(ListEntry {
            ty,
            name,
            lowest_vcn: le64(v, at + 8).unwrap_or(0),
            record: le64(v, at + 0x10).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF,
        });
        at += len;
    }
    Ok(out)
}

/// An opened NTFS volume: its geometry and the runs of `$MFT`.
pub(super) struct Volume<'a> {
    pub part: &'a dyn ReadAt,
    pub boot: BootSector,
    pub clusters: u64,
    mft: Stream,
}

impl<'a> Volume<'a> {
    /// Reads `$MFT`'s own record and the runs of the MFT (following its attribute list, if the MFT
    /// is fragmented enough to have one).
    pub fn open(part: &'a dyn ReadAt, boot: BootSector) -> Result<Self, FsError> {
        let cs = boot.cluster_size;
        let clusters = boot.total_sectors / (cs / boot.sector_size);
        let mut buf = vec![0u8; boot.record_size];
        let at = boot
            .mft_lcn
            .checked_mul(cs)
            .ok_or_else(|| bad("MFT position overflows"))?;
        let mut vol = Volume {
            part,
            boot,
            clusters,
            mft: Stream {
                runs: Vec::new(),
                data_size: 0,
                initialized: 0,
                transformed: false,
            },
        };
        vol.read(at, &mut buf)?;
        apply_fixups(&mut buf, b"FILE").map_err(|e| bad(format!("MFT record 0 ($MFT): {e}")))?;
        let rec = Record {
            number: FILE_MFT,
            buf,
        };
        // Bootstrap: the segments in record 0 itself (the first one always maps the start of the
        // MFT, where the extension records of a fragmented MFT live).
        let mut runs = Vec::new();
        let mut sizes = None;
        for a in rec.attrs()? {
            if let (AT_DATA, true, Body::NonResident { .. }) = (a.ty, a.name.is_empty(), &a.body) {
                let seg = segment(&a)?;
                if seg.lowest == 0 {
                    sizes = Some((seg.allocated, seg.data_size, seg.initialized));
                }
                let mut r = Vec::new();
                decode_runs(seg.runs, seg.lowest, &mut r)?;
                runs.extend(r);
            }
        }
        runs.sort_by_key(|r| r.vcn);
        let (allocated, data_size, initialized) =
            sizes.ok_or_else(|| bad("$MFT has no unnamed non-resident $DATA attribute"))?;
        vol.mft = Stream {
            runs,
            data_size,
            initialized,
            transformed: false,
        };
        let _ = allocated;
        vol.check_runs(&vol.mft.runs, "$MFT")?;
        match vol.attribute(&rec, AT_DATA, &[])? {
            Some(Value::NonResident(s)) if !s.transformed => {
                vol.check_runs(&s.runs, "$MFT")?;
                vol.mft = s;
            }
            _ => return Err(bad("$MFT's $DATA is not a plain non-resident attribute")),
        }
        if vol.mft.data_size < 16 * vol.boot.record_size as u64 {
            return Err(bad("$MFT is shorter than its 16 system records"));
        }
        Ok(vol)
    }

    /// Reads bytes of the partition; a position outside it is a structure that does not add up.
    pub fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let end = at
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.part.size())
            .ok_or_else(|| {
                bad(format!(
                    "a structure points past the partition's end ({at})"
                ))
            })?;
        let _ = end;
        self.part.read_exact_at(buf, at)?;
        Ok(())
    }

    /// Every run of real clusters lies inside the volume.
    pub fn check_runs(&self, runs: &[Run], what: &str) -> Result<(), FsError> {
        for r in runs {
            if let Some(lcn) = r.lcn
                && lcn.checked_add(r.len).is_none_or(|e| e > self.clusters)
            {
                return Err(bad(format!(
                    "{what}: clusters {lcn}+{} beyond the volume's {}",
                    r.len, self.clusters
                )));
            }
        }
        Ok(())
    }

    /// Number of MFT records.
    pub fn record_count(&self) -> u64 {
        self.mft.data_size / self.boot.record_size as u64
    }

    /// Reads MFT record `n` and applies its fixups.
    pub fn record(&self, n: u64) -> Result<Record, FsError> {
        if n >= self.record_count() {
            return Err(bad(format!(
                "MFT record {n} beyond the MFT's {} records",
                self.record_count()
            )));
        }
        let rs = self.boot.record_size;
        let mut buf = vec![0u8; rs];
        self.read_runs(&self.mft.runs, n * rs as u64, &mut buf)?;
        apply_fixups(&mut buf, b"FILE").map_err(|e| bad(format!("MFT record {n}: {e}")))?;
        Ok(Record { number: n, buf })
    }

    /// Reads `buf.len()` bytes at byte `offset` of a run list (sparse runs read as zeros).
    pub fn read_runs(&self, runs: &[Run], offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let cs = self.boot.cluster_size;
        let mut pos = 0usize;
        while pos < buf.len() {
            let off = offset
                .checked_add(pos as u64)
                .ok_or_else(|| bad("read position overflows"))?;
            let vcn = off / cs;
            let within = off % cs;
            let i = runs.partition_point(|r| r.vcn + r.len <= vcn);
            let r = runs
                .get(i)
                .filter(|r| r.vcn <= vcn && vcn < r.vcn + r.len)
                .ok_or_else(|| bad(format!("byte {off} of an attribute is in no data run")))?;
            let left = (r.vcn + r.len - vcn)
                .checked_mul(cs)
                .map_or(u64::MAX, |b| b - within);
            let n = (buf.len() - pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            match r.lcn {
                None => buf[pos..pos + n].fill(0),
                Some(lcn) => {
                    let at = lcn
                        .checked_add(vcn - r.vcn)
                        .and_then(|c| c.checked_mul(cs))
                        .and_then(|b| b.checked_add(within))
                        .ok_or_else(|| bad("cluster position overflows"))?;
                    self.read(at, &mut buf[pos..pos + n])?;
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes of a value from `offset` (bytes past the initialized size read as
    /// zeros, as NTFS defines them).
    pub fn read_value(&self, v: &Value, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= v.len())
            .ok_or_else(|| bad("read past an attribute's end"))?;
        match v {
            Value::Resident(bytes) => {
                buf.copy_from_slice(&bytes[offset as usize..end as usize]);
            }
            Value::NonResident(s) => {
                if s.transformed {
                    return Err(bad("compressed or encrypted attribute"));
                }
                let init = s.initialized.min(s.data_size);
                let real = usize::try_from(init.saturating_sub(offset))
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.read_runs(&s.runs, offset, &mut buf[..real])?;
                buf[real..].fill(0);
            }
        }
        Ok(())
    }

    /// A whole value, refused above `max` bytes.
    pub fn read_all(&self, v: &Value, max: u64, what: &str) -> Result<Vec<u8>, FsError> {
        if v.len() > max {
            return Err(bad(format!(
                "{what} is {} bytes (at most {max} read)",
                v.len()
            )));
        }
        let mut buf = vec![0u8; v.len() as usize];
        self.read_value(v, 0, &mut buf)?;
        Ok(buf)
    }

    /// The bytes of an `$ATTRIBUTE_LIST` attribute (attribute lists do not nest: extension records
    /// have none, so following one is one level).
    fn list_value(&self, l: &Attr<'_>) -> Result<Vec<u8>, FsError> {
        match &l.body {
            Body::Resident(v) => Ok(v.to_vec()),
            Body::NonResident { .. } => {
                let s = segment(l)?;
                let mut runs = Vec::new();
                decode_runs(s.runs, 0, &mut runs)?;
                self.check_runs(&runs, "attribute list")?;
                let v = Value::NonResident(Stream {
                    runs,
                    data_size: s.data_size,
                    initialized: s.initialized,
                    transformed: false,
                });
                self.read_all(&v, MAX_ATTRIBUTE_LIST, "an attribute list")
            }
        }
    }

    /// The values of every resident attribute of type `ty` of a file, wherever its attribute list
    /// puts them (a file's `$FILE_NAME`s may sit in an extension record).
    pub fn resident_values(&self, rec: &Record, ty: u32) -> Result<Vec<Vec<u8>>, FsError> {
        let attrs = rec.attrs()?;
        let mut out: Vec<Vec<u8>> = attrs
            .iter()
            .filter(|a| a.ty == ty)
            .filter_map(|a| match a.body {
                Body::Resident(v) => Some(v.to_vec()),
                Body::NonResident { .. } => None,
            })
            .collect();
        if let Some(l) = attrs.iter().find(|a| a.ty == AT_ATTRIBUTE_LIST) {
            let mut records: Vec<u64> = parse_attribute_list(&self.list_value(l)?)?
                .into_iter()
                .filter(|e| e.ty == ty && e.record != rec.number)
                .map(|e| e.record)
                .collect();
            records.sort_unstable();
            records.dedup();
            if records.len() > MAX_EXTENSIONS {
                return Err(bad(format!(
                    "MFT record {}: attributes spread over {} records (at most {MAX_EXTENSIONS})",
                    rec.number,
                    records.len()
                )));
            }
            for n in records {
                let x = self.record(n)?;
                if !x.in_use() || x.base() != rec.number {
                    return Err(bad(format!(
                        "MFT record {}: extension record {n} does not belong to it",
                        rec.number
                    )));
                }
                for a in x.attrs()? {
                    if let (true, Body::Resident(v)) = (a.ty == ty, a.body) {
                        out.push(v.to_vec());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The value of attribute (`ty`, `name`) of a file, gathered from all its segments (through the
    /// attribute list when the record has one). `None` when the file has no such attribute.
    pub fn attribute(&self, rec: &Record, ty: u32, name: &[u16]) -> Result<Option<Value>, FsError> {
        let attrs = rec.attrs()?;
        let list = attrs.iter().find(|a| a.ty == AT_ATTRIBUTE_LIST);
        let mut segs: Vec<Seg> = Vec::new();
        let mut resident: Option<Vec<u8>> = None;
        let mut extensions: Vec<Record> = Vec::new();
        match list {
            None => {
                for a in attrs.iter().filter(|a| a.ty == ty && a.name == name) {
                    match &a.body {
                        Body::Resident(v) => resident = Some(v.to_vec()),
                        Body::NonResident { .. } => segs.push(segment(a)?),
                    }
                }
            }
            Some(l) => {
                let value = self.list_value(l)?;
                let mut entries = parse_attribute_list(&value)?;
                entries.retain(|e| e.ty == ty && e.name == name);
                entries.sort_by_key(|e| (e.lowest_vcn, e.record));
                let mut records: Vec<u64> = entries.iter().map(|e| e.record).collect();
                records.sort_unstable();
                records.dedup();
                if records.len() > MAX_EXTENSIONS {
                    return Err(bad(format!(
                        "MFT record {}: attribute 0x{ty:x} spread over {} records (at most \
                         {MAX_EXTENSIONS})",
                        rec.number,
                        records.len()
                    )));
                }
                for e in &entries {
                    if e.record != rec.number
                        && extensions
                            .binary_search_by_key(&e.record, |x| x.number)
                            .is_err()
                    {
                        let x = self.record(e.record)?;
                        if !x.in_use() || x.base() != rec.number {
                            return Err(bad(format!(
                                "MFT record {}: extension record {} does not belong to it",
                                rec.number, e.record
                            )));
                        }
                        let at = extensions.partition_point(|y| y.number < x.number);
                        extensions.insert(at, x);
                    }
                }
                for e in &entries {
                    let holder = if e.record == rec.number {
                        rec
                    } else {
                        extensions
                            .binary_search_by_key(&e.record, |x| x.number)
                            .ok()
                            .map(|i| &extensions[i])
                            .ok_or_else(|| bad("attribute list entry lost"))?
                    };
                    let held = holder.attrs()?;
                    let a = held
                        .iter()
                        .find(|a| {
                            a.ty == ty
                                && a.name == name
                                && match &a.body {
                                    Body::Resident(_) => e.lowest_vcn == 0,
                                    Body::NonResident { lowest_vcn, .. } => {
                                        *lowest_vcn == e.lowest_vcn
                                    }
                                }
                        })
                        .ok_or_else(|| {
                            bad(format!(
                                "MFT record {}: attribute 0x{ty:x} listed in record {} is not there",
                                rec.number, e.record
                            ))
                        })?;
                    match &a.body {
                        Body::Resident(v) => resident = Some(v.to_vec()),
                        Body::NonResident { .. } => segs.push(segment(a)?),
                    }
                }
            }
        }
        if let Some(v) = resident {
            if !segs.is_empty() {
                return Err(bad(format!(
                    "MFT record {}: attribute 0x{ty:x} both resident and not",
                    rec.number
                )));
            }
            return Ok(Some(Value::Resident(v)));
        }
        if segs.is_empty() {
            return Ok(None);
        }
        segs.sort_by_key(|s| s.lowest);
        let first = &segs[0];
        if first.lowest != 0 {
            return Err(bad(format!(
                "MFT record {}: attribute 0x{ty:x} has no first segment",
                rec.number
            )));
        }
        let (allocated, data_size, initialized) =
            (first.allocated, first.data_size, first.initialized);
        let transformed = first.transformed;
        let mut runs = Vec::new();
        let mut next = 0u64;
        for s in &segs {
            if s.lowest != next {
                return Err(bad(format!(
                    "MFT record {}: attribute 0x{ty:x} segments leave a gap at cluster {next}",
                    rec.number
                )));
            }
            next = decode_runs(s.runs, s.lowest, &mut runs)?;
            if next != s.highest.wrapping_add(1) {
                return Err(bad(format!(
                    "MFT record {}: attribute 0x{ty:x} runs end at {next}, its header says {}",
                    rec.number,
                    s.highest.wrapping_add(1)
                )));
            }
        }
        let mapped = next.saturating_mul(self.boot.cluster_size);
        if data_size > allocated || initialized > data_size || !transformed && data_size > mapped {
            return Err(bad(format!(
                "MFT record {}: attribute 0x{ty:x} sizes (allocated {allocated}, data {data_size}, \
                 initialized {initialized}, {next} clusters) do not add up",
                rec.number
            )));
        }
        self.check_runs(&runs, &format!("MFT record {}", rec.number))?;
        Ok(Some(Value::NonResident(Stream {
            runs,
            data_size,
            initialized,
            transformed,
        })))
    }
}

/// One non-resident segment's header fields.
struct Seg<'r> {
    lowest: u64,
    highest: u64,
    runs: &'r [u8],
    allocated: u64,
    data_size: u64,
    initialized: u64,
    transformed: bool,
}

fn segment<'r>(a: &Attr<'r>) -> Result<Seg<'r>, FsError> {
    match a.body {
        Body::NonResident {
            lowest_vcn,
            highest_vcn,
            runs,
            compression_unit,
            allocated,
            data_size,
            initialized,
        } => Ok(Seg {
            lowest: lowest_vcn,
            highest: highest_vcn,
            runs,
            allocated,
            data_size,
            initialized,
            transformed: compression_unit != 0
                || a.flags & (ATTR_COMPRESSION_MASK | ATTR_ENCRYPTED) != 0,
        }),
        Body::Resident(_) => Err(bad("expected a non-resident attribute")),
    }
}
