/* Function pointers across processes with different address layouts.
 *
 * A pointer is described by the loaded object that contains it (found with
 * dl_iterate_phdr: the main program, a shared library, a dlopen'ed module), that
 * object's GNU build-id, and the pointer's offset from the object's load bias. The
 * far side finds the object with the same build-id (or, without one, the same
 * name), adds its own load bias, and checks that the address lies in an executable
 * segment of that object: a rank running another binary gets RP_EFNREF, never a
 * jump to a wrong address.
 *
 * dl_iterate_phdr takes the loader's lock and walks every object, so both
 * directions keep a small cache (the same few tasks are sent again and again). */
#include "internal.h" /* first: config.h */
#include "fnref.h"

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#ifndef NT_GNU_BUILD_ID
#define NT_GNU_BUILD_ID 3
#endif

/* ---- reading one loaded object ------------------------------------------------- */

static size_t build_id_of(const struct dl_phdr_info *info, uint8_t *id, size_t max)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            size_t namesz = (nh->n_namesz + 3) & ~(size_t)3;
            size_t descsz = (nh->n_descsz + 3) & ~(size_t)3;
            const char *name = p + sizeof *nh;
            const char *desc = name + namesz;
            if (desc + descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0) {
                size_t n = nh->n_descsz < max ? nh->n_descsz : max;
                memcpy(id, desc, n);
                return n;
            }
            p = desc + descsz;
        }
    }
    return 0;
}

/* Is addr inside an executable PT_LOAD segment of this object? */
static bool in_exec_segment(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (addr >= lo && addr - lo < ph->p_memsz)
            return true;
    }
    return false;
}

/* ---- pointer -> reference -------------------------------------------------------- */

struct make_arg {
    uintptr_t  addr;
    rp__fnref *ref;
    bool       found;
};

static int make_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct make_arg *a = data;
    (void)size;
    if (!in_exec_segment(info, a->addr))
        return 0;
    rp__fnref *r = a->ref;
    memset(r, 0, sizeof *r);
    r->offset = (uint64_t)(a->addr - (uintptr_t)info->dlpi_addr);
    r->idlen = (uint32_t)build_id_of(info, r->build_id, sizeof r->build_id);
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    snprintf(r->object, sizeof r->object, "%s", name);
    a->found = true;
    return 1;
}

/* ---- reference -> pointer -------------------------------------------------------- */

struct resolve_arg {
    const rp__fnref *ref;
    uintptr_t        addr;
    int              matched;   /* 0 no object, 1 object but bad address, 2 ok */
};

static int resolve_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct resolve_arg *a = data;
    (void)size;
    const rp__fnref *r = a->ref;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (r->idlen > 0) {
        uint8_t id[RP__FNREF_IDMAX];
        size_t n = build_id_of(info, id, sizeof id);
        if (n != r->idlen || memcmp(id, r->build_id, n) != 0)
            return 0;
    } else if (strcmp(name, r->object) != 0) {
        return 0;
    }
    uintptr_t addr = (uintptr_t)info->dlpi_addr + (uintptr_t)r->offset;
    if (!in_exec_segment(info, addr)) {
        a->matched = 1;
        return 0; /* maybe another object with the same id is mapped too */
    }
    a->addr = addr;
    a->matched = 2;
    return 1;
}

/* ---- caches ------------------------------------------------------------------------ */

#define CACHE 16

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { rp__anyfn fn; rp__fnref ref; } cache[CACHE];
static unsigned cache_next;
static unsigned cache_used;

static bool same_ref(const rp__fnref *a, const rp__fnref *b)
{
    return a->offset == b->offset && a->idlen == b->idlen &&
           memcmp(a->build_id, b->build_id, a->idlen) == 0 &&
           strcmp(a->object, b->object) == 0;
}

static void cache_put(rp__anyfn fn, const rp__fnref *ref)
{
    pthread_mutex_lock(&cache_lock);
    unsigned k = cache_next++ % CACHE;
    cache[k].fn = fn;
    cache[k].ref = *ref;
    if (cache_used < CACHE)
        cache_used++;
    pthread_mutex_unlock(&cache_lock);
}

int rp__fnref_make(rp__anyfn fn, rp__fnref *ref)
{
    if (!fn || !ref)
        return RP_EINVAL;
    pthread_mutex_lock(&cache_lock);
    for (unsigned k = 0; k < cache_used; k++)
        if (cache[k].fn == fn) {
            *ref = cache[k].ref;
            pthread_mutex_unlock(&cache_lock);
            return RP_OK;
        }
    pthread_mutex_unlock(&cache_lock);
    struct make_arg a = { (uintptr_t)fn, ref, false };
    dl_iterate_phdr(make_cb, &a);
    if (!a.found)
        return RP_EFNREF;
    cache_put(fn, ref);
    return RP_OK;
}

void rp__fnref_format(const rp__fnref *ref, char *buf, size_t len)
{
    char id[2 * RP__FNREF_IDMAX + 1];
    size_t n = ref->idlen < RP__FNREF_IDMAX ? ref->idlen : RP__FNREF_IDMAX;
    for (size_t i = 0; i < n; i++)
        snprintf(id + 2 * i, 3, "%02x", ref->build_id[i]);
    id[2 * n] = '\0';
    snprintf(buf, len, "%s+0x%llx [build-id %s]",
             ref->object[0] ? ref->object : "(main program)",
             (unsigned long long)ref->offset, n ? id : "none");
}

int rp__fnref_resolve(const rp__fnref *ref, rp__anyfn *fn, char *why, size_t whylen)
{
    if (!ref || !fn)
        return RP_EINVAL;
    pthread_mutex_lock(&cache_lock);
    for (unsigned k = 0; k < cache_used; k++)
        if (same_ref(&cache[k].ref, ref)) {
            *fn = cache[k].fn;
            pthread_mutex_unlock(&cache_lock);
            return RP_OK;
        }
    pthread_mutex_unlock(&cache_lock);
    if (memchr(ref->object, '\0', sizeof ref->object) == NULL || ref->idlen > RP__FNREF_IDMAX) {
        if (why)
            snprintf(why, whylen, "malformed function reference");
        return RP_EFNREF;
    }
    struct resolve_arg a = { ref, 0, 0 };
    dl_iterate_phdr(resolve_cb, &a);
    if (a.matched != 2) {
        if (why) {
            char desc[2 * RP__FNREF_IDMAX + RP__FNREF_NAMEMAX + 64];
            rp__fnref_format(ref, desc, sizeof desc);
            snprintf(why, whylen,
                     a.matched == 1
                         ? "function %s is not code in this process's copy of the object"
                         : "function %s: no such object loaded in this process "
                           "(do all ranks run the same binary?)",
                     desc);
        }
        return RP_EFNREF;
    }
    *fn = (rp__anyfn)a.addr;
    cache_put(*fn, ref);
    return RP_OK;
}
