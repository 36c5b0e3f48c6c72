/* /proc readers for the soak program: see soak_proc.h. */
#define _GNU_SOURCE 1
#include "soak_proc.h"

#include <ctype.h>
#include <dirent.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads /proc/<pid>/stat: "pid (comm) state ppid ...". comm may hold spaces and
 * parentheses, so the fields after it start at the last ')'. */
static bool read_stat(pid_t pid, sp_proc *p)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return false;
    int ppid = 0;
    char state = '?';
    if (sscanf(close + 1, " %c %d", &state, &ppid) != 2)
        return false;
    p->pid = pid;
    p->ppid = (pid_t)ppid;
    p->state = state;
    size_t clen = (size_t)(close - open - 1);
    if (clen >= sizeof p->comm)
        clen = sizeof p->comm - 1;
    memcpy(p->comm, open + 1, clen);
    p->comm[clen] = '\0';
    return true;
}

int sp_scan(sp_proc *procs, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (read_stat((pid_t)atoi(e->d_name), &procs[n]))
            n++;
    }
    closedir(d);
    return n;
}

static bool in_set(pid_t pid, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == pid)
            return true;
    return false;
}

int sp_descendants(const sp_proc *procs, int n, const pid_t *roots, int nroots, int depth,
                   int *out, int max)
{
    /* breadth first: generation g's parents are the pids found in generation g-1 */
    pid_t *front = malloc(sizeof *front * (size_t)(n + nroots + 1));
    pid_t *next = malloc(sizeof *next * (size_t)(n + 1));
    if (!front || !next) {
        free(front);
        free(next);
        return 0;
    }
    memcpy(front, roots, sizeof *roots * (size_t)nroots);
    int nfront = nroots, found = 0;
    for (int g = 0; nfront > 0 && (depth <= 0 || g < depth); g++) {
        int nnext = 0;
        for (int i = 0; i < n; i++)
            if (in_set(procs[i].ppid, front, nfront) && !in_set(procs[i].pid, roots, nroots)) {
                if (found < max)
                    out[found++] = i;
                next[nnext++] = procs[i].pid;
            }
        memcpy(front, next, sizeof *next * (size_t)nnext);
        nfront = nnext;
    }
    free(front);
    free(next);
    return found;
}

bool sp_dead(pid_t pid)
{
    sp_proc p;
    return !read_stat(pid, &p) || p.state == 'Z' || p.state == 'X';
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Bytes allocated to the files under dir and below (one level of subdirectories
 * is enough for what Open MPI and rankpool put in /dev/shm). */
static double dir_bytes(const char *dir, int *files, int levels)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    double bytes = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (levels > 0)
                bytes += dir_bytes(path, files, levels - 1);
        } else {
            bytes += (double)st.st_blocks * 512.0;
            (*files)++;
        }
    }
    closedir(d);
    return bytes;
}

void sp_usage_self(sp_usage *u)
{
    memset(u, 0, sizeof *u);
    u->fds = count_dir("/proc/self/fd") - 1; /* the directory's own descriptor */
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, res = 0;
        if (fscanf(f, "%lu %lu", &size, &res) == 2) {
            u->vm_gb = (double)size * (double)page / 1e9;
            u->rss_mb = (double)res * (double)page / 1e6;
        }
        fclose(f);
    }
    f = fopen("/proc/self/maps", "r");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            unsigned long lo, hi;
            char perms[8];
            if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
                continue;
            u->maps++;
            if (perms[3] == 's') {
                u->shared_maps++;
                u->shared_gb += (double)(hi - lo) / 1e9;
            }
            /* a line longer than the buffer: skip the rest of it */
            while (!strchr(line, '\n') && fgets(line, sizeof line, f))
                ;
        }
        fclose(f);
    }
    u->shm_mb = dir_bytes("/dev/shm", &u->shm_files, 1) / 1e6;
    struct mallinfo2 mi = mallinfo2();
    u->heap_mb = (double)(mi.uordblks + mi.hblkhd) / 1e6;
}

void sp_print_tree(const pid_t *roots, int nroots)
{
    enum { MAX = 8192 };
    sp_proc *procs = malloc(sizeof *procs * MAX);
    int *idx = malloc(sizeof *idx * MAX);
    if (!procs || !idx) {
        free(procs);
        free(idx);
        return;
    }
    int n = sp_scan(procs, MAX);
    int k = sp_descendants(procs, n, roots, nroots, 0, idx, MAX);
    for (int i = 0; i < n; i++)
        if (in_set(procs[i].pid, roots, nroots))
            idx[k < MAX ? k++ : MAX - 1] = i;
    fprintf(stderr, "  %7s %7s %s %-16s %s\n", "pid", "ppid", "S", "comm", "wchan");
    for (int j = 0; j < k; j++) {
        const sp_proc *p = &procs[idx[j]];
        char path[64], wchan[64] = "";
        snprintf(path, sizeof path, "/proc/%d/wchan", (int)p->pid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t len = fread(wchan, 1, sizeof wchan - 1, f);
            wchan[len] = '\0';
            fclose(f);
        }
        fprintf(stderr, "  %7d %7d %c %-16s %s\n", (int)p->pid, (int)p->ppid, p->state,
                p->comm, wchan);
    }
    free(procs);
    free(idx);
}

