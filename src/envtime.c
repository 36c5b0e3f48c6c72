/* Durations from the environment: one rule for every variable that holds seconds
 * (RP_MPI_START_TIMEOUT, RP_MPI_STRANDED_TIMEOUT, RP_MPI_UNREACHABLE_TIMEOUT,
 * RP_PROGRESS_INTERVAL).
 *
 * A value is a decimal number of seconds greater than 0 ("30", "0.5", "1e3"),
 * nothing before or after it. Where a variable may mean "no limit", `inf`, `off`,
 * `never` and `0` say so. Anything else (empty, negative, NaN, text, "10s") is not
 * used: the default applies, and RP_DEBUG says so. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

double rp__env_seconds(const char *name, double def, bool never_ok)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    bool never = !strcasecmp(v, "inf") || !strcasecmp(v, "infinity") ||
                 !strcasecmp(v, "off") || !strcasecmp(v, "never");
    char *end;
    double t = never ? INFINITY : strtod(v, &end);
    if (!never && *end == '\0' && t == 0)
        never = true, t = INFINITY;
    if (!never && (*end != '\0' || !(t > 0) || isinf(t)))
        goto unusable;
    if (never && !never_ok)
        goto unusable;
    return t;
unusable:
    rp__trace("%s=%s is not %s: %g s", name, v,
              never_ok ? "a number of seconds > 0, 0, inf, off or never"
                       : "a number of seconds > 0",
              def);
    return def;
}
