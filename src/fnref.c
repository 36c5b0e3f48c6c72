/* Function pointers across processes with different address layouts.
 *
 * A pointer is described by the loaded object that contains it (found with
 * dl_iterate_phdr: the main program, a shared library, a dlopen'ed module), that
 * object's identity, and the pointer's offset from the object's load bias. The
 * identity is the GNU build-id; an object linked without one is identified by a
 * hash of what its file loads (every PT_LOAD segment's bytes: code, read-only and
 * initialised data), never by its name: two different programs without build-ids
 * both have the name "" and may well have a function at the same offset. The far
 * side finds the object with the same identity, adds its own load bias, and checks
 * that the address lies in an executable segment of that object: a rank running
 * another binary gets RP_EFNREF, never a jump to a wrong address.
 *
 * dl_iterate_phdr takes the loader's lock and walks every object, so both
 * directions keep a small cache (the same few tasks are sent again and again), and
 * an object's contents hash is computed once per loaded object. An object
 * unloaded (dlclose) may leave its addresses to the next one loaded: the caches
 * are forgotten whenever the loader's count of unloads moved (one
 * dl_iterate_phdr call that stops at the first object, about 150 instructions). */
#include "internal.h" /* first: config.h */
#include "fnref.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* ---- the identity of an object without a build-id -------------------------------- */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int unloads_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    /* (dlpi_subs is there when size covers it: glibc >= 2.4) */
    *(uint64_t *)data = size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs
                            ? (uint64_t)info->dlpi_subs
                            : 0;
    return 1; /* the first object says it: no walk */
}

uint64_t rp__fnref_unloads(void)
{
    uint64_t subs = 0;
    dl_iterate_phdr(unloads_cb, &subs);
    return subs;
}

/* The caches below map addresses to objects and back; an object unloaded since
 * (dlclose) may have left its addresses to another one. Called with cache_lock
 * held: forgets everything when anything was unloaded since the last look. */
static uint64_t cached_unloads;
static unsigned cache_used, cache_next, idcache_used;

static void forget_if_unloaded(uint64_t unloads)
{
    if (unloads != cached_unloads) {
        cached_unloads = unloads;
        cache_used = cache_next = 0;
        idcache_used = 0;
    }
}


/* Two 64-bit hashes side by side (FNV-1a and a multiply-xorshift): enough to tell
 * programs apart, which is all that is asked of them (not resistance to attack). */
typedef struct { uint64_t a, b; } hash128;

static void hash_bytes(hash128 *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t a = h->a, b = h->b;
    for (size_t i = 0; i < n; i++) {
        a = (a ^ p[i]) * 0x100000001b3ull;
        b = (b + p[i] + 1) * 0x9e3779b97f4a7c15ull;
        b ^= b >> 29;
    }
    h->a = a;
    h->b = b;
}

/* Hashes the loadable contents of the object's file (each PT_LOAD segment's place,
 * size, flags and file bytes). The main program's file is /proc/self/exe (its
 * dlpi_name is ""), so a program replaced on disk since it started still hashes as
 * what runs. \return false when the file cannot be read. */
static bool hash_contents(const struct dl_phdr_info *info, uint8_t out[RP__FNREF_HASHLEN])
{
    const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name
                                                               : "/proc/self/exe";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    hash128 h = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull };
    char buf[1 << 16];
    bool ok = true;
    for (int i = 0; ok && i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t shape[4] = { ph->p_vaddr, ph->p_memsz, ph->p_filesz, ph->p_flags };
        hash_bytes(&h, shape, sizeof shape);
        for (uint64_t done = 0; ok && done < ph->p_filesz;) {
            size_t want = ph->p_filesz - done < sizeof buf ? (size_t)(ph->p_filesz - done)
                                                            : sizeof buf;
            ssize_t got = pread(fd, buf, want, (off_t)(ph->p_offset + done));
            ok = got > 0;
            if (ok) {
                hash_bytes(&h, buf, (size_t)got);
                done += (uint64_t)got;
            }
        }
    }
    close(fd);
    memcpy(out, &h.a, 8);
    memcpy(out + 8, &h.b, 8);
    return ok;
}

/* The contents hash of an object, computed once per loaded object (keyed by its
 * load bias and program headers, which a later dlopen cannot share with it). */
#define IDCACHE 8
static struct { uintptr_t addr; const void *phdr; uint8_t id[RP__FNREF_HASHLEN]; }
    idcache[IDCACHE];

