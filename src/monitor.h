/* Results the master watches while they run: their progress bar (bar.c) and
 * their journal (journal.c). One thread per pool (monitor.c), started by the first
 * watched result, wakes every MONITOR_TICK_S: it appends what arrived to each
 * journal and redraws the bars. Finalization (result.c) calls rp__monitor_final,
 * which writes the rest and draws the last line before the result is ready, so
 * a blocking rp_map returns with both done. Nothing here runs in a worker or on
 * a serving rank. Private to the core. */
#ifndef RP_MONITOR_H
#define RP_MONITOR_H

#include "result.h"

#define MONITOR_TICK_S 10e-3 /* the monitor thread's period */

struct rp__journal;

/* What a watched result carries (rp_result's `monitor`). */
struct rp__monitorres {
    size_t              total;    /* the caller's n (the job may run fewer: journal) */
    size_t              skipped;  /* items restored from the journal, not run */
    struct rp__journal *journal;  /* NULL: none */
    /* the bar (bar.c) */
    bool                bar;      /* draw one */
    bool                asked;    /* by the call (opts.progress): the last line always */
    bool                drawn;    /* a line was drawn */
    double              t0;       /* submission */
    double              next;     /* when the next line is due */
    rp_result_t        *wnext;    /* the monitor thread's list */
};

/* An imap stream's bar (stream.c), drawn by the consuming thread as it advances:
 * a stream is many jobs, so no result carries it. */
struct rp__sbar {
    bool   on, asked, drawn;
    double t0, next;
};

/* ---- monitor.c ---- */

/* $RP_PROGRESS asks for a bar on every call. */
bool rp__progress_env(void);

/* Sets r->monitor up for the options (bar: opts.progress or $RP_PROGRESS); keeps a
 * journal state already there. \return RP_OK or RP_ENOMEM. */
int  rp__monitor_attach(rp_result_t *r, const rp_map_opts_t *opts);
/* After a successful submit: hands r to the pool's monitor thread (which holds a
 * reference until r is ready). \return RP_OK or RP_ENOMEM/RP_ESYS (not watched:
 * the job runs anyway; its journal is written at the end). */
int  rp__monitor_add(rp_pool_t *pool, rp_result_t *r);
/* Finalization, after the backend released the job: the journal's last records
 * and the caller's view of the whole job (journal.c), the bar's last line. */
void rp__monitor_final(rp_result_t *r);
/* Destruction of r: frees what monitor holds. */
void rp__monitor_free(struct rp__monitorres *w);
/* rp_pool_free, after join: stops the pool's monitor thread. */
void rp__monitor_stop(rp_pool_t *pool);

/* ---- bar.c ---- */

/* Draws r's line if one is due (monitor thread), or the last one (final). */
void rp__bar_draw(rp_result_t *r, bool final);
/* The stream's line when due: done items of total (SIZE_MAX: not known yet, a
 * producer), the last one (final) with failed. */
void rp__bar_stream(struct rp__sbar *b, size_t done, size_t total, size_t failed, bool final);

/* ---- journal.c ---- */

/* rp_map_async / rp_map_var_async with opts->journal: reads the journal, puts
 * what it holds into out (fixed: out_size bytes per item; var: out is the
 * rp__varslot array), submits a job of the items it lacks. \return RP_OK,
 * RP_EJOURNAL, RP_ENOMEM, or what rp__result_submit returns. */
int  rp__journal_submit(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                        size_t in_size, void *out, size_t out_size,
                        const rp_map_opts_t *opts, unsigned flags, rp_result_t **res);
/* monitor thread: appends what arrived since the last call. */
void rp__journal_pump(rp_result_t *r);
/* Finalization: appends the rest, flushes and closes the file, and gives the
 * result the caller's indices, outputs and restored failures. */
void rp__journal_final(rp_result_t *r);
void rp__journal_free(struct rp__journal *j);

#endif /* RP_MONITOR_H */
