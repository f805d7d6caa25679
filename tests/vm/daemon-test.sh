#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Guest script for the vm-daemon tests (see tests.cmake): runs the real
# coherencyd on the real kernel and vmm-client against it, once per policy
# mode, in one boot. busybox sh.
#
# Arguments: on|off (QEMU's snoop-control) and the modes to run (default:
# enable automatic force-disable). For each mode:
#   - writes /etc/coherencyd/coherencyd.conf ([Broker] RevokeKill=yes,
#     ReleaseTimeoutSec=1) and /etc/coherencyd/policy.d/50-vmm.policy
#     (User=65534: Access=allow, Mode=<mode>); any other uid gets the default,
#     deny;
#   - starts coherencyd --platform linux --config /etc/coherencyd
#     --socket /run/coh.sock, with its sandbox (privilege separation: the main
#     process as the user coherencyd, which this script adds to the guest's
#     /etc/passwd as systemd-sysusers would, with no capability; its helper
#     root with CAP_KILL alone; a seccomp filter each); should that fail to
#     start in the guest, says why and runs this and the remaining modes with
#     --no-sandbox (the test then still fails the "sandbox" check, so the
#     fallback never goes unnoticed); checks the two processes ("privsep");
#   - waits (vmm-client --wait-socket: bounded polling, gives up at once when
#     the daemon exits) until the socket answers;
#   - runs vmm-client (root: the oracle, the operator, SIGKILL; it forks the
#     unprivileged VMMs), whose lines are printed prefixed with "[<mode>] ";
#   - SIGTERMs the daemon and checks that it exits 0 within 60 s.
# Exits 0 when every check of every mode passed.
set -u

snoop=$1
shift
modes=${*:-enable automatic force-disable}
sock=/run/coh.sock
confdir=/etc/coherencyd
conf=$confdir/coherencyd.conf
policy=$confdir/policy.d/50-vmm.policy
sandbox=1
failed=0
summary=

# "CHECK name ok|FAIL detail", prefixed with the mode.
say() {
        echo "[$mode] CHECK $1 $2 $3"
        [ "$2" = ok ] || failed=1
}

# What each of the daemon's processes runs as (README "Processes"): the main
# process $1 as coherencyd with nothing, its only child (the privileged
# helper) as root with CAP_KILL (RevokeKill=yes) alone, both with
# no_new_privs and a seccomp filter.
check_processes() {
        st() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "/proc/$1/status"; }
        helper=$(tr -d ' \n' <"/proc/$1/task/$1/children")
        want_uid=$(awk -F: '$1 == "coherencyd" { print $3 }' /etc/passwd)
        got="main $1: Uid $(st "$1" Uid | awk '{ print $1 }') CapEff $(st "$1" CapEff) CapPrm $(st "$1" CapPrm) NoNewPrivs $(st "$1" NoNewPrivs) Seccomp $(st "$1" Seccomp); helper ${helper:-none}: Uid $(st "$helper" Uid | awk '{ print $1 }') CapEff $(st "$helper" CapEff) CapPrm $(st "$helper" CapPrm) NoNewPrivs $(st "$helper" NoNewPrivs) Seccomp $(st "$helper" Seccomp)"
        want="main $1: Uid $want_uid CapEff 0000000000000000 CapPrm 0000000000000000 NoNewPrivs 1 Seccomp 2; helper $helper: Uid 0 CapEff 0000000000000020 CapPrm 0000000000000020 NoNewPrivs 1 Seccomp 2"
        if [ -n "$helper" ] && [ -n "$want_uid" ] && [ "$got" = "$want" ]; then
                say privsep ok "($got)"
        else
                say privsep FAIL "(got: $got; want: $want)"
        fi
}

# Prints the daemon's stderr, indented, prefixed with the mode.
show_log() {
        [ -s "$1" ] && sed "s/^/[$mode] coherencyd: /" "$1"
}

# Waits at most 60 s (a loaded host slows the emulated guest tenfold) for the
# daemon (a child of this shell) to exit; sets rc
# to its exit status, or "timeout" after killing it.
reap() {
        i=0
        while [ $i -lt 6000 ]; do
                state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)
                if [ -z "$state" ] || [ "$state" = Z ]; then
                        wait "$1"
                        rc=$?
                        return
                fi
                i=$((i + 1))
                sleep 0.01
        done
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        rc=timeout
}