static bool contents_id(const struct dl_phdr_info *info, uint8_t id[RP__FNREF_HASHLEN])
{
    bool ok = true;
    pthread_mutex_lock(&cache_lock);
    unsigned k;
    for (k = 0; k < idcache_used && k < IDCACHE; k++)
        if (idcache[k].addr == info->dlpi_addr && idcache[k].phdr == info->dlpi_phdr)
            break;
    if (k < idcache_used && k < IDCACHE) {
        memcpy(id, idcache[k].id, RP__FNREF_HASHLEN);
    } else if ((ok = hash_contents(info, id))) {
        k = idcache_used++ % IDCACHE;
        idcache[k].addr = info->dlpi_addr;
        idcache[k].phdr = info->dlpi_phdr;
        memcpy(idcache[k].id, id, RP__FNREF_HASHLEN);
    }
    pthread_mutex_unlock(&cache_lock);
    return ok;
}

/* The identity of an object: its build-id, else its contents hash. \return its
 * kind (RP__FNREF_*), 0 if it has none that can be known. */
static uint32_t identity_of(const struct dl_phdr_info *info, uint8_t id[RP__FNREF_IDMAX],
                            uint32_t *len)
{
    size_t n = build_id_of(info, id, RP__FNREF_IDMAX);
    if (n > 0) {
        *len = (uint32_t)n;
        return RP__FNREF_BUILD_ID;
    }
    if (!contents_id(info, id))
        return 0;
    *len = RP__FNREF_HASHLEN;
    return RP__FNREF_CONTENTS;
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
    r->idkind = identity_of(info, r->id, &r->idlen);
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    snprintf(r->object, sizeof r->object, "%s", name);
    a->found = r->idkind != 0; /* an object that cannot be identified is refused */
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
    uint8_t id[RP__FNREF_IDMAX];
    size_t n = build_id_of(info, id, sizeof id);
    if (r->idkind == RP__FNREF_CONTENTS) {
        /* an object with a build-id would have been named by it */
        if (n > 0 || !contents_id(info, id))
            return 0;
        n = RP__FNREF_HASHLEN;
    } else if (r->idkind != RP__FNREF_BUILD_ID) {
        return 0;
    }
    if (n != r->idlen || memcmp(id, r->id, n) != 0)
        return 0;
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

static struct { rp__anyfn fn; rp__fnref ref; } cache[CACHE];

static bool same_ref(const rp__fnref *a, const rp__fnref *b)
{
    return a->offset == b->offset && a->idkind == b->idkind && a->idlen == b->idlen &&
           memcmp(a->id, b->id, a->idlen) == 0 &&
           strcmp(a->object, b->object) == 0;
}

/* (unloads: the generation the walk that found ref started from) */
static void cache_put(rp__anyfn fn, const rp__fnref *ref, uint64_t unloads)
{
    pthread_mutex_lock(&cache_lock);
    if (unloads != cached_unloads) { /* unloaded meanwhile: ref may be stale */
        pthread_mutex_unlock(&cache_lock);
        return;
    }
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
    uint64_t unloads = rp__fnref_unloads();
    pthread_mutex_lock(&cache_lock);
    forget_if_unloaded(unloads);
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
    cache_put(fn, ref, unloads);
    return RP_OK;
}

void rp__fnref_format(const rp__fnref *ref, char *buf, size_t len)
{
    char id[2 * RP__FNREF_IDMAX + 1];
    size_t n = ref->idlen < RP__FNREF_IDMAX ? ref->idlen : RP__FNREF_IDMAX;
    for (size_t i = 0; i < n; i++)
        snprintf(id + 2 * i, 3, "%02x", ref->id[i]);
    id[2 * n] = '\0';
    snprintf(buf, len, "%s+0x%llx [%s %s]", ref->object[0] ? ref->object : "(main program)",
             (unsigned long long)ref->offset,
             ref->idkind == RP__FNREF_CONTENTS ? "no build-id; contents" : "build-id",
             n ? id : "none");
}

int rp__fnref_resolve(const rp__fnref *ref, rp__anyfn *fn, char *why, size_t whylen)
{
    if (!ref || !fn)
        return RP_EINVAL;
    uint64_t unloads = rp__fnref_unloads();
    pthread_mutex_lock(&cache_lock);
    forget_if_unloaded(unloads);
    for (unsigned k = 0; k < cache_used; k++)
        if (same_ref(&cache[k].ref, ref)) {
            *fn = cache[k].fn;
            pthread_mutex_unlock(&cache_lock);
            return RP_OK;
        }
    pthread_mutex_unlock(&cache_lock);
    if (memchr(ref->object, '\0', sizeof ref->object) == NULL || ref->idlen > RP__FNREF_IDMAX ||
        ref->idlen == 0) {
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
    cache_put(*fn, ref, unloads);
    return RP_OK;
}
