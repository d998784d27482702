//! The signed boot chain for PCs that boot with Secure Boot on (`bootenv build --secure-boot`,
//! issue 20): Debian's shim (package `shim-signed`, signed by Microsoft's UEFI CA), Debian's GRUB
//! for network boot (`grub-efi-amd64-signed`'s `grubnetx64.efi.signed`, signed by Debian) and the
//! Debian-signed kernel the boot environment already uses. Nothing is signed here: every binary is
//! Debian's as shipped, checked to carry an Authenticode signature (the PE's security directory).
//!
//! Layout in the boot root, as Debian's own netboot installer has it: the firmware fetches
//! [`SHIM`] by TFTP (proxyDHCP names it), shim fetches [`GRUB`] from the same TFTP folder, and
//! Debian's `grubnetx64` (prefix `/grub`, root `(tftp,<next server>)`, no `http` module: under
//! Secure Boot it cannot load one) reads [`GRUB_CFG`], which sources the machine's own
//! configuration `boot/<mac>.grub`. That one is not a file: the TFTP service asks the boot
//! service, whose PXE gate decides as for `/boot/<mac>.ipxe` (`net::pxe_gate`), so the token goes
//! to the address proxyDHCP saw the PC take, once per boot.

use super::{BootEnvError, io};
use std::path::Path;

/// The shim's name in the boot root: what proxyDHCP hands UEFI clients under Secure Boot.
pub const SHIM: &str = "shimx64.efi";
/// The name shim looks for beside itself (its `DEFAULT_LOADER`).
pub const GRUB: &str = "grubx64.efi";
/// Where Debian's `grubnetx64.efi` looks for its configuration (its embedded prefix is `/grub`).
pub const GRUB_CFG: &str = "grub/grub.cfg";
/// Where the packages put the signed binaries, relative to the root they were unpacked into
/// (`/` when installed; a `dpkg -x` folder otherwise).
pub const SHIM_IN_PACKAGE: &str = "usr/lib/shim/shimx64.efi.signed";
/// See [`SHIM_IN_PACKAGE`].
pub const GRUB_IN_PACKAGE: &str = "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";

/// The static GRUB configuration: everything per machine comes from the gate.
const GRUB_CFG_TEXT: &str = include_str!("../../templates/boot/grub.cfg");

/// Whether `root` holds the chain (`bootenv build --secure-boot`); the error names the boot
/// folder, the missing file and the command that makes it. Checked before PXE is served with
/// Secure Boot, not discovered by a PC at night.
pub fn check_boot_root(root: &crate::net::files::BootRoot) -> Result<(), String> {
    for name in [SHIM, GRUB, GRUB_CFG] {
        root.resolve(name).map_err(|e| {
            format!(
                "Secure Boot: {}: {e} (roomcast bootenv build --secure-boot)",
                root.path().display()
            )
        })?;
    }
    Ok(())
}

/// What the chain's build wrote into the boot root.
#[derive(Debug, Clone)]
pub struct SignedChain {
    /// The certificate names in each binary's signature, for the build's output: (file, names).
    pub signers: Vec<(String, String)>,
}

/// Copies the signed shim and GRUB from `packages` (a root the packages `shim-signed` and
/// `grub-efi-amd64-signed` are installed or unpacked into) to `out`, writes the static GRUB
/// configuration, and checks that they and `kernel` carry a signature.
pub fn install(packages: &Path, out: &Path, kernel: &Path) -> Result<SignedChain, BootEnvError> {
    let chain = [
        (SHIM_IN_PACKAGE, SHIM, "shim-signed"),
        (GRUB_IN_PACKAGE, GRUB, "grub-efi-amd64-signed"),
    ];
    for (inside, _, package) in chain {
        let from = packages.join(inside);
        if !from.is_file() {
            return Err(BootEnvError::Tool {
                step: "--secure-boot",
                detail: format!(
                    "{}: missing (Debian package {package}, not installed under {}: \
                     `apt-get download {package}`, `dpkg -x` it into a folder, give that \
                     folder as --secure-boot-dir)",
                    from.display(),
                    packages.display()
                ),
            });
        }
    }
    let mut signers = Vec::new();
    for (inside, name, _) in chain {
        let from = packages.join(inside);
        let bytes = std::fs::read(&from).map_err(io("reading a signed binary", &from))?;
        signers.push((name.to_string(), signer(&from, &bytes)?));
        let to = out.join(name);
        std::fs::write(&to, &bytes).map_err(io("writing a signed binary", &to))?;
    }
    let bytes = std::fs::read(kernel).map_err(io("reading the kernel", kernel))?;
    signers.push(("vmlinuz".into(), signer(kernel, &bytes)?));
    let cfg = out.join(GRUB_CFG);
    if let Some(dir) = cfg.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the GRUB folder", dir))?;
    }
    std::fs::write(&cfg, GRUB_CFG_TEXT).map_err(io("writing the GRUB configuration", &cfg))?;
    Ok(SignedChain { signers })
}

