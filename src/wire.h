/* Framing of the messages between the master and the serving ranks of the mpi
 * backend. Every message starts with a header (magic, version, kind, sender or
 * target worker, total length) that the receiver checks before reading anything
 * else; every field after it is read through a bounds-checked reader, so a short,
 * long, or garbled message is RP_EPROTO, never a crash. Integers are host order
 * (the ranks of one job share an architecture; the magic catches the others).
 *
 * No MPI here: the backend moves the bytes; tests/test_wire.c checks the framing
 * in one process. */
#ifndef RP_WIRE_H
#define RP_WIRE_H

#include "internal.h" /* first: config.h */
#include "fnref.h"

#define RP__WIRE_MAGIC   0x52504d57u  /* "RPMW" */
#define RP__WIRE_VERSION 5u  /* 4: the CANCEL, PROGRESS and ALIVE messages; 5: BUNDLE */

enum rp__msg_kind {
    RP__MSG_HELLO = 1,   /* master -> rank: pool settings, initializer */
    RP__MSG_READY,       /* rank -> master: one worker started (or its init failed) */
    RP__MSG_GO,          /* master -> rank: start serving, or give up (status) */
    RP__MSG_BATCH,       /* master -> rank: run items [start, start+count) of a job */
    RP__MSG_RESULT,      /* rank -> master: a batch is processed */
    RP__MSG_TERMINATE,   /* master -> rank: kill the workers, stop */
    RP__MSG_STOP,        /* master -> rank: no more work, stop */
    RP__MSG_BYE,         /* rank -> master: stopped (after STOP or TERMINATE) */
    RP__MSG_PROTO,       /* rank -> master: a message from the master was malformed */
    /* start-up, on the communicator the pool is created on (before its duplicate) */
    RP__MSG_JOIN,        /* master -> rank: who is there? (seq: this start's number;
                            header's worker field: milliseconds the master waits for
                            the answers, UINT32_MAX: forever) */
    RP__MSG_JOINED,      /* rank -> master: here (seq echoed) */
    RP__MSG_START,       /* master -> rank: everyone is there (RP_OK) or not (seq echoed) */
    RP__MSG_DIED,        /* rank -> master: a worker process died inside a batch */
    RP__MSG_CANCEL,      /* master -> rank: a job is canceled (rp_result_cancel): its
                            batches stop before their next item (header flags:
                            RP_CANCEL_KILL: kill the worker processes running them) */
    RP__MSG_PROGRESS,    /* rank -> master: items of a running batch processed so far */
    RP__MSG_ALIVE,       /* rank -> master: still here, batches running (a control message) */
    RP__MSG_BUNDLE,      /* either way, with node leaders: several BATCH messages for a
                            leader's workers, or several RESULT and PROGRESS messages of
                            its workers, in one (header's worker field: how many;
                            mpi/bundle.c) */
    RP__MSG_KIND_MAX
};

/* The header every message starts with. */
typedef struct rp__wire_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;
    uint32_t worker;    /* the worker a message is for or from */
    uint32_t flags;     /* kind-specific */
    uint64_t length;    /* bytes of the whole message, header included */
} rp__wire_hdr;

#define RP__WIRE_HDR_SIZE 24

/* ---- a growable writer and a bounds-checked reader -------------------------------- */

typedef struct rp__wbuf {
    char  *buf;
    size_t len, cap;
    int    err;         /* RP_ENOMEM once an allocation failed; later puts are no-ops */
} rp__wbuf;

void  rp__wbuf_init(rp__wbuf *w);
void  rp__wbuf_free(rp__wbuf *w);
/* Room for n more bytes; returns where they go (NULL on failure), len += n. */
void *rp__wbuf_grow(rp__wbuf *w, size_t n);
void  rp__wbuf_put(rp__wbuf *w, const void *p, size_t n);
void  rp__wbuf_u32(rp__wbuf *w, uint32_t v);
void  rp__wbuf_u64(rp__wbuf *w, uint64_t v);

typedef struct rp__rbuf {
    const char *p;
    size_t      left;
    int         err;    /* RP_EPROTO once a read ran past the end */
} rp__rbuf;

void        rp__rbuf_init(rp__rbuf *r, const void *p, size_t len);
const void *rp__rbuf_get(rp__rbuf *r, size_t n);   /* NULL (and err) past the end */
uint32_t    rp__rbuf_u32(rp__rbuf *r);
uint64_t    rp__rbuf_u64(rp__rbuf *r);

/* ---- framing ------------------------------------------------------------------------ */

/* Starts a message in w (which is reset): writes a header to be completed by end. */
void rp__wire_begin(rp__wbuf *w, unsigned kind, uint32_t worker, uint32_t flags);
/* Writes the final length into the header. \return w->err (RP_OK or RP_ENOMEM). */
int  rp__wire_end(rp__wbuf *w);
/* Writes a complete header at p (RP__WIRE_HDR_SIZE bytes) for a message of length
 * bytes built in place elsewhere. */
