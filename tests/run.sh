#!/usr/bin/env bash
# The whole test suite: the README's test command, also what .ci/run calls.
# Run as root on Debian 12: it installs the system packages the tests use (network namespaces,
# nftables, loop devices, ...), then runs every test. Tests create their own namespaces, bridges
# and loop devices and remove them, also when they fail.
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
#   openssh-server openssh-client  a real sshd plays the master and the Linux PCs (steps c, d, h);
#              ssh-keygen makes the test keys
#   samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind smbclient krb5-user ldb-tools
#              a real Samba AD DC in a namespace takes the step-h joins (`net ads join` on the PCs);
#              samba-dsdb-modules is only a Recommends of samba but provisioning fails without it;
#              ldb-tools' ldbsearch tells when the DC answers
packages=(iproute2 nftables iputils-ping udpcast util-linux e2fsprogs zstd
    openssh-server openssh-client
    samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind smbclient krb5-user ldb-tools)
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

cargo test --all-targets "$@"
