/* files: checksum and compress every file under a folder, as a stream.
 *
 *     files FOLDER
 *
 * The paths come lazily from a directory walk (a producer: the walk advances only
 * as the workers need more paths, so a folder of millions of files never sits in
 * memory), each worker reads its file, computes its Adler-32 and compresses it
 * with a run-length code (PackBits), and the results stream back as
 * variable-size outputs, in the order they finish (rp_imap_var_unordered_producer).
 * The master checks each one: it decodes the compressed bytes and compares their
 * length and checksum with the original's.
 *
 * Python:
 *     with Pool() as pool:
 *         for out in pool.imap_unordered(checksum_and_compress, walk(folder)):
 *             check(out)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rankpool.h>

#define PATH_ITEM 4096 /* bytes of an item: one path, NUL-terminated */

/* ---- Adler-32 and PackBits ------------------------------------------------------ */

static uint32_t adler32(const unsigned char *p, size_t n)
{
    uint32_t a = 1, b = 0;
    while (n > 0) {
        size_t block = n < 5552 ? n : 5552; /* the most bytes before b can overflow */
        n -= block;
        while (block--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return b << 16 | a;
}

/* The most bytes PackBits writes for n bytes: a header per 128 literals. */
static size_t packbits_bound(size_t n)
{
    return n + (n + 127) / 128;
}

/* Runs of 3 to 128 equal bytes become (257 - len, byte); other bytes go as
 * literals (len - 1, bytes...) of up to 128. \return bytes written to out. */
static size_t packbits(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t run = 1;
        while (i + run < n && run < 128 && in[i + run] == in[i])
            run++;
        if (run >= 3) {
            out[o++] = (unsigned char)(257 - run);
            out[o++] = in[i];
            i += run;
            continue;
        }
        size_t start = i, len = 0;
        while (i < n && len < 128) {
            if (i + 2 < n && in[i] == in[i + 1] && in[i] == in[i + 2])
                break; /* a run starts here */
            i++;
            len++;
        }
        out[o++] = (unsigned char)(len - 1);
        memcpy(out + o, in + start, len);
        o += len;
    }
    return o;
}

/* Decodes PackBits into out (room for max bytes). \return bytes decoded, or
 * (size_t)-1 if the input is malformed or does not fit. */
static size_t unpackbits(const unsigned char *in, size_t n, unsigned char *out, size_t max)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned h = in[i++];
        if (h < 128) {
            size_t len = h + 1;
            if (i + len > n || o + len > max)
                return (size_t)-1;
            memcpy(out + o, in + i, len);
            i += len;
            o += len;
        } else {
            size_t len = 257 - h;
            if (i >= n || o + len > max)
                return (size_t)-1;
            memset(out + o, in[i++], len);
            o += len;
        }
    }
    return o;
}

/* ---- the task: in a worker ------------------------------------------------------- */

/* What a task outputs: this header, the path, then the compressed bytes. */
struct header {
    uint64_t size;       /* the file's length */
    uint64_t packed;     /* compressed bytes after the path */
    uint32_t adler;      /* Adler-32 of the file */
    uint32_t path_len;
};

static int read_all(const char *path, unsigned char **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        if (n == cap) { /* the file grew meanwhile */
            unsigned char *b = realloc(buf, 2 * cap);
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            close(fd);
            if (got < 0)
                break;
            *data = buf;
            *size = n;
            return 0;
        }
        n += (size_t)got;
    }
    int saved = errno;
    free(buf);
    close(fd);
    errno = saved ? saved : ENOMEM;
    return -1;
}

static int checksum_and_compress(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)out;
    const char *path = in;
    unsigned char *data;
    size_t size;
    if (read_all(path, &data, &size) != 0)
        return rp_raise(ctx, 1, "%s: %s", path, strerror(errno));
    unsigned char *packed = malloc(packbits_bound(size) + 1);
    if (!packed) {
        free(data);
        return rp_raise(ctx, 2, "%s: out of memory", path);
    }
    struct header h = { .size = size, .adler = adler32(data, size),
                        .path_len = (uint32_t)strlen(path) };
    h.packed = packbits(data, size, packed);
    free(data);
    unsigned char *o = rp_output(ctx, sizeof h + h.path_len + h.packed);
    if (!o) {
        free(packed);
        return rp_raise(ctx, 2, "%s: no room for the output", path);
    }
    memcpy(o, &h, sizeof h);
    memcpy(o + sizeof h, path, h.path_len);
    memcpy(o + sizeof h + h.path_len, packed, h.packed);
    free(packed);
    return 0;
}

