# Simulated hosts on one machine, for tests/netns.sh and bench/nodes.sh (sourced,
# POSIX sh; needs root, ip and unshare). Each host is a network namespace with its
# own hostname (a UTS namespace entered per command): rp-host-a, rp-host-b, ...
# Two hosts are joined by a veth pair; three or more by veth pairs to a bridge
# in a namespace of its own (the switch). mpirun runs on host a and starts the
# ranks of the others through a launch agent (--mca plm_rsh_agent) that enters
# their namespaces, as ssh would log in to a node. Ranks of different hosts talk
# TCP over the veths only; ranks of one host as the btl list says.
#
#   hosts_build N SLOTS WORK   N hosts (2-8), SLOTS ranks each in WORK/hosts;
#                              WORK/agent. Returns 1 with the reason in hosts_why
#                              where the machine cannot take it.
#   hosts_cleanup              kills every process of the hosts, deletes them
#   hosts_mpirun OUT SECONDS ARGS...
#                              mpirun on host a (-np hosts_np, default N x SLOTS,
#                              btl hosts_btl, default tcp,self), output to OUT,
#                              killed after SECONDS; ARGS: more mpirun arguments,
#                              the program and its arguments.
# After hosts_build: hosts_net (the /24, without .0), hosts_ns_X and hosts_if_X
# (namespace and interface of host X, X = a, b, ...).
hosts_id=$$
hosts_net=10.$((100 + hosts_id % 100)).$((hosts_id / 100 % 250))
hosts_all=
hosts_btl=${hosts_btl:-tcp,self}

hosts_step() {
    hosts_out=$("$@" 2>&1) && return 0
    hosts_why="cannot build the namespaces here: '$*' failed: $(echo "$hosts_out" | head -n 1)"
    return 1
}

hosts_cleanup() {
    for hosts_x in $hosts_all; do
        hosts_ns=rp$hosts_x$hosts_id
        for hosts_pid in $(ip netns pids "$hosts_ns" 2>/dev/null); do
            kill -9 "$hosts_pid" 2>/dev/null
        done
        ip netns del "$hosts_ns" 2>/dev/null
        ip link del "v$hosts_x$hosts_id" 2>/dev/null # a veth not moved yet
    done
    hosts_all=
}

hosts_build() {
    hosts_n=$1 hosts_slots=$2 hosts_work=$3
    hosts_np=$((hosts_n * hosts_slots))
    hosts_list=$(echo a b c d e f g h | cut -d' ' -f1-"$hosts_n")
    [ "$hosts_n" -ge 3 ] && hosts_all=s
    hosts_all="$hosts_all $hosts_list"
    [ "$hosts_n" -lt 3 ] || {
        hosts_step ip netns add rps$hosts_id &&
            hosts_step ip -n rps$hosts_id link add br$hosts_id type bridge &&
            hosts_step ip -n rps$hosts_id link set br$hosts_id up
    } || return 1
    : >"$hosts_work/hosts"
    hosts_case=
    hosts_i=0
    for hosts_x in $hosts_list; do
        hosts_i=$((hosts_i + 1))
        hosts_ns=rp$hosts_x$hosts_id hosts_if=v$hosts_x$hosts_id hosts_ip=$hosts_net.$hosts_i
        eval "hosts_ns_$hosts_x=$hosts_ns hosts_if_$hosts_x=$hosts_if"
        hosts_step ip netns add "$hosts_ns" || return 1
        if [ "$hosts_n" -ge 3 ]; then
            hosts_step ip link add "$hosts_if" type veth peer name "w$hosts_x$hosts_id" &&
                hosts_step ip link set "w$hosts_x$hosts_id" netns rps$hosts_id &&
                hosts_step ip -n rps$hosts_id link set "w$hosts_x$hosts_id" master br$hosts_id &&
                hosts_step ip -n rps$hosts_id link set "w$hosts_x$hosts_id" up || return 1
        elif [ "$hosts_x" = a ]; then
            hosts_step ip link add "$hosts_if" type veth peer name "vb$hosts_id" || return 1
        fi
        hosts_step ip link set "$hosts_if" netns "$hosts_ns" &&
            hosts_step ip -n "$hosts_ns" addr add "$hosts_ip/24" dev "$hosts_if" &&
            hosts_step ip -n "$hosts_ns" link set lo up &&
            hosts_step ip -n "$hosts_ns" link set "$hosts_if" up || return 1
        hosts_case="$hosts_case$hosts_ip|rp-host-$hosts_x) ns=$hosts_ns name=rp-host-$hosts_x ;;
"
        echo "$hosts_ip slots=$hosts_slots" >>"$hosts_work/hosts"
    done
    hosts_step ip netns exec "$hosts_ns_a" unshare --uts true || return 1
    # the launch agent: called by mpirun as `agent HOST COMMAND...`, it runs the
    # command (a shell command line, as ssh would) in the namespaces of HOST
    cat >"$hosts_work/agent" <<EOF
#!/bin/sh
host=\$1
shift
case \$host in
$hosts_case*) echo "agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec \$ns unshare --uts sh -c 'hostname "\$0"; eval "\$*"' \$name "\$@"
EOF
    chmod +x "$hosts_work/agent"
}

hosts_mpirun() {
    hosts_o=$1 hosts_t=$2
    shift 2
    ip netns exec "$hosts_ns_a" unshare --uts sh -c '
        hostname rp-host-a
        mpirun=$1 hosts=$2 agent=$3 subnet=$4 np=$5 btl=$6 t=$7
        shift 7
        exec timeout "$t" "$mpirun" --allow-run-as-root --oversubscribe --bind-to none \
            -np "$np" --hostfile "$hosts" \
            --mca plm_rsh_agent "$agent" \
            --mca btl "$btl" --mca btl_tcp_if_include "$subnet" \
            --mca oob_tcp_if_include "$subnet" \
            -x RP_BACKEND=mpi -x PATH "$@"' \
        sh "${MPIRUN:-mpirun}" "$hosts_work/hosts" "$hosts_work/agent" "$hosts_net.0/24" \
        "$hosts_np" "$hosts_btl" "$hosts_t" "$@" >"$hosts_o" 2>&1
}
