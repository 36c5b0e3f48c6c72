/* The status code table: one X-macro (rankpool.h) yields the codes, their texts
 * and their names. */
#include "internal.h"

const char *rp_strerror(int code)
{
    switch (code) {
#define RP__ERR_TEXT(name, value, text) case RP_##name: return text;
    RP_ERRNO_MAP(RP__ERR_TEXT)
#undef RP__ERR_TEXT
    default:
        return code > 0 ? "unknown status (positive)" : "unknown error code";
    }
}

const char *rp_err_name(int code)
{
    switch (code) {
#define RP__ERR_NAME(name, value, text) case RP_##name: return "RP_" #name;
    RP_ERRNO_MAP(RP__ERR_NAME)
#undef RP__ERR_NAME
    default:
        return "RP_UNKNOWN";
    }
}
