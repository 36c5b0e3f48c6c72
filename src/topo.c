/* Topology through hwloc: how many cores this process may use, and binding a
 * worker to one of them.
 *
 * "May use" is the process's allowed cpuset (sched affinity, cgroup cpuset), not
 * the machine's core count: under `taskset -c 0-1` or a Slurm allocation the
 * default pool has as many workers as the process has cores.
 *
 * The topology is loaded once per process and kept (loading costs milliseconds);
 * a worker forked afterwards inherits it, so binding a new worker is cheap.
 *
 * Note: under valgrind, hwloc's x86 CPUID discovery misbehaves; run with
 * HWLOC_COMPONENTS=-x86 there. */
#include "internal.h"

#include <hwloc.h>
#include <unistd.h>

static pthread_once_t topo_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t topo;       /* NULL if hwloc failed */
static hwloc_bitmap_t allowed;      /* cpus this process may use, at load time */
static hwloc_obj_type_t core_type;  /* cores, or PUs where cores are unknown */
static int topo_ncores = 1;

/* The allowed cpuset of this process, restricted to what the topology knows. */
static hwloc_bitmap_t allowed_set(void)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return NULL;
    if (hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) != 0 &&
        hwloc_get_proc_cpubind(topo, getpid(), set, HWLOC_CPUBIND_PROCESS) != 0)
        hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(topo));
    hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(topo));
    if (hwloc_bitmap_iszero(set))
        hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(topo));
    return set;
}

/* The k-th core (0-based) that meets the allowed set, or NULL. With k < 0,
 * counts them into *count instead. */
static hwloc_obj_t nth_core(int k, int *count)
{
    int total = hwloc_get_nbobjs_by_type(topo, core_type), seen = 0;
    for (int i = 0; i < total; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, core_type, (unsigned)i);
        if (!o || !o->cpuset || !hwloc_bitmap_intersects(o->cpuset, allowed))
            continue;
        if (seen++ == k)
            return o;
    }
    if (count)
        *count = seen;
    return NULL;
}

static void topo_init(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    topo_ncores = online > 0 ? (int)online : 1;
    if (hwloc_topology_init(&topo) != 0) {
        topo = NULL;
        return;
    }
    if (hwloc_topology_load(topo) != 0 || !(allowed = allowed_set())) {
        hwloc_topology_destroy(topo);
        topo = NULL;
        return;
    }
    core_type = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                  : HWLOC_OBJ_PU;
    int n = 0;
    nth_core(-1, &n);
    topo_ncores = n > 0 ? n : 1;
}

int rp__topo_ncores(void)
{
    pthread_once(&topo_once, topo_init);
    return topo_ncores;
}

int rp__topo_bind(int k)
{
    pthread_once(&topo_once, topo_init);
    if (!topo)
        return RP_ESYS;
    hwloc_obj_t core = nth_core((int)((unsigned)k % (unsigned)topo_ncores), NULL);
    if (!core)
        return RP_ESYS;
    hwloc_bitmap_t target = hwloc_bitmap_dup(core->cpuset);
    if (!target)
        return RP_ENOMEM;
    hwloc_bitmap_and(target, target, allowed);
    int rc = hwloc_set_cpubind(topo, target, HWLOC_CPUBIND_PROCESS) == 0 ? RP_OK : RP_ESYS;
    hwloc_bitmap_free(target);
    return rc;
}
