/* /proc readers for the soak program: see soak_proc.h. */
#define _GNU_SOURCE 1
#include "soak_proc.h"

#include <ctype.h>
#include <dirent.h>
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
