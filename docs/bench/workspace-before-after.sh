#!/usr/bin/env bash
# Issue 13's before/after figures, same machine, same run, interleaved (docs/PERFORMANCE.md,
# "Workspace: before and after"). Run as root after `bash tests/setup.sh`:
#   git worktree add /tmp/before 65c7f93        # the last single-crate commit
#   bash docs/bench/workspace-before-after.sh /tmp/before .
# Prints: the initramfs `bootenv build` makes from each tree's debug binaries (stripped by it), the
# time of `cargo build` after a one-line edit of a file in cli/ and of one in the protocol code (and
# after reverting it), twice each, and the qemu PXE boot test's "VM start to the last report".
set -u
B=$(realpath "$1"); A=$(realpath "$2")
K=${ROOMCAST_KERNEL_DIR:-/var/cache/roomcast-test/kernel}
export ROOMCAST_QEMU=${ROOMCAST_QEMU:-/var/cache/roomcast-test/qemu/usr/bin/qemu-system-x86_64}
export ROOMCAST_KERNEL_DIR=$K
declare -A DIR=([before]=$B [after]=$A)
declare -A CLI=([before]=$B/src/cli/plan.rs [after]=$A/src/cli/plan.rs)
declare -A PROTO=([before]=$B/src/proto/mcast/rate.rs [after]=$A/crates/proto/src/mcast/rate.rs)
out=$(mktemp -d)
for t in before after; do (cd "${DIR[$t]}" && cargo build -q --all-targets); done
echo "== initramfs (debug binaries, stripped by bootenv build)"
for t in before after; do
  (cd "${DIR[$t]}" && target/debug/roomcast bootenv build --out "$out/boot-$t" --kernel-dir "$K") \
    | grep initrd | sed "s/^/$t /"
done
echo "== cargo build (dev) after a one-line edit, then after reverting it"
for round in 1 2; do
  for t in before after; do
    for which in cli proto; do
      if [ $which = cli ]; then f=${CLI[$t]}; else f=${PROTO[$t]}; fi
      for step in edit revert; do
        if [ $step = edit ]; then
          printf '\n#[allow(dead_code)]\nfn measured_edit() {}\n' >> "$f"
        else
          python3 -c "import sys;p=sys.argv[1];s=open(p).read();open(p,'w').write(s[:s.rindex('\n#[allow(dead_code)]')])" "$f"
        fi
        s=$(date +%s.%N); (cd "${DIR[$t]}" && cargo build -q); e=$(date +%s.%N)
        echo "round $round $t $which $step $(echo "$e - $s" | bc) s (load $(cut -d' ' -f1 /proc/loadavg))"
      done
    done
  done
done
echo "== qemu PXE boot + restore: VM start to the last report"
for round in 1 2; do
  for t in before after; do
    (cd "${DIR[$t]}" && cargo test -q --test main boot::pxe::campaign_pc_pxe_boots_and_restores_the_image \
      -- --nocapture 2>&1 | grep 'pxe_room:' | sed "s/^/round $round $t /")
  done
done
rm -rf "$out"
