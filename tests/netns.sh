#!/bin/sh
# The mpi backend across two hosts, simulated on this machine: two network
# namespaces joined by a veth pair, each with its own hostname (UTS namespace).
# mpirun runs on "host A" and starts the ranks of "host B" through a launch agent
# (--mca plm_rsh_agent) that enters B's namespaces, as ssh would log in to a node.
# Ranks talk TCP over the veth only. The program maps items with chunksize 1 and
# the test passes when both hosts did work and every item is right.
#
# Then the link goes down for 10 s in the middle of a map (the veth is set down):
# with RP_MPI_STRANDED_TIMEOUT=2 the items held by host B's ranks must be handed to
# host A's workers, and the map must end with every item right, within the
# deadline + 2 s of the ideal, before the link is back (mpi_hosts outage). The
# items handed over are counted from the master's trace (RP_DEBUG).
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

id=$$
nsa=rpA$id
nsb=rpB$id
# a /24 private to this run
net=10.$((100 + id % 100)).$((id / 100 % 250))
ipa=$net.1
ipb=$net.2
work=$(mktemp -d "${TMPDIR:-/tmp}/rp-netns.XXXXXX") || exit 99

cleanup() {
    for ns in $nsa $nsb; do
        for pid in $(ip netns pids $ns 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null
        done
        ip netns del $ns 2>/dev/null
    done
    ip link del va$id 2>/dev/null # a veth not moved into a namespace yet
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# setup CMD...: one step of building the two hosts. Where the machine cannot take
# it, the test is skipped with the command's own complaint as the reason.
setup() {
    out=$("$@" 2>&1) || skip "cannot build the namespaces here: '$*' failed: $(echo "$out" | head -n 1)"
}

setup ip netns add $nsa
setup ip netns add $nsb
setup ip link add va$id type veth peer name vb$id
setup ip link set va$id netns $nsa
setup ip link set vb$id netns $nsb
setup ip -n $nsa addr add $ipa/24 dev va$id
setup ip -n $nsb addr add $ipb/24 dev vb$id
for ns in $nsa $nsb; do
    setup ip -n $ns link set lo up
done
setup ip -n $nsa link set va$id up
setup ip -n $nsb link set vb$id up
setup ip netns exec $nsa unshare --uts true

# The launch agent: called by mpirun as `agent HOST COMMAND...`, it runs the
# command (a shell command line, as ssh would) in the namespaces of HOST.
cat >"$work/agent" <<EOF
#!/bin/sh
host=\$1
shift
case \$host in
$ipa|rp-host-a) ns=$nsa name=rp-host-a ;;
$ipb|rp-host-b) ns=$nsb name=rp-host-b ;;
*) echo "agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec \$ns unshare --uts sh -c 'hostname "\$0"; eval "\$*"' \$name "\$@"
EOF
chmod +x "$work/agent"
printf '%s slots=2\n%s slots=2\n' $ipa $ipb >"$work/hosts"

# Host A runs mpirun (4 ranks over both hosts); it reaches B over TCP on the veth
# subnet only. mpirun_on_a OUT ARGS...: ARGS are mpirun's further arguments (more
# -x, the program and its arguments); its output goes to OUT.
mpirun_on_a() {
    out=$1
    shift
    ip netns exec $nsa unshare --uts sh -c '
        hostname rp-host-a
        mpirun=$1 hosts=$2 agent=$3 subnet=$4
        shift 4
        exec timeout 120 "$mpirun" --allow-run-as-root --oversubscribe --bind-to none \
            -np 4 --hostfile "$hosts" \
            --mca plm_rsh_agent "$agent" \
            --mca btl tcp,self --mca btl_tcp_if_include "$subnet" \
            --mca oob_tcp_if_include "$subnet" \
            -x RP_BACKEND=mpi -x PATH "$@"' \
        sh "$MPIRUN" "$work/hosts" "$work/agent" "$net.0/24" "$@" >"$out" 2>&1
}
mpirun_on_a "$work/out" "$prog" 2
rc=$?
cat "$work/out"
[ $rc -eq 0 ] || { echo "netns: mpirun failed ($rc)"; exit 1; }
grep -q 'rp-host-a' "$work/out" && grep -q 'rp-host-b' "$work/out" ||
    { echo "netns: work was not done on both hosts"; exit 1; }
echo "netns: work done on both hosts over TCP ($net.0/24)"

# ---- the link down for 10 s mid-map ----------------------------------------------
mark=$work/mark
deadline=2
(
    while [ ! -e "$mark" ]; do sleep 0.1; done
    sleep 0.5
    ip -n $nsa link set va$id down && touch "$mark.down"
    sleep 10
    ip -n $nsa link set va$id up && touch "$mark.up"
) &
cutter=$!
mpirun_on_a "$work/out2" -x RP_DEBUG=1 -x RP_MPI_STRANDED_TIMEOUT=$deadline \
    -x RP_TEST_MARK="$mark" "$prog" outage $deadline
rc=$?
wait $cutter
ip -n $nsa link set va$id up 2>/dev/null
grep -v 'rankpool\[' "$work/out2"
grep 'RP_MPI_STRANDED_TIMEOUT\|stranded batch\|answered again\|runs again' "$work/out2"
[ $rc -eq 0 ] || { echo "netns: the map across the outage failed ($rc)"; exit 1; }
moved=$(sed -n 's/.*handed to other workers (\([0-9]*\) in all).*/\1/p' "$work/out2" | tail -n 1)
[ "${moved:-0}" -gt 0 ] || { echo "netns: no item was handed to the other host"; exit 1; }
echo "netns: link down 10 s mid-map: $moved items handed from host B to host A, every item right"
exit 0
