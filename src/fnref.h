/* A function pointer as something another process can resolve: (object file,
 * identity, offset from the object's load address). Every MPI rank is its own
 * exec of the program, with its own address layout (ASLR, PIE, shared libraries),
 * so a raw pointer means nothing on another rank. Users never register functions:
 * any function of the program or of a loaded library works, static ones too.
 *
 * No MPI here; tested in one process (and across an exec) by tests/test_fnref.c. */
#ifndef RP_FNREF_H
#define RP_FNREF_H

#include <stddef.h>
#include <stdint.h>

#define RP__FNREF_IDMAX   32   /* longest build-id kept (GNU build-ids are 20 bytes) */
#define RP__FNREF_NAMEMAX 256  /* object file name, "" for the main program */

typedef void (*rp__anyfn)(void);

/* How an object is identified: by its GNU build-id, or, for an object linked
 * without one (-Wl,--build-id=none), by a hash of the contents of its loadable
 * segments as its file holds them (code, read-only data, initialised data). */
enum { RP__FNREF_BUILD_ID = 1, RP__FNREF_CONTENTS = 2 };
#define RP__FNREF_HASHLEN 16          /* bytes of a contents hash */

typedef struct rp__fnref {
    uint64_t offset;                  /* address - the object's load bias */
    uint32_t idkind;                  /* RP__FNREF_BUILD_ID or RP__FNREF_CONTENTS */
    uint32_t idlen;                   /* bytes of id (> 0) */
    uint8_t  id[RP__FNREF_IDMAX];
    char     object[RP__FNREF_NAMEMAX];
} rp__fnref;

/* Describes fn. \return RP_OK, RP_EINVAL (NULL), RP_EFNREF (not inside an
 * executable segment of any loaded object, or an object with neither a build-id
 * nor a readable file). Thread-safe; results are cached. */
int rp__fnref_make(rp__anyfn fn, rp__fnref *ref);

/* Finds ref in this process. The object is matched by its identity only (paths
 * may differ between hosts): the same build-id, or, without one, the same contents
 * hash; the address must fall inside an executable segment of it. So a different
 * program is refused even when both lack a build-id and the offset lands in code.
 * \return RP_OK with *fn set, or RP_EFNREF with a sentence in why (may be NULL)
 * saying what did not match. Thread-safe; cached. */
int rp__fnref_resolve(const rp__fnref *ref, rp__anyfn *fn, char *why, size_t whylen);

/* How many objects the loader has unloaded (dlclose) so far in this process: a
 * reference made for an address stays right while this count does not move (a
 * new object never takes the place of one still loaded). */
uint64_t rp__fnref_unloads(void);

/* Formats ref for messages: "object+0xoffset [build-id 1a2b...]" (or "[contents
 * 1a2b...]" for an object without a build-id). */
void rp__fnref_format(const rp__fnref *ref, char *buf, size_t len);

#endif /* RP_FNREF_H */