void rp__wire_hdr_write(void *p, unsigned kind, uint32_t worker, uint32_t flags,
                        uint64_t length);
/* Checks the header of a received message of len bytes and positions r after it.
 * \return RP_OK or RP_EPROTO (too short, bad magic, version, kind or length). */
int  rp__wire_open(const void *buf, size_t len, rp__wire_hdr *h, rp__rbuf *r);

/* ---- message bodies --------------------------------------------------------------- */

/* A function reference inside a message. */
void rp__wire_put_fnref(rp__wbuf *w, const rp__fnref *ref);
int  rp__wire_get_fnref(rp__rbuf *r, rp__fnref *ref);

/* HELLO: pool settings for the serving ranks. */
enum {
    RP__HELLO_BIND      = 1u, /* bind each worker process to a core */
    RP__HELLO_INPROCESS = 2u, /* run tasks in the rank itself (no worker process) */
    RP__HELLO_LEADERS   = 4u, /* a node's workers live on its leader (mpi/leader.c) */
};
typedef struct rp__wire_hello {
    uint32_t    nworkers;     /* workers in the pool */
    uint32_t    nranks;       /* ranks serving (workers spread round robin) */
    int64_t     max_tasks;    /* max_tasks_per_worker */
    uint32_t    flags;        /* RP__HELLO_* */
    uint32_t    has_init;
    rp__fnref   init;         /* valid when has_init */
    const void *initarg;      /* initarg_size bytes */
    uint64_t    initarg_size;
} rp__wire_hello;

int rp__wire_put_hello(rp__wbuf *w, const rp__wire_hello *m);
int rp__wire_get_hello(rp__rbuf *r, rp__wire_hello *m);

/* READY: one worker of a rank has started; status RP_OK or RP_EINIT (err filled). */
typedef struct rp__wire_ready {
    int32_t    status;
    int32_t    pid;
    char       host[64];
    rp_error_t err;
} rp__wire_ready;

int rp__wire_put_ready(rp__wbuf *w, uint32_t worker, const rp__wire_ready *m);
int rp__wire_get_ready(rp__rbuf *r, rp__wire_ready *m);

/* BATCH: the items [start, start+count) of job, in chunks of `chunk` items
 * (0 = one chunk), the input bytes following. */
typedef struct rp__wire_batch {
    uint64_t   job;
    uint64_t   seq;        /* the master's number for this batch of this worker */
    uint64_t   start, count, chunk;
    uint64_t   in_size, out_size;
    uint32_t   flags;      /* RP__JOB_VAR, ... */
    uint64_t   timeout_ns; /* an item's time limit, 0 = none (RP__BATCH_CONTROL) */
    uint32_t   retries;    /* a task's failure runs again in place (RP__BATCH_CONTROL) */
    rp__fnref  fn;
    const char *input;     /* count * in_size bytes, inside the message */
    bool       untimed;    /* RP__BATCH_UNTIMED: the batch is its whole job */
    /* read: the task's reference as encoded in the message (fn_rawlen bytes) */
    const char *fn_raw;
    size_t     fn_rawlen;
    bool       fn_known;   /* the encoding was the caller's `known` one: fn not decoded */
} rp__wire_batch;

/* Header flags of a BATCH: its input is not in the message but follows as a
 * separate raw message (sent straight from the caller's array: no copy);
 * CONTROL: timeout_ns and retries follow the job flags (else they are 0). */
enum { RP__BATCH_SEPARATE = 1u, RP__BATCH_CONTROL = 2u, RP__BATCH_UNTIMED = 4u };
/* (UNTIMED: the batch holds every item of its job, so nobody needs the time it
 * took: the serving rank does not read the clock around it) */

/* Writes the whole message; the input is copied from `input`, or, when input is
 * NULL, announced as a separate message (RP__BATCH_SEPARATE). */
int rp__wire_put_batch(rp__wbuf *w, uint32_t worker, const rp__wire_batch *m,
                       const void *input);
/* Reads a batch message; m->input points into the message (NULL for a separate
 * input). Checks the sizes add up. */
int rp__wire_get_batch(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_batch *m);
/* The same, where `known` (known_len bytes, may be NULL) is the encoded reference
 * of an earlier batch: a batch of the same task (the bytes match) leaves m->fn
 * undecoded and sets m->fn_known; the caller has the function already. */
int rp__wire_get_batch_known(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_batch *m,
                             const void *known, size_t known_len);

/* RESULT: the fixed part, then nrec records, then (flag RP__RESULT_INLINE) the
 * count * out_size output bytes; without the flag they follow as a separate raw
 * message written straight into the caller's buffer. Header flags: */
