/* Topology through hwloc: how many cores this process may use, and binding a
 * worker to one of them.
 *
 * "May use" is the process's allowed cpuset (sched affinity, cgroup cpuset), not
 * the machine's core count: under `taskset -c 0-1` or a Slurm allocation the
 * default pool has as many workers as the process has cores.
 *
 * Note: under valgrind, hwloc's x86 CPUID discovery misbehaves; run with
 * HWLOC_COMPONENTS=-x86 there. */
#include "internal.h"

#include <hwloc.h>
#include <unistd.h>

static pthread_once_t topo_once = PTHREAD_ONCE_INIT;
static int topo_ncores = 1;

/* The allowed cpuset of this process, restricted to what the topology knows. */
static hwloc_bitmap_t allowed_set(hwloc_topology_t topo)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return NULL;
    if (hwloc_get_proc_cpubind(topo, getpid(), set, HWLOC_CPUBIND_PROCESS) != 0 &&
        hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) != 0)
        hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(topo));
    hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(topo));
    if (hwloc_bitmap_iszero(set))
        hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(topo));
    return set;
}

/* Loads the topology; the caller destroys it. */
static int load(hwloc_topology_t *topo)
{
    if (hwloc_topology_init(topo) != 0)
        return -1;
    if (hwloc_topology_load(*topo) != 0) {
        hwloc_topology_destroy(*topo);
        return -1;
    }
    return 0;
}

/* Cores whose cpuset meets the allowed set. */
static int count_cores(hwloc_topology_t topo, hwloc_const_bitmap_t set)
{
    int type = HWLOC_OBJ_CORE;
    if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) <= 0)
        type = HWLOC_OBJ_PU;
    int total = hwloc_get_nbobjs_by_type(topo, (hwloc_obj_type_t)type);
    int n = 0;
    for (int i = 0; i < total; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, (hwloc_obj_type_t)type, (unsigned)i);
        if (o && o->cpuset && hwloc_bitmap_intersects(o->cpuset, set))
            n++;
    }
    return n;
}

static void topo_init(void)
{
    hwloc_topology_t topo;
    if (load(&topo) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        topo_ncores = n > 0 ? (int)n : 1;
        return;
    }
    hwloc_bitmap_t set = allowed_set(topo);
    int n = set ? count_cores(topo, set) : 0;
    if (set)
        hwloc_bitmap_free(set);
    hwloc_topology_destroy(topo);
    topo_ncores = n > 0 ? n : 1;
}

int rp__topo_ncores(void)
{
    pthread_once(&topo_once, topo_init);
    return topo_ncores;
}

int rp__topo_bind(int k)
{
    hwloc_topology_t topo;
    if (load(&topo) != 0)
        return RP_ESYS;
    int rc = RP_ESYS;
    hwloc_bitmap_t set = allowed_set(topo);
    if (!set)
        goto out;
    int type = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                   : HWLOC_OBJ_PU;
    int ncores = count_cores(topo, set);
    if (ncores <= 0)
        goto out_set;
    int want = (int)((unsigned)k % (unsigned)ncores);
    int total = hwloc_get_nbobjs_by_type(topo, (hwloc_obj_type_t)type);
    for (int i = 0, seen = 0; i < total; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, (hwloc_obj_type_t)type, (unsigned)i);
        if (!o || !o->cpuset || !hwloc_bitmap_intersects(o->cpuset, set))
            continue;
        if (seen++ != want)
            continue;
        hwloc_bitmap_t target = hwloc_bitmap_dup(o->cpuset);
        if (!target)
            break;
        hwloc_bitmap_and(target, target, set);
        if (hwloc_set_cpubind(topo, target, HWLOC_CPUBIND_PROCESS) == 0)
            rc = RP_OK;
        hwloc_bitmap_free(target);
        break;
    }
out_set:
    hwloc_bitmap_free(set);
out:
    hwloc_topology_destroy(topo);
    return rc;
}
