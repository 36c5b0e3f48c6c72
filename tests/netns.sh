#!/bin/sh
# The mpi backend across two hosts, simulated on this machine: two network
# namespaces joined by a veth pair, each with its own hostname (UTS namespace).
# mpirun runs on "host A" and starts the ranks of "host B" through a launch agent
# (--mca plm_rsh_agent) that enters B's namespaces, as ssh would log in to a node.
# Ranks talk TCP over the veth only (tests/hosts.sh builds the hosts). The
# program maps items with chunksize 1 and the test passes when both hosts did
# work and every item is right.
#
# Then the link goes down for 10 s in the middle of a map (the veth is set down):
# with RP_MPI_STRANDED_TIMEOUT=2 the items held by host B's ranks must be handed to
# host A's workers, and the map must end with every item right, within the
# deadline + 2 s of the ideal, before the link is back (mpi_hosts outage). The
# items handed over are counted from the master's trace (RP_DEBUG).
#
# Last, RP_MPI_LEADERS=auto across the hosts: none with 2 ranks a host, one leader
# a host with 8 (LEADERS_AUTO_NODE_RANKS in src/mpi/leader.c), the map right.
#
# Exit 77 (skip), saying why, where the namespaces cannot be made or entered (not
# root, no ip/unshare, a container without CAP_SYS_ADMIN/CAP_NET_ADMIN, a chroot
# whose / is not a mount point so that `ip netns exec` cannot make it a slave).
# A failure of the MPI run itself, or a wrong result, is a failure (exit 1).
top_builddir=${top_builddir:-.}
MPIRUN=${MPIRUN:-mpirun}
prog=$top_builddir/tests/mpi_hosts

skip() {
    echo "netns: $*: skipped"
    exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null 2>&1 || skip "no ip command"
command -v unshare >/dev/null 2>&1 || skip "no unshare command"
command -v "$MPIRUN" >/dev/null 2>&1 || skip "no $MPIRUN"
[ -x "$prog" ] || { echo "netns: $prog is not built"; exit 99; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rp-netns.XXXXXX") || exit 99
. "$(dirname "$0")/hosts.sh"
cleanup() {
    hosts_cleanup
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
hosts_build 2 2 "$work" || skip "$hosts_why"
net=$hosts_net

# Host A runs mpirun (4 ranks over both hosts); it reaches B over TCP on the veth
# subnet only. mpirun_on_a OUT ARGS...: ARGS are mpirun's further arguments (more
# -x, the program and its arguments); its output goes to OUT.
mpirun_on_a() {
    o=$1
    shift
    hosts_mpirun "$o" 120 "$@"
}
# both_hosts OUT WHAT: the map of OUT ran on both hosts (mpi_hosts' counts)
both_hosts() {
    grep -q '^  rp-host-a ' "$1" && grep -q '^  rp-host-b ' "$1" ||
        { echo "netns: $2: work was not done on both hosts"; exit 1; }
}
mpirun_on_a "$work/out" -x RP_DEBUG=1 "$prog" 2
rc=$?
grep -v 'rankpool\[' "$work/out"
[ $rc -eq 0 ] || { echo "netns: mpirun failed ($rc)"; exit 1; }
both_hosts "$work/out" "2 ranks a host"
grep -q 'RP_MPI_LEADERS auto: 3 serving ranks, 2 ranks on this node of several, 3 workers: node leaders off' \
    "$work/out" || { echo "netns: 2 ranks a host: RP_MPI_LEADERS=auto did not choose no leaders"; exit 1; }
echo "netns: work done on both hosts over TCP ($net.0/24), no node leaders"

# ---- the link down for 10 s mid-map ----------------------------------------------
mark=$work/mark
deadline=2
(
    while [ ! -e "$mark" ]; do sleep 0.1; done
    sleep 0.5
    ip -n $hosts_ns_a link set $hosts_if_a down && touch "$mark.down"
    sleep 10
    ip -n $hosts_ns_a link set $hosts_if_a up && touch "$mark.up"
) &
cutter=$!
mpirun_on_a "$work/out2" -x RP_DEBUG=1 -x RP_MPI_STRANDED_TIMEOUT=$deadline \
    -x RP_TEST_MARK="$mark" "$prog" outage $deadline
rc=$?
wait $cutter
ip -n $hosts_ns_a link set $hosts_if_a up 2>/dev/null
grep -v 'rankpool\[' "$work/out2"
grep 'RP_MPI_STRANDED_TIMEOUT\|stranded batch\|answered again\|runs again' "$work/out2"
[ $rc -eq 0 ] || { echo "netns: the map across the outage failed ($rc)"; exit 1; }
moved=$(sed -n 's/.*handed to other workers (\([0-9]*\) in all).*/\1/p' "$work/out2" | tail -n 1)
[ "${moved:-0}" -gt 0 ] || { echo "netns: no item was handed to the other host"; exit 1; }
echo "netns: link down 10 s mid-map: $moved items handed from host B to host A, every item right"

# ---- node leaders chosen automatically across hosts -------------------------------
# With RP_MPI_LEADERS unset (auto), a pool over several hosts with 8 ranks on the
# master's host has node leaders (2 ranks a host, above, has none): each host's
# leader hosts its host's workers, and the map runs on both, every item right.
sed 's/slots=.*/slots=8/' "$work/hosts" >"$work/hosts8" && mv "$work/hosts8" "$work/hosts"
hosts_np=16
mpirun_on_a "$work/out3" -x RP_DEBUG=1 "$prog" 2
rc=$?
grep -v 'rankpool\[' "$work/out3"
[ $rc -eq 0 ] || { echo "netns: 8 ranks a host: mpirun failed ($rc)"; exit 1; }
both_hosts "$work/out3" "8 ranks a host"
grep -q 'RP_MPI_LEADERS auto: 15 serving ranks, 8 ranks on this node of several, 15 workers: node leaders on' \
    "$work/out3" || { echo "netns: 8 ranks a host: RP_MPI_LEADERS=auto did not choose node leaders"; exit 1; }
grep -q 'rank 1 leads its node: 7 workers' "$work/out3" &&
    grep -q 'rank 8 leads its node: 8 workers' "$work/out3" ||
    { echo "netns: 8 ranks a host: not one leader a host (ranks 1 and 8)"; exit 1; }
echo "netns: 8 ranks a host: node leaders chosen (ranks 1 and 8), work done on both hosts"
exit 0
