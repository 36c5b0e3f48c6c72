/* A program linked without a GNU build-id (-Wl,--build-id=none), built twice from
 * this file: tests/mpi_nobid (FACTOR 3) and tests/mpi_nobid_other (FACTOR 5), so
 * that both have their task `scale` at the same offset (checked below).
 *
 *   mpi_nobid same          on every rank: the map works (the ranks run the same
 *                           program, proven without a build-id)
 *   mpi_nobid other : mpi_nobid_other   (MPMD, tests/mpi-np2.sh): the serving rank
 *                           runs the other program; the map must fail with
 *                           RP_EFNREF, never run the other program's `scale`.
 * Exit status 0 when the map did what was expected. */
#define _GNU_SOURCE 1
#include "rankpool_mpi.h"

#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef FACTOR
#define FACTOR 3
#endif

static int scale(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = *(const int *)in * FACTOR;
    return 0;
}

struct self {
    uintptr_t offset;  /* scale's offset from the main program's load address */
    int       has_id;  /* the main program has a GNU build-id note */
};

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    struct self *s = data;
    s->offset = (uintptr_t)scale - (uintptr_t)info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            if (nh->n_type == NT_GNU_BUILD_ID)
                s->has_id = 1;
            p += sizeof *nh + ((nh->n_namesz + 3) & ~3u) + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1; /* the first object is the main program */
}

int main(int argc, char **argv)
{
    int provided, rank;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    struct self me = { 0, 0 }, peer = { 0, 0 };
    dl_iterate_phdr(find_self, &me);
    /* the test means something only if both programs lack a build-id and put
     * their task at the same offset */
    unsigned long mine[2] = { me.offset, (unsigned long)me.has_id }, other[2];
    MPI_Sendrecv(mine, 2, MPI_UNSIGNED_LONG, rank ? 0 : 1, 5, other, 2, MPI_UNSIGNED_LONG,
                 rank ? 0 : 1, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    peer.offset = other[0];
    peer.has_id = (int)other[1];
    int setup_ok = !me.has_id && !peer.has_id && me.offset == peer.offset;

    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_nobid: pool: %s: %s\n", rp_strerror(rc), err.message);
        MPI_Finalize();
        return 1;
    }
    int status = 0;
    if (rp_pool_is_master(pool)) {
        bool same = argc > 1 && strcmp(argv[1], "same") == 0;
        int in[10], out[10], wrong = 0;
        for (int i = 0; i < 10; i++) {
            in[i] = i + 1;
            out[i] = 0;
        }
        rc = rp_map(pool, scale, in, 10, sizeof *in, out, sizeof *out, NULL, &err);
        for (int i = 0; i < 10; i++)
            wrong += out[i] != 0 && out[i] != in[i] * FACTOR;
        printf("mpi_nobid %s: task at offset 0x%lx here and 0x%lx on rank 1, build-ids: "
               "%s; map: %s: %s; %d wrong outputs\n", same ? "same" : "other",
               (unsigned long)me.offset, (unsigned long)peer.offset,
               me.has_id || peer.has_id ? "present" : "none", rp_err_name(rc),
               rc ? err.message : "", wrong);
        if (!setup_ok) {
            fprintf(stderr, "mpi_nobid: the programs have a build-id or different "
                            "offsets: the test cannot tell anything\n");
            status = 99;
        } else if (same) {
            status = rc != RP_OK || wrong;
        } else {
            status = rc != RP_EFNREF || wrong || !strstr(err.message, "same binary");
        }
        rp_pool_close(pool);
        rp_pool_join(pool);
    }
    rp_pool_free(pool);
    MPI_Finalize();
    return status;
}
