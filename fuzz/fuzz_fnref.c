/* libFuzzer target: a function reference as a serving rank receives it
 * (rp__wire_get_fnref on the bytes of a message) and resolves it in its own
 * process (rp__fnref_resolve, which walks the loaded objects). Besides crashes
 * (ASan, UBSan), it checks that a reference is only ever resolved to code of the
 * object it names: the address returned lies in an executable segment of a loaded
 * object with the reference's build-id (or, without one, its name), at the
 * reference's offset; a refused reference comes with a sentence saying why.
 * Built and run by fuzz/run. */
#define _GNU_SOURCE 1
#include "fnref.h"
#include "wire.h"

#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) {                                                              \
            fprintf(stderr, "fuzz_fnref: %s:%d: broken promise: %s\n", __FILE__,  \
                    __LINE__, #c);                                               \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* The harness's own look at the loaded objects, independent of fnref.c's. */
struct where {
    const rp__fnref *ref;
    uintptr_t        addr;
    bool             ok;
};

static bool object_matches(const struct dl_phdr_info *info, const rp__fnref *ref)
{
    if (ref->idkind != RP__FNREF_BUILD_ID)
        return true; /* identified by its contents: fnref.c hashes them; here only
                        the place of the address is checked */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *nh;
            const char *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + ((nh->n_descsz + 3) & ~3u) > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0)
                return nh->n_descsz == ref->idlen && memcmp(desc, ref->id, ref->idlen) == 0;
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return false;
}

static int where_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct where *w = data;
    (void)size;
    if (w->addr - (uintptr_t)info->dlpi_addr != w->ref->offset || !object_matches(info, w->ref))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && w->addr >= lo &&
            w->addr - lo < ph->p_memsz)
            w->ok = true;
    }
    return w->ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    rp__rbuf r;
    rp__rbuf_init(&r, buf, size);
    rp__fnref ref;
    if (rp__wire_get_fnref(&r, &ref) == RP_OK) {
        CHECK(memchr(ref.object, '\0', sizeof ref.object) != NULL);
        CHECK(ref.idlen <= RP__FNREF_IDMAX);
        char desc[2 * RP__FNREF_IDMAX + RP__FNREF_NAMEMAX + 64];
        rp__fnref_format(&ref, desc, sizeof desc);
        CHECK(memchr(desc, '\0', sizeof desc) != NULL);
        rp__anyfn fn = NULL;
        char why[600];
        why[0] = '\0';
        if (rp__fnref_resolve(&ref, &fn, why, sizeof why) == RP_OK) {
            struct where w = { &ref, (uintptr_t)fn, false };
            CHECK(fn != NULL);
            dl_iterate_phdr(where_cb, &w);
            CHECK(w.ok);
        } else {
            CHECK(why[0] != '\0');
        }
    }
    free(buf);
    return 0;
}
