#!/bin/busybox sh
# roomcast boot environment: PID 1 of the initramfs a PC of the campaign PXE-boots into.
# `roomcast-agent pc` does the PC's work, configured by the kernel command line: it loads the drivers
# the hardware asks for (modalias -> modules.alias/modules.dep), takes the network card whose MAC
# booted (roomcast.mac= or BOOTIF=), waits for its link, runs DHCP (retried), arms Wake-on-LAN, then
# with roomcast.image=1 restores the image onto the system disk (roomcast.sysdisk= rule, else the
# one internal disk; roomcast.disk= forces one) and reports; with roomcast.capture=1 uploads the
# disk. Every failure is shown on the screen and reported when the network is up; the PC then waits
# roomcast.wait= seconds (default 60). Without a mode, the agent only brings the network up and this
# script reports the hardware facts. Either way the PC powers off afterwards.
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
for k in $(cat /proc/cmdline); do
    case "$k" in
        roomcast.server=*) server=${k#roomcast.server=} ;;
        roomcast.token=*) token=${k#roomcast.token=} ;;
        roomcast.mac=*) bootmac=${k#roomcast.mac=} ;;
        roomcast.image=*) image=${k#roomcast.image=} ;;
        roomcast.capture=*) capture=${k#roomcast.capture=} ;;
        roomcast.disk=*) disk=${k#roomcast.disk=} ;;
        roomcast.contract=*) server_contract=${k#roomcast.contract=} ;;
        roomcast.sysdisk=*) sysdisk=${k#roomcast.sysdisk=} ;;
        roomcast.wait=*) wait=${k#roomcast.wait=} ;;
    esac
done
[ -n "$server_contract" ] && [ "$server_contract" != "$contract" ] \
    && echo "roomcast: this boot environment speaks contract $contract, the server $server_contract: rebuild it (roomcast bootenv build)"
if [ "$image" = 1 ] || [ "$capture" = 1 ]; then
    if [ "$capture" = 1 ]; then
        echo "roomcast: agent capturing ${disk:-the system disk}${sysdisk:+ ($sysdisk)}"
        done="roomcast: image captured"
    else
        echo "roomcast: agent restoring onto ${disk:-the system disk}${sysdisk:+ ($sysdisk)}"
        done="roomcast: image written"
    fi
    if roomcast-agent pc; then
        echo "$done"
    else
        echo "roomcast: agent failed (exit $?)"
    fi
    sync
    poweroff -f
fi
if ! roomcast-agent pc; then
    sync
    poweroff -f
fi
iface=$(cat /run/roomcast.iface)
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
report="{\"mac\":\"$bootmac\",\"interface\":\"$iface\",\"vendor\":\"$(val /sys/class/dmi/id/sys_vendor)\",\"model\":\"$(val /sys/class/dmi/id/product_name)\",\"serial\":\"$(val /sys/class/dmi/id/product_serial)\",\"macs\":[$macs],\"disks\":[$disks],\"kernel\":\"$(uname -r)\",\"uptime\":\"$(cut -d' ' -f1 /proc/uptime)\"}"
echo "roomcast: report $report"
wget -q -O - --header "X-Roomcast-Token: $token" --header "X-Roomcast-Contract: $contract" --post-data "$report" "$server/agent/report" \
    && echo "roomcast: report accepted" || echo "roomcast: report refused"
sync
poweroff -f