/// The names (`CN=`) of the certificates in `bytes`' Authenticode signature, as far as a plain
/// scan finds them, or an error naming `path` when the PE has no security
/// directory: an unsigned binary would only be refused by the PC's firmware at night.
fn signer(path: &Path, bytes: &[u8]) -> Result<String, BootEnvError> {
    let unsigned = |why: &str| BootEnvError::Tool {
        step: "--secure-boot",
        detail: format!(
            "{}: {why}: Secure Boot firmware will refuse it",
            path.display()
        ),
    };
    let (offset, size) = security_directory(bytes).ok_or_else(|| unsigned("not a PE image"))?;
    if size == 0 {
        return Err(unsigned(
            "no Authenticode signature (empty security directory)",
        ));
    }
    let cert = bytes
        .get(offset..offset.saturating_add(size))
        .ok_or_else(|| unsigned("security directory past the end of the file"))?;
    let mut names: Vec<String> = Vec::new();
    for n in common_names(cert) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(names.join(", "))
}

/// The PE's security directory (data directory 4: file offset and size of the certificate
/// table), `None` when `bytes` is not a PE32+ image.
pub fn security_directory(bytes: &[u8]) -> Option<(usize, usize)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    if bytes.get(..2)? != b"MZ" {
        return None;
    }
    let pe = u32_at(0x3c)? as usize;
    if bytes.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let optional = pe + 24;
    // PE32+ (0x20b): the data directories start 112 bytes into the optional header.
    if u16_at(optional)? != 0x20b {
        return None;
    }
    let count = u32_at(optional + 108)?;
    if count < 5 {
        return Some((0, 0));
    }
    let dir = optional + 112 + 4 * 8;
    Some((u32_at(dir)? as usize, u32_at(dir + 4)? as usize))
}

/// The printable values after each commonName OID (2.5.4.3) in DER bytes.
fn common_names(der: &[u8]) -> Vec<String> {
    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = der[i..].windows(CN.len()).position(|w| w == CN) {
        let v = i + at + CN.len();
        if let (Some(_tag), Some(&len)) = (der.get(v), der.get(v + 1))
            && let Some(text) = der.get(v + 2..v + 2 + usize::from(len))
            && len < 0x80
        {
            out.push(String::from_utf8_lossy(text).into_owned());
        }
        i = v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ header with `dirs` data directories, the security one set to `sec`.
    fn pe(sec: (u32, u32), tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let dir = opt + 112 + 32;
        b[dir..dir + 4].copy_from_slice(&sec.0.to_le_bytes());
        b[dir + 4..dir + 8].copy_from_slice(&sec.1.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn a_signed_pe_names_its_signer_and_an_unsigned_one_is_refused_by_name() {
        let mut cert = vec![0x30, 0x10];
        cert.extend_from_slice(&[0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 4]);
        cert.extend_from_slice(b"CA 1");
        cert.extend_from_slice(&[0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 6]);
        cert.extend_from_slice(b"Signer");
        let signed = pe((0x200, cert.len() as u32), &cert);
        assert_eq!(signer(Path::new("x.efi"), &signed).unwrap(), "CA 1, Signer");
        let unsigned = pe((0, 0), &[]);
        let e = signer(Path::new("/boot/grubx64.efi"), &unsigned)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/boot/grubx64.efi") && e.contains("no Authenticode signature"),
            "{e}"
        );
        let e = signer(Path::new("y"), b"not a PE").unwrap_err().to_string();
        assert!(e.contains("not a PE image"), "{e}");
        let cut = pe((0x200, 4096), &cert);
        assert!(signer(Path::new("z"), &cut).is_err());
    }

    #[test]
    fn a_boot_root_without_the_chain_is_refused_naming_the_file_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::net::files::BootRoot::new(dir.path()).unwrap();
        let e = check_boot_root(&root).unwrap_err();
        assert!(
            e.contains(SHIM) && e.contains("bootenv build --secure-boot"),
            "{e}"
        );
        for name in [SHIM, GRUB] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let e = check_boot_root(&root).unwrap_err();
        assert!(e.contains(GRUB_CFG), "{e}");
        std::fs::create_dir(dir.path().join("grub")).unwrap();
        std::fs::write(dir.path().join(GRUB_CFG), GRUB_CFG_TEXT).unwrap();
        assert_eq!(check_boot_root(&root), Ok(()));
    }

    #[test]
    fn missing_packages_are_named_with_the_file_and_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let e = install(dir.path(), dir.path(), Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(SHIM_IN_PACKAGE) && e.contains("shim-signed"),
            "{e}"
        );
        let shim = dir.path().join(SHIM_IN_PACKAGE);
        std::fs::create_dir_all(shim.parent().unwrap()).unwrap();
        std::fs::write(&shim, pe((0, 0), &[])).unwrap();
        let e = install(dir.path(), dir.path(), Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(GRUB_IN_PACKAGE) && e.contains("grub-efi-amd64-signed"),
            "{e}"
        );
    }
}
