/* rankpool on MPI: the few calls that name MPI types. Include this instead of (or
 * after) rankpool.h in a program that uses MPI itself.
 *
 * The mpi backend is collective over a communicator (MPI_COMM_WORLD by default):
 * its rank 0 is the master, which gets the pool back at once; every other rank
 * serves tasks inside rp_pool_create() and returns from it, with
 * rp_pool_is_master() false, once the master's pool is joined, terminated or
 * freed. So an SPMD program can do its own MPI work before and after a task-farm
 * phase:
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
 *     ... the program's own MPI phase ...
 *     rp_pool_t *pool;
 *     rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD);   // all ranks
 *     if (rp_pool_is_master(pool)) {
 *         rp_map(pool, task, in, n, sizeof *in, out, sizeof *out, NULL, NULL);
 *         rp_pool_close(pool);
 *         rp_pool_join(pool);
 *     }
 *     rp_pool_free(pool);                                   // all ranks
 *     ... more MPI ...
 *     MPI_Finalize();
 *
 * The pool works on a duplicate of the communicator (named "rankpool"), so its
 * messages never mix with the program's. Only while rp_pool_create runs do a few
 * start-up messages travel on the communicator itself (tag 7300, to and from rank
 * 0): they tell whether every rank called it within $RP_MPI_START_TIMEOUT seconds
 * (default 60, "inf" for no limit); if not, every rank that did returns RP_EMPI
 * instead of waiting forever, rank 0's message naming the missing ranks.
 * If the program initialised MPI, the pool leaves it initialised; if not, the pool
 * initialises it (MPI_THREAD_MULTIPLE requested) and finalises it when the program
 * exits, after terminating the pools the program did not free (which releases
 * their serving ranks), so that every rank exits cleanly. Tasks run in a process
 * forked by each serving rank and must not call MPI themselves.
 *
 * A serving rank not heard from for $RP_MPI_STRANDED_TIMEOUT seconds (default 30,
 * "off" for never) while it holds work (its node hung, or cut off) gets no more:
 * its unfinished items run on the other workers, and what it sends for them later
 * is dropped, so items must be pure functions of their inputs. Silent for
 * $RP_MPI_UNREACHABLE_TIMEOUT seconds (default 120, "off" for never), it is given up; with no worker
 * left, items fail with RP_EWORKER, the message naming its host.
 */
#ifndef RANKPOOL_MPI_H
#define RANKPOOL_MPI_H

#include <mpi.h>

#include "rankpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Creates an mpi-backend pool over comm, collectively: every rank of comm must
 * call it (with the same opts->workers and initializer). opts may be NULL; its
 * backend and comm fields are ignored. Same returns as rp_pool_create_ex; on
 * serving ranks it returns after serving, with the master's verdict on failure.
 * comm must be an intracommunicator: MPI_COMM_NULL or an intercommunicator is
 * RP_EINVAL on every rank, at once.
 * \param err NULL, or filled with why creation failed. */
RP_API int rp_pool_create_comm(rp_pool_t **pool, const rp_pool_opts_t *opts, MPI_Comm comm,
                               rp_error_t *err);

/** \return the pool's own communicator (a duplicate of the one it was created on),
 * or MPI_COMM_NULL for a NULL or non-mpi pool. Valid until rp_pool_free; for
 * inspection (size, name), not for sending while the pool is running. */
RP_API MPI_Comm rp_pool_comm(const rp_pool_t *pool);

/** \return the rank of the worker w (0..size-1) in the pool's communicator, or -1.
 * (With node leaders, $RP_MPI_LEADERS, the lowest serving rank of its node: doc/mpi.md.) */
RP_API int rp_pool_worker_rank(const rp_pool_t *pool, int worker);

#ifdef __cplusplus
}
#endif
#endif /* RANKPOOL_MPI_H */