# Starts the daemon for $mode; sets pid. Returns non-zero when it does not answer.
start_daemon() {
        log=/tmp/coherencyd-$mode.log
        rm -f "$sock"
        if [ $sandbox -eq 1 ]; then
                coherencyd --platform linux --config $confdir --socket $sock 2>"$log" &
        else
                coherencyd --platform linux --config $confdir --socket $sock --no-sandbox 2>"$log" &
        fi
        pid=$!
        vmm-client --wait-socket $sock --daemon-pid $pid --timeout 90 >/tmp/wait.out
        rc=$?
        sed "s/^/[$mode] /" /tmp/wait.out
        return $rc
}

mkdir -p $confdir/policy.d
# The user the daemon's main process becomes, as the shipped sysusers.d file makes it on a
# host (systemd-sysusers); the guest has no user database of its own.
if ! grep -q '^coherencyd:' /etc/passwd 2>/dev/null; then
        echo 'coherencyd:x:999:999:coherencyd:/:/sbin/nologin' >>/etc/passwd
        echo 'coherencyd:x:999:' >>/etc/group
fi
for mode in $modes; do
        echo "[$mode] === kernel $COH_KVER, snoop-control=$snoop, Mode=$mode ==="
        cat >$conf <<CONF
# written by daemon-test.sh
[Broker]
RevokeKill=yes
ReleaseTimeoutSec=1
CONF
        cat >$policy <<POLICY
# written by daemon-test.sh: the test's VMMs (uid 65534) may have devices
[Match]
User=65534

[Policy]
Access=allow
Mode=$mode
POLICY

        if ! start_daemon; then
                reap "$pid"
                if [ $sandbox -eq 1 ]; then
                        say sandbox FAIL "(coherencyd with its sandbox did not come up, exit $rc: $(tr '\n' ' ' <"$log"); falling back to --no-sandbox)"
                        sandbox=0
                        start_daemon || {
                                reap "$pid"
                                show_log "$log"
                                say daemon.start FAIL "(coherencyd --no-sandbox did not come up either, exit $rc)"
                                summary="$summary $mode:not-started"
                                continue
                        }
                else
                        show_log "$log"
                        say daemon.start FAIL "(coherencyd --no-sandbox did not come up, exit $rc)"
                        summary="$summary $mode:not-started"
                        continue
                fi
        fi
        if [ $sandbox -eq 1 ]; then
                say sandbox ok "(coherencyd pid $pid runs with its sandbox: privileges dropped, seccomp filters)"
                check_processes "$pid"
        fi

        vmm-client --socket $sock --snoop "$snoop" --mode "$mode" --policy $policy \
                --slot "$COH_EDU_SLOT" --group "$COH_EDU_GROUP" --tracefs "$COH_TRACEFS" \
                --daemon-pid $pid --daemon-log "$log" >/tmp/client.out 2>&1
        crc=$?
        sed "s/^/[$mode] /" /tmp/client.out
        if [ $crc -ne 0 ]; then
                failed=1
                summary="$summary $mode:FAIL"
        else
                summary="$summary $mode:ok"
        fi

        # The daemon keeps device facts between requests and drops them on the kernel's
        # uevents (daemon/facts-cache.h): unbound from vfio-pci, the device is no longer
        # one it hands out, and bound again it is, without a restart. Once, in the first mode.
        if [ "$mode" = "${modes%% *}" ]; then
                dev=/sys/bus/pci/devices/$COH_EDU_SLOT
                before=$(vmm-client --socket $sock --probe "$COH_EDU_SLOT")
                echo "$COH_EDU_SLOT" >/sys/bus/pci/drivers/vfio-pci/unbind
                unbound=$(vmm-client --socket $sock --probe "$COH_EDU_SLOT")
                echo "$COH_EDU_SLOT" >/sys/bus/pci/drivers_probe
                rebound=$(vmm-client --socket $sock --probe "$COH_EDU_SLOT")
                drv=$(basename "$(readlink "$dev/driver")")
                ok=1
                case "$before" in *": error "*) ok=0 ;; esac
                case "$unbound" in *": error "*) ;; *) ok=0 ;; esac
                [ "$rebound" = "$before" ] && [ "$drv" = vfio-pci ] || ok=0
                if [ $ok -eq 1 ]; then
                        say facts.rebind ok "(bound: $before; unbound: $unbound; bound again: $rebound)"
                else
                        say facts.rebind FAIL "(bound: $before; unbound: $unbound; bound again: $rebound; driver now $drv)"
                fi
        fi

        kill -TERM $pid
        reap $pid
        show_log "$log"
        if [ "$rc" = 0 ]; then
                say daemon.sigterm ok "(exit 0)"
        else
                say daemon.sigterm FAIL "(exit $rc, want 0)"
        fi
done

echo "daemon-test: kernel $COH_KVER snoop-control=$snoop sandbox=$([ $sandbox -eq 1 ] && echo on || echo off):$summary"
exit $failed
