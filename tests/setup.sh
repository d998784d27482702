#!/usr/bin/env bash
# System setup shared by the README's two commands: installs the Debian 12 packages the tests and
# `roomcast demo` use (as root), without letting the packaged daemons start on the real interface,
# and unpacks the qemu binary and the kernel the boot tests use. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# What each package is for:
#   iproute2   network namespaces, bridges, veth, tbf rate limits (lab tests)
#   nftables   packet loss injected inside a PC namespace (lab tests)
#   iputils-ping  PCs ping the server and each other (lab tests)
#   udpcast    Debian's multicast imager, the reference the lab tests and benchmark compare against
#   util-linux losetup for tests on real block devices
#   e2fsprogs  mkfs.ext4 for realistic disk images
#   zstd       the reference compressor the image benchmark compares against
#   rclone rsync  the region benchmark's references (examples/bench_region.rs): `rclone copy` of the same
#              bytes from the same Garage cluster, rsync of the raw image file
#   time       GNU time: peak memory of the real binary on hostile YAML (tests/model/hostile.rs)
#   tcpdump, dnsmasq, busybox-static, ipxe, ipxe-qemu, seabios, qemu-system-data, ovmf, cpio and the
#              qemu libraries below: the boot tests (PXE capture, Wake-on-LAN capture, qemu end to end:
#              dnsmasq plays the school's DHCP server, qemu's iPXE ROM / OVMF are the real PXE firmware,
#              Debian's ipxe package gives undionly.kpxe / snponly.efi, busybox-static the initramfs)
boot_packages=(tcpdump dnsmasq busybox-static ipxe ipxe-qemu seabios qemu-system-data ovmf cpio
    libaio1 libasound2 libbpf1 libbrlapi0.8 libcacard0 libcap-ng0 libcapstone4 libepoxy0 libfdt1
    libfuse3-3 libgbm1 libglib2.0-0 libgmp10 libgnutls30 libibverbs1 libjpeg62-turbo libnuma1
    libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2 libseccomp2 libslirp0 libsndio7.0
    libspice-server1 liburing2 libusb-1.0-0 libusbredirparser1 libvdeplug2)
#   openssh-server openssh-client  a real sshd plays the master and the Linux PCs (steps c, d, h);
#              ssh-keygen makes the test keys
#   samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind smbclient krb5-user ldb-tools
#              a real Samba AD DC in a namespace takes the step-h joins (`net ads join` on the PCs);
#              samba-dsdb-modules is only a Recommends of samba but provisioning fails without it;
#              ldb-tools' ldbsearch tells when the DC answers
#   ntfs-3g dosfstools mtools gdisk fdisk partclone  real file systems for the file-system-aware images
#              (mkntfs/ntfscp/ntfs-3g, mkfs.vfat/mcopy, sgdisk/sfdisk) and partclone, the peer they are
#              measured against; ethtool checks Wake-on-LAN left armed
#   dmsetup    an NTFS shrunk onto a smaller disk is resized by ntfsresize on a device-mapper view of
#              its old size (issue 23); the boot environment copies the host's dmsetup (bootenv::FS_TOOLS)
#   chromium chromium-driver  the web console's tests drive a real headless browser over WebDriver
#              (tests/console/; about 1.5 min to install uncached)
#   debootstrap lintian  the Debian package test (tests/server/deb.rs): a fresh Debian 12 root to
#              install the .deb into (cached as a tarball below), and Debian's package checker
packages=(iproute2 nftables iputils-ping udpcast util-linux e2fsprogs zstd rclone rsync time "${boot_packages[@]}"
    debootstrap lintian
    ntfs-3g dosfstools mtools gdisk fdisk partclone ethtool dmsetup
    openssh-server openssh-client
    samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind smbclient krb5-user ldb-tools
    chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packaged daemons (sshd, smbd, nmbd, samba) must not start on the real interface: nmbd would
    # broadcast there. Tests start their own copies inside namespaces.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# qemu-system-x86 from bookworm conflicts with the backported qemu-utils installed here (apt would remove
# it), so its binary is unpacked into a private folder instead (see docs/BOOT.md); same for the kernel
# the boot environment uses. Both are idempotent: skipped when already unpacked.
boot_cache="${ROOMCAST_BOOT_CACHE:-/var/cache/roomcast-test}"
mkdir -p "$boot_cache"
if [ ! -x "$boot_cache/qemu/usr/bin/qemu-system-x86_64" ]; then
    (cd "$boot_cache" && rm -f qemu-system-x86_*.deb qemu-system-common_*.deb \
        && apt-get download -qq qemu-system-x86 qemu-system-common \
        && for d in qemu-system-x86_*.deb qemu-system-common_*.deb; do dpkg -x "$d" qemu; done)
fi
if ! ls "$boot_cache"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    (cd "$boot_cache" && rm -f linux-image-*.deb \
        && apt-get download -qq "$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')" \
        && dpkg -x linux-image-*.deb kernel)
fi
# The Secure Boot chain (issue 20, docs/BOOT.md "Secure Boot"): Debian's signed shim and network GRUB
# for `bootenv build --secure-boot`, and grub-efi-amd64-bin's unsigned grubnetx64.efi, which the test
# serves to prove the firmware refuses an unsigned GRUB. Downloaded and unpacked, never installed:
# their maintainer scripts would run grub-install on this machine. About 3 MB, 1 s uncached.
if [ ! -f "$boot_cache/secureboot/root/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" ]; then
    mkdir -p "$boot_cache/secureboot"
    (cd "$boot_cache/secureboot" && rm -rf ./*.deb root \
        && apt-get download -qq shim-signed grub-efi-amd64-signed grub-efi-amd64-bin \
        && for d in ./*.deb; do dpkg -x "$d" root; done)
fi
