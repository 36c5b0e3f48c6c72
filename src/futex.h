/* Futex wait/wake on words in memory shared by processes, and a CPU pause for
 * spin loops. The words live in a MAP_SHARED region, so the shared (not
 * FUTEX_PRIVATE) operations are used. */
#ifndef RP_FUTEX_H
#define RP_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *addr == val, at most timeout seconds (< 0 or inf: no limit).
 * Returns at a wake, a timeout, a signal, or at once if *addr != val. */
static inline void rp__futex_wait(_Atomic uint32_t *addr, uint32_t val, double timeout)
{
    struct timespec ts, *tp = NULL;
    if (timeout >= 0 && !isinf(timeout)) {
        if (timeout > 1e6)
            timeout = 1e6;
        ts.tv_sec = (time_t)timeout;
        ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tp, NULL, 0);
}

/* Wakes up to n sleepers on addr. */
static inline void rp__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void rp__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* RP_FUTEX_H */
