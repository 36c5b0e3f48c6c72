/* Node leaders (RP_MPI_LEADERS, doc/mpi.md "Node leaders"): where each worker lives.
 *
 * Without leaders, worker w lives on serving rank 1 + w % nranks and is the
 * (w / nranks)-th worker there. With leaders, the workers that this places on the
 * serving ranks of one node all live on the node's leader, its lowest serving
 * rank, numbered there in the order of their worker numbers; the node's other
 * ranks host none. Each leader finds its node's ranks (rp__mpi_node_leader, a
 * collective every rank takes part in) and hosts the workers placed on them; the
 * master learns each worker's rank and its index there (its tag) from the
 * start-up answers, which each rank gives for its workers in order. */
#include "backend_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RP_MPI_LEADERS=auto on a pool over several nodes: from this many ranks on the
 * master's node (measured over TCP between nodes: doc/mpi.md) */
#define LEADERS_AUTO_NODE_RANKS 8

bool rp__mpi_leaders_wanted(int nranks, int nworkers)
{
    const char *v = getenv("RP_MPI_LEADERS");
    if (v && (!strcmp(v, "0") || !strcmp(v, "off")))
        return false;
    if (v && (!strcmp(v, "1") || !strcmp(v, "on")))
        return true;
    if (v && *v && strcmp(v, "auto"))
        rp__trace("mpi: RP_MPI_LEADERS=%s is not 1, 0 or auto: auto", v);
    /* auto: where leaders were measured to win (doc/mpi.md, "Node leaders"), and
     * one leader can host every worker of the pool: on one node, the pool and
     * this node have LEADERS_AUTO_RANKS ranks or more (the master included); on
     * several (the pool has more ranks than this node runs: the others' messages
     * cross the network), this node runs LEADERS_AUTO_NODE_RANKS or more */
    int lrank, local = 0;
    rp__local_rank_size(&lrank, &local);
    bool nodes = local > 0 && nranks + 1 > local;
    bool on = nworkers <= RANK_WORKERS_MAX &&
              (nodes ? local >= LEADERS_AUTO_NODE_RANKS
                     : nranks + 1 >= LEADERS_AUTO_RANKS && local >= LEADERS_AUTO_RANKS);
    rp__trace("mpi: RP_MPI_LEADERS auto: %d serving ranks, %d ranks on this node%s, %d workers: "
              "node leaders %s", nranks, local, nodes ? " of several" : "", nworkers,
              on ? "on" : "off");
    return on;
}

int rp__mpi_node_leader(MPI_Comm comm, int nranks, int *leader, bool **members)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    *leader = INT_MAX;
    *members = NULL;
    MPI_Comm node = MPI_COMM_NULL;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) !=
        MPI_SUCCESS)
        return RP_EMPI;
    int mine = rank >= 1 && rank <= nranks ? rank : INT_MAX;
    int rc = MPI_Allreduce(&mine, leader, 1, MPI_INT, MPI_MIN, node) == MPI_SUCCESS
                 ? RP_OK : RP_EMPI;
    /* the node's ranks, by their number in comm: no more collectives (a rank
     * failing here alone answers for no worker, which the master reports) */
    int n = 0;
    MPI_Comm_size(node, &n);
    int *in = malloc((size_t)n * sizeof *in), *out = malloc((size_t)n * sizeof *out);
    bool *on = calloc((size_t)size, sizeof *on);
    MPI_Group ng = MPI_GROUP_NULL, cg = MPI_GROUP_NULL;
    if (rc == RP_OK && (!in || !out || !on))
        rc = RP_ENOMEM;
    if (rc == RP_OK) {
        for (int i = 0; i < n; i++)
            in[i] = i;
        if (MPI_Comm_group(node, &ng) != MPI_SUCCESS ||
            MPI_Comm_group(comm, &cg) != MPI_SUCCESS ||
            MPI_Group_translate_ranks(ng, n, in, cg, out) != MPI_SUCCESS)
            rc = RP_EMPI;
    }
    for (int i = 0; rc == RP_OK && i < n; i++)
        if (out[i] >= 0 && out[i] < size)
            on[out[i]] = true;
    if (ng != MPI_GROUP_NULL)
        MPI_Group_free(&ng);
    if (cg != MPI_GROUP_NULL)
        MPI_Group_free(&cg);
    MPI_Comm_free(&node);
    free(in);
    free(out);
    if (rc != RP_OK)
        free(on);
    else
        *members = on;
    return rc;
}

int rp__mpi_leader_workers(const bool *members, int nranks, int nworkers, int *ids)
{
    int n = 0;
    for (int w = 0; w < nworkers; w++)
        if (members[1 + w % nranks]) {
            if (ids)
                ids[n] = w;
            n++;
        }
    return n;
}

int rp__mpi_rank_lists(struct mpi_pool *mp)
{
    int *first = calloc((size_t)mp->size + 1, sizeof *first);
    int *list = malloc((size_t)(mp->nworkers > 0 ? mp->nworkers : 1) * sizeof *list);
    if (!first || !list) {
        free(first);
        free(list);
        return RP_ENOMEM;
    }
    for (int i = 0; i < mp->nworkers; i++)
        first[mp->w[i].rank + 1]++;
    for (int rk = 0; rk < mp->size; rk++)
        first[rk + 1] += first[rk];
    int *at = malloc((size_t)mp->size * sizeof *at);
    if (!at) {
        free(first);
        free(list);
        return RP_ENOMEM;
    }
    memcpy(at, first, (size_t)mp->size * sizeof *at);
    for (int i = 0; i < mp->nworkers; i++)
        list[at[mp->w[i].rank]++] = i;
    free(at);
    free(mp->rank_first);
    free(mp->rank_wlist);
    mp->rank_first = first;
    mp->rank_wlist = list;
    return RP_OK;
}

int rp__mpi_server_leaders(struct server *sv)
{
    if (!(sv->hello.flags & RP__HELLO_LEADERS))
        return RP_OK;
    sv->bundling = !sv->inproc; /* (the master asks for leaders only then) */
    int nranks = (int)sv->hello.nranks, nworkers = (int)sv->hello.nworkers, leader;
    bool *members = NULL;
    int rc = rp__mpi_node_leader(sv->comm, nranks, &leader, &members);
    sv->nlead = 0;
    if (rc == RP_OK && leader == sv->rank) {
        int n = rp__mpi_leader_workers(members, nranks, nworkers, NULL);
        sv->lead_ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *sv->lead_ids);
        if (sv->lead_ids) {
            sv->nlead = rp__mpi_leader_workers(members, nranks, nworkers, sv->lead_ids);
            rp__trace("mpi: rank %d leads its node: %d workers", sv->rank, sv->nlead);
        } else {
            rc = RP_ENOMEM;
        }
    }
    free(members);
    return rc;
}
