#!/bin/busybox sh
# roomcast boot environment: PID 1 of the initramfs a PC of the campaign PXE-boots into.
# Brings the network up, reads roomcast.server / roomcast.token from the kernel command line, then
# with roomcast.image=1 (set by `roomcast serve --image`) runs `roomcast-agent`, which restores the
# image onto the disk (roomcast.disk=, default the first virtio/SATA/NVMe disk) and reports; with
# roomcast.capture=1 (step f of a campaign) runs `roomcast-agent --capture`, which uploads the disk;
# without either, reports the hardware facts. Either way the PC powers off afterwards.
# The keys are the agent<->server contract's (roomcast_proto::contract::cmdline); @CONTRACT@ is the
# contract version of the agent built into this initramfs (replaced by `roomcast bootenv build`).
contract=@CONTRACT@
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "roomcast: boot environment up"
# Debian's kernel has virtio as modules; load order matters.
kdir=/lib/modules/$(uname -r)
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk; do
    f=$(find "$kdir" -name "$m.ko" 2>/dev/null | head -n 1)
    [ -n "$f" ] && insmod "$f" 2>/dev/null
done
for k in $(cat /proc/cmdline); do
    case "$k" in
        roomcast.server=*) server=${k#roomcast.server=} ;;
        roomcast.token=*) token=${k#roomcast.token=} ;;
        roomcast.mac=*) bootmac=${k#roomcast.mac=} ;;
        roomcast.image=*) image=${k#roomcast.image=} ;;
        roomcast.capture=*) capture=${k#roomcast.capture=} ;;
        roomcast.disk=*) disk=${k#roomcast.disk=} ;;
        roomcast.contract=*) server_contract=${k#roomcast.contract=} ;;
    esac
done
# The interface that PXE-booted, by MAC; else the first Ethernet one.
iface=""
for n in /sys/class/net/*; do
    name=${n##*/}
    [ "$name" = lo ] && continue
    [ -z "$iface" ] && iface=$name
    [ "$(cat "$n/address")" = "$bootmac" ] && iface=$name
done
[ -n "$server_contract" ] && [ "$server_contract" != "$contract" ] \
    && echo "roomcast: this boot environment speaks contract $contract, the server $server_contract: rebuild it (roomcast bootenv build)"
ip link set lo up
ip link set "$iface" up
udhcpc -i "$iface" -s /etc/udhcpc.script -q -n -t 10 -T 1 || echo "roomcast: DHCP failed on $iface"
if [ "$image" = 1 ] || [ "$capture" = 1 ]; then
    if [ -z "$disk" ]; then
        for b in /sys/block/vd? /sys/block/sd? /sys/block/nvme?n?; do
            [ -e "$b" ] && { disk=/dev/${b##*/}; break; }
        done
    fi
    if [ "$capture" = 1 ]; then
        echo "roomcast: agent capturing $disk"
        set -- --capture
        done="roomcast: image captured"
    else
        echo "roomcast: agent restoring onto $disk"
        set --
        done="roomcast: image written"
    fi
    if roomcast-agent "$@" --server "$server" --token "$token" --disk "$disk"; then
        echo "$done"
    else
        echo "roomcast: agent failed (exit $?)"
    fi
    sync
    poweroff -f
fi
val() { [ -r "$1" ] && tr -d '"\\\n' < "$1"; }
macs=""
for n in /sys/class/net/*; do
    [ "${n##*/}" = lo ] && continue
    macs="$macs${macs:+,}\"$(cat "$n/address")\""
done
disks=""
for b in /sys/block/*; do
    case "${b##*/}" in loop*|ram*) continue ;; esac
    disks="$disks${disks:+,}{\"name\":\"${b##*/}\",\"bytes\":$(( $(cat "$b/size") * 512 ))}"
done
report="{\"mac\":\"$bootmac\",\"vendor\":\"$(val /sys/class/dmi/id/sys_vendor)\",\"model\":\"$(val /sys/class/dmi/id/product_name)\",\"serial\":\"$(val /sys/class/dmi/id/product_serial)\",\"macs\":[$macs],\"disks\":[$disks],\"kernel\":\"$(uname -r)\",\"uptime\":\"$(cut -d' ' -f1 /proc/uptime)\"}"
echo "roomcast: report $report"
wget -q -O - --header "X-Roomcast-Token: $token" --header "X-Roomcast-Contract: $contract" --post-data "$report" "$server/agent/report" \
    && echo "roomcast: report accepted" || echo "roomcast: report refused"
sync
poweroff -f
