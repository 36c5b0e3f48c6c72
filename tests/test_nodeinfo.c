/* The node-local rank and size (src/nodeinfo.c), from mpirun's and srun's
 * environment. `test_nodeinfo --print` prints what this process gets instead,
 * for tests/slurm.sh to run under a real srun. */
#include "testutil.h"

#include <stdlib.h>

#include "internal.h"

static const char *vars[] = { "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
                              "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_TASKS_PER_NODE",
                              "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE" };

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* rank and size of the current environment, or -1/-1 */
static void get(int *r, int *s)
{
    *r = *s = -1;
    rp__local_rank_size(r, s);
}

static void test_nodeinfo_mpirun(void)
{
    int r, s;
    clear_env();
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
    setenv("SLURM_LOCALID", "0", 1); /* mpirun inside a Slurm job: mpirun's word wins */
    setenv("SLURM_NTASKS_PER_NODE", "1", 1);
    get(&r, &s);
    CU_ASSERT_EQUAL(r, 2);
    CU_ASSERT_EQUAL(s, 3);
}

static void test_nodeinfo_srun_layout(void)
{
    int r, s;
    clear_env();
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_TASKS_PER_NODE", "4(x2),3", 1);
    const struct { const char *node; int size; } c[] = { { "0", 4 }, { "1", 4 }, { "2", 3 } };
    for (size_t i = 0; i < 3; i++) {
        setenv("SLURM_NODEID", c[i].node, 1);
        get(&r, &s);
        CU_ASSERT_EQUAL(r, 1);
        CU_ASSERT_EQUAL(s, c[i].size);
    }
    /* the step's layout, where srun gives one, over the job's */
    setenv("SLURM_STEP_TASKS_PER_NODE", "2,5", 1);
    setenv("SLURM_NODEID", "1", 1);
    get(&r, &s);
    CU_ASSERT_EQUAL(s, 5);
}

static void test_nodeinfo_srun_ntasks_per_node(void)
{
    int r, s;
    clear_env();
    setenv("SLURM_LOCALID", "3", 1);
    setenv("SLURM_NTASKS_PER_NODE", "8", 1);
    get(&r, &s);
    CU_ASSERT_EQUAL(r, 3);
    CU_ASSERT_EQUAL(s, 8);
}

/* Nothing usable: RP_EINVAL and both outputs untouched. */
static void test_nodeinfo_unknown(void)
{
    const char *bad[][4] = {
        /* LOCALID, NODEID, TASKS_PER_NODE, NTASKS_PER_NODE */
        { NULL, NULL, NULL, NULL },
        { "0", NULL, NULL, NULL },
        { "x", "0", "2", NULL },
        { "2", "0", "2", NULL },           /* rank beyond the size */
        { "0", "3", "4(x2),3", NULL },     /* no such node */
        { "0", "0", "4(x", NULL },
        { "0", "0", "(x2)", NULL },
        { "0", "0", "4(y2)", NULL },
        { "0", NULL, NULL, "0" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clear_env();
        const char *names[] = { "SLURM_LOCALID", "SLURM_NODEID", "SLURM_TASKS_PER_NODE",
                                "SLURM_NTASKS_PER_NODE" };
        for (int k = 0; k < 4; k++)
            if (bad[i][k])
                setenv(names[k], bad[i][k], 1);
        int r = -7, s = -7;
        CU_ASSERT_EQUAL(rp__local_rank_size(&r, &s), RP_EINVAL);
        CU_ASSERT(r == -7 && s == -7);
    }
    clear_env();
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1); /* half of mpirun's pair */
    int r = -7, s = -7;
    CU_ASSERT_EQUAL(rp__local_rank_size(&r, &s), RP_EINVAL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print") == 0) {
        int r, s;
        if (rp__local_rank_size(&r, &s) != RP_OK) {
            printf("local rank unknown\n");
            return 1;
        }
        printf("local rank %d of %d\n", r, s);
        return 0;
    }
    static const tu_test tests[] = {
        TU_TEST(test_nodeinfo_mpirun),
        TU_TEST(test_nodeinfo_srun_layout),
        TU_TEST(test_nodeinfo_srun_ntasks_per_node),
        TU_TEST(test_nodeinfo_unknown),
        TU_END
    };
    return tu_run("nodeinfo", tests, argc, argv);
}