/* ---- the producer: a directory walk, one path per call, in the master -------------- */

struct walk {
    DIR  *dir[64];           /* the open folders, outermost first */
    char  path[64][PATH_ITEM];
    int   depth;             /* open folders */
    long  skipped;
};

static int walk_open(struct walk *w, const char *path)
{
    if (w->depth == 64) {
        fprintf(stderr, "files: %s: too deep, skipped\n", path);
        w->skipped++;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "files: %s: %s\n", path, strerror(errno));
        w->skipped++;
        return 0;
    }
    snprintf(w->path[w->depth], PATH_ITEM, "%s", path);
    w->dir[w->depth++] = d;
    return 0;
}

/* Writes the next regular file's path into item. \return 1, or 0 at the end. */
static int next_path(void *item, void *userdata)
{
    struct walk *w = userdata;
    while (w->depth > 0) {
        struct dirent *e = readdir(w->dir[w->depth - 1]);
        if (!e) {
            closedir(w->dir[--w->depth]);
            continue;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = item;
        int len = snprintf(path, PATH_ITEM, "%s/%s", w->path[w->depth - 1], e->d_name);
        if (len < 0 || len >= PATH_ITEM) {
            w->skipped++;
            continue;
        }
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk_open(w, path);
        else if (S_ISREG(st.st_mode))
            return 1;
    }
    return 0;
}

/* ---- the master: check each result as it streams in ------------------------------ */

/* \return 0 if out decodes to a file of the length and checksum it states. */
static int check(const unsigned char *out, size_t size, const struct header *h)
{
    if (size != sizeof *h + h->path_len + h->packed)
        return -1;
    unsigned char *plain = malloc(h->size ? h->size : 1);
    if (!plain)
        return -1;
    size_t n = unpackbits(out + sizeof *h + h->path_len, h->packed, plain, h->size);
    int bad = n != h->size || adler32(plain, n) != h->adler;
    free(plain);
    return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FOLDER\n", argv[0]);
        return 2;
    }
    rp_pool_t *pool = NULL;
    int rc = rp_pool_create(&pool, NULL);
    if (rc != RP_OK) {
        fprintf(stderr, "files: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }
    static struct walk w; /* 256 KB of paths: not on the stack */
    walk_open(&w, argv[1]);
    /* buffersize: at most 256 paths (1 MB) read ahead of what was checked;
     * progress: a bar on stderr (files done, rate; the total once the walk ended),
     * redrawn on a terminal, a plain line every few seconds in a log. */
    rp_map_opts_t opts = {
        .buffersize = 256,
        .progress = true,
    };
    rp_iter_t *it = NULL;
    rc = rp_imap_var_unordered_producer(pool, checksum_and_compress, next_path, &w, PATH_ITEM,
                                        &opts, &it);
    if (rc != RP_OK) {
        fprintf(stderr, "files: %s\n", rp_strerror(rc));
        rp_pool_free(pool);
        return 1;
    }
    long files = 0, failed = 0;
    unsigned long long bytes = 0, packed = 0;
    const void *out;
    size_t size;
    rp_error_t err;
    while ((rc = rp_iter_next_var(it, RP_FOREVER, NULL, &out, &size, &err)) != RP_DONE) {
        if (rc != RP_OK) {
            fprintf(stderr, "files: %s\n", err.message);
            failed++;
            continue;
        }
        struct header h;
        memcpy(&h, out, sizeof h);
        const char *path = (const char *)out + sizeof h;
        if (check(out, size, &h) != 0) {
            fprintf(stderr, "files: %.*s: the compressed output does not decode to the file\n",
                    (int)h.path_len, path);
            failed++;
            continue;
        }
        printf("%08x %10llu -> %10llu  %.*s\n", (unsigned)h.adler,
               (unsigned long long)h.size, (unsigned long long)h.packed, (int)h.path_len,
               path);
        files++;
        bytes += h.size;
        packed += h.packed;
    }
    rp_iter_free(it);
    while (w.depth > 0) /* not reached unless the walk stopped early */
        closedir(w.dir[--w.depth]);
    printf("files: %ld files, %llu bytes -> %llu bytes (%.1f%%), %ld failed, %ld skipped, "
           "backend %s\n",
           files, bytes, packed, bytes ? 100.0 * (double)packed / (double)bytes : 100.0, failed,
           w.skipped, rp_pool_backend(pool));
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    return failed == 0 && files > 0 ? 0 : 1;
}
