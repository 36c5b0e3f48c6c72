/* Where this process sits among the processes of its node, as its launcher says:
 * the node-local rank and the number of ranks on the node.
 *
 * mpirun sets OMPI_COMM_WORLD_LOCAL_RANK/SIZE. srun sets neither: it gives
 * SLURM_LOCALID (the task's index on its node) and the layout of the step's tasks
 * over its nodes, SLURM_STEP_TASKS_PER_NODE (or SLURM_TASKS_PER_NODE) such as
 * "4(x2),3", of which SLURM_NODEID picks this node's entry (SLURM_NTASKS_PER_NODE
 * when the layout is missing). Environment only: callable in a forked worker,
 * before or without MPI. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

/* A non-negative decimal integer from the environment, or -1. */
static long env_count(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return errno == 0 && *end == '\0' && n >= 0 ? n : -1;
}

/* Entry `node` of a Slurm layout "a(xN),b,...", or -1. */
static long layout_entry(const char *layout, long node)
{
    const char *p = layout;
    while (p && *p) {
        char *end;
        long count = strtol(p, &end, 10), reps = 1;
        if (end == p || count < 0)
            return -1;
        if (end[0] == '(' && end[1] == 'x') {
            reps = strtol(end + 2, &end, 10);
            if (reps < 1 || *end != ')')
                return -1;
            end++;
        }
        if (*end != ',' && *end != '\0')
            return -1;
        if (node < reps)
            return count;
        node -= reps;
        p = *end ? end + 1 : end;
    }
    return -1;
}

int rp__local_rank_size(int *rank, int *size)
{
    long r = env_count("OMPI_COMM_WORLD_LOCAL_RANK");
    long s = env_count("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (r < 0 || s < 1) {
        r = env_count("SLURM_LOCALID");
        long node = env_count("SLURM_NODEID");
        const char *layout = getenv("SLURM_STEP_TASKS_PER_NODE");
        if (!layout)
            layout = getenv("SLURM_TASKS_PER_NODE");
        s = layout && node >= 0 ? layout_entry(layout, node) : -1;
        if (s < 1)
            s = env_count("SLURM_NTASKS_PER_NODE");
    }
    if (r < 0 || s < 1 || r >= s || s > INT_MAX)
        return RP_EINVAL;
    *rank = (int)r;
    *size = (int)s;
    return RP_OK;
}