/* ---- resources over time ------------------------------------------------------ */

void sp_series_add(sp_series *se, const sp_sample *s)
{
    if (se->n == se->cap) {
        int cap = se->cap ? 2 * se->cap : 256;
        sp_sample *b = realloc(se->s, sizeof *b * (size_t)cap);
        if (!b)
            return;
        se->s = b;
        se->cap = cap;
    }
    se->s[se->n++] = *s;
}

/* Does metric f grow over the run: the largest value of the last third of the
 * samples (after a warm-up tenth) above that of the first third by more than
 * abs + rel * first? */
static bool grows(const sp_series *se, double (*f)(const sp_sample *), double abs, double rel,
                  double *first, double *last)
{
    int skip = se->n / 10 + 1, m = se->n - skip, third = m / 3;
    *first = *last = se->n ? f(&se->s[se->n - 1]) : 0;
    if (third < 2)
        return false;
    double a = -INFINITY, b = -INFINITY;
    for (int i = skip; i < skip + third; i++)
        a = fmax(a, f(&se->s[i]));
    for (int i = se->n - third; i < se->n; i++)
        b = fmax(b, f(&se->s[i]));
    *first = a;
    *last = b;
    return b > a + abs + rel * a;
}

static double m_fds(const sp_sample *s) { return s->u.fds; }
static double m_rss(const sp_sample *s) { return s->u.rss_mb; }
static double m_heap(const sp_sample *s) { return s->u.heap_mb; }
static double m_vm(const sp_sample *s) { return s->u.vm_gb; }
static double m_maps(const sp_sample *s) { return s->u.maps; }
static double m_smaps(const sp_sample *s) { return s->u.shared_maps; }
static double m_sgb(const sp_sample *s) { return s->u.shared_gb; }
static double m_shm(const sp_sample *s) { return s->u.shm_mb; }

static const struct metric {
    const char *name;
    double (*f)(const sp_sample *);
    double abs, rel;
} metrics[] = {
    { "open fds", m_fds, 3, 0 },
    /* RSS includes what malloc keeps of freed memory (per-thread arenas, as large
     * as the largest job so far): a leak shows in the heap in use first */
    { "heap in use MB", m_heap, 16, 0.1 },
    { "RSS MB", m_rss, 256, 0.5 },
    { "virtual GB", m_vm, 1, 0 },
    { "mappings", m_maps, 8, 0 },
    { "shared mappings", m_smaps, 2, 0 },
    { "shared mapping GB", m_sgb, 0.5, 0 },
    { "/dev/shm MB (machine)", m_shm, 512, 0 },
};


/* Prints the start/end of each metric of a sp_series after pools; counts growth. */
int sp_judge_series(FILE *f, const char *who, const sp_series *se)
{
    int growth_failures = 0;
    if (se->n == 0)
        return 0;
    fprintf(f, "  %s, after each of %d pools (first -> last; max of first/last third):\n", who,
            se->n);
    for (size_t k = 0; k < sizeof metrics / sizeof *metrics; k++) {
        const struct metric *m = &metrics[k];
        double a, b;
        bool g = grows(se, m->f, m->abs, m->rel, &a, &b);
        fprintf(f, "    %-22s %10.2f -> %10.2f   (%.2f / %.2f)%s\n", m->name,
                m->f(&se->s[0]), m->f(&se->s[se->n - 1]), a, b, g ? "  GROWS" : "");
        growth_failures += g;
    }
    int leftover = 0;
    for (int i = 0; i < se->n; i++)
        leftover += se->s[i].procs > 0;
    fprintf(f, "    %-22s %10d -> %10d   (pools that left processes behind: %d)\n",
            "processes", se->s[0].procs, se->s[se->n - 1].procs, leftover);
    growth_failures += leftover > 0;
    return growth_failures;
}

void sp_print_curve(FILE *f, const sp_series *curve)
{
    int n = curve->n, rows = n < 12 ? n : 12;
    fprintf(f, "  over time (master):\n  %7s %6s %12s %7s %5s %6s %8s %8s %8s %9s %9s\n",
            "t s", "pools", "items", "kills", "fds", "procs", "heap MB", "RSS MB", "virt GB",
            "shared GB", "shm MB");
    for (int r = 0; r < rows; r++) {
        const sp_sample *s = &curve->s[rows == 1 ? 0 : (int)((long)r * (n - 1) / (rows - 1))];
        fprintf(f, "  %7.0f %6llu %12llu %7llu %5d %6d %8.1f %8.1f %8.2f %9.2f %9.1f\n", s->t,
                (unsigned long long)s->pools, (unsigned long long)s->items,
                (unsigned long long)s->kills, s->u.fds, s->procs, s->u.heap_mb, s->u.rss_mb,
                s->u.vm_gb, s->u.shared_gb, s->u.shm_mb);
    }
}
