/* A test-only backend whose workers are threads of the test process
 * (tests/thread_backend.c): lets the core be tested in one process. */
#ifndef RP_THREAD_BACKEND_H
#define RP_THREAD_BACKEND_H

#include "backend.h"

#include <stdio.h>

extern const struct rp__backend_ops tb_backend;
/* Chunks handed to the workers so far. */
extern int tb_chunks_claimed;

#endif /* RP_THREAD_BACKEND_H */