enum {
    RP__RESULT_INLINE   = 1u, /* the outputs are in the message */
    RP__RESULT_ALLFAIL  = 2u, /* every item of the part failed with the one error record
                                 (a task the rank cannot resolve, a batch too large) */
    RP__RESULT_GONE     = 4u, /* the worker is gone (its replacement could not start):
                                 send it nothing more */
    RP__RESULT_RETURNED = 8u, /* the items did not run: they are handed back, to run
                                 on other workers (no records, no outputs) */
};

typedef struct rp__wire_result {
    uint64_t job, seq, start, count, out_size;
    uint64_t nrec;
    uint64_t rec_bytes;    /* bytes of the records */
    uint64_t compute_ns;   /* time the worker spent running the batch */
    const char *records;   /* inside the message */
    const char *outputs;   /* inside the message when inline, else NULL */
} rp__wire_result;

#define RP__RESULT_FIXED (RP__WIRE_HDR_SIZE + 8 * 8)

/* Writes the fixed part (header included) at p: RP__RESULT_FIXED bytes. The records
 * must follow at p + RP__RESULT_FIXED, inline outputs after them. */
void rp__wire_result_write(void *p, uint32_t worker, uint32_t flags,
                           const rp__wire_result *m, uint64_t length);
/* Reads a result message (checks the record area and the inline outputs fit). */
int  rp__wire_get_result(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_result *m);

/* Records of a result: an item's failure, or an item's variable-size output. */
enum { RP__REC_ERROR = 1, RP__REC_VAR = 2, RP__REC_DEAD = 3 /* a replaced VAR */ };

/* Appends an error record at p (which has room for rp__wire_error_size(e) bytes). No
 * record is larger than RP__WIRE_ERROR_MAX (a message of 255 characters). */
#define RP__WIRE_ERROR_MAX 296
size_t rp__wire_error_size(const rp_error_t *e);
size_t rp__wire_error_write(void *p, const rp_error_t *e);
/* A VAR record's header is this many bytes; its data follows. */
#define RP__WIRE_VAR_HDR 24
void   rp__wire_var_write(void *p, uint64_t index, uint64_t size);
void   rp__wire_var_kill(void *p);  /* turns a VAR record into a DEAD one */

/* Iterates records: \return 1 with the next one in *kind and either *e (ERROR) or
 * index/data/size (VAR), 0 at the end, RP_EPROTO when malformed. host is left empty. */
int rp__wire_next_record(rp__rbuf *r, int *kind, rp_error_t *e, uint64_t *index,
                         const void **data, uint64_t *size);

/* DIED: the worker process running batch `seq` of job died. Items [start of the
 * batch, index) were reported by the RESULT messages before it; `index` is the item
 * it was running, or, with RP__DIED_IDLE, the first item it had not started (it
 * died between items). The rest of the batch is the master's to run elsewhere. */
/* RP__DIED_TIMEOUT: the rank killed it, item `index` having run past its job's
 * time limit. */
enum { RP__DIED_IDLE = 1u, RP__DIED_TIMEOUT = 2u };
typedef struct rp__wire_died {
    uint64_t job, seq;
    uint64_t index;
    int32_t  status;       /* waitpid() status, -1 if not known */
    int32_t  pid;
} rp__wire_died;

int rp__wire_put_died(rp__wbuf *w, uint32_t worker, uint32_t flags, const rp__wire_died *m);
int rp__wire_get_died(rp__rbuf *r, rp__wire_died *m);

/* PROGRESS: worker's batch `seq` of job has processed `items` items from its start
 * (a count that only grows; the RESULT messages still carry the outputs). */
typedef struct rp__wire_progress {
    uint64_t job, seq, items;
} rp__wire_progress;

int rp__wire_put_progress(rp__wbuf *w, uint32_t worker, const rp__wire_progress *m);
int rp__wire_get_progress(rp__rbuf *r, rp__wire_progress *m);

/* Small control messages (GO, TERMINATE, STOP, BYE, PROTO, JOIN, JOINED, START,
 * ALIVE): a status and a seq. */
int rp__wire_put_ctl(rp__wbuf *w, unsigned kind, uint32_t worker, int32_t status,
                     uint64_t seq);
int rp__wire_get_ctl(rp__rbuf *r, int32_t *status, uint64_t *seq);

/* CANCEL: the job's id; the header's flags carry RP_CANCEL_KILL. */
int rp__wire_put_cancel(rp__wbuf *w, uint64_t job, uint32_t flags);
int rp__wire_get_cancel(rp__rbuf *r, const rp__wire_hdr *h, uint64_t *job, uint32_t *flags);

#endif /* RP_WIRE_H */
