/* Small helpers: clocks, deadlines, overflow-checked sizes, host name, tracing. */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void rp__cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

double rp__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t rp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + 1;
}

void rp__abstime(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double whole = (double)(time_t)seconds;
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

double rp__timeout(double timeout)
{
    if (timeout == RP_FOREVER || timeout > 1e9) /* +inf, or more than 30 years */
        return RP_FOREVER;
    if (!(timeout >= 0)) /* NaN, or a deadline that has just passed */
        return 0;
    return timeout;
}

double rp__deadline(double timeout)
{
    timeout = rp__timeout(timeout);
    if (timeout == RP_FOREVER)
        return INFINITY;
    return rp__now() + timeout;
}

int rp__mul_size(size_t a, size_t b, size_t *res)
{
    if (a != 0 && b > SIZE_MAX / a)
        return RP_EINVAL;
    *res = a * b;
    return RP_OK;
}

void rp__hostname(char *buf, size_t len)
{
    if (len == 0)
        return;
    if (gethostname(buf, len) != 0)
        snprintf(buf, len, "unknown");
    buf[len - 1] = '\0';
}

void rp__trace(const char *fmt, ...)
{
    static int enabled = -1;
    if (enabled < 0) {
        const char *v = getenv("RP_DEBUG");
        enabled = v != NULL && *v != '\0' && strcmp(v, "0") != 0;
    }
    if (!enabled)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "rankpool[%d]: %s\n", (int)getpid(), line);
}
