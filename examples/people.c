/* people: a list of structs in, a list of structs out. Everybody gets a year older.
 *
 * Python:
 *     def birthday(p): return Person(p.name, p.age + 1)
 *     with Pool() as pool:
 *         older = pool.map(birthday, people)
 *
 * Items are plain bytes copied to the workers: any struct without pointers works
 * (a pointer would point into the caller's memory, which a worker cannot see).
 */
#include <stdio.h>
#include <string.h>

#include <rankpool.h>

struct person {
    char name[32];
    int  age;
};

static int birthday(const void *in, void *out, rp_ctx_t *ctx)
{
    const struct person *p = in;
    struct person *older = out;

    if (p->age < 0)
        return rp_raise(ctx, RP_ETASK, "%s has a negative age", p->name);
    *older = *p;
    older->age = p->age + 1;
    return 0;
}

int main(void)
{
    const struct person people[] = {
        {"Ada", 36}, {"Alan", 41}, {"Grace", 85}, {"Dennis", 70}, {"Barbara", 29},
    };
    enum { N = sizeof people / sizeof people[0] };
    struct person older[N];
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "people: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    rc = rp_map(pool, birthday, people, N, sizeof people[0], older, sizeof older[0], NULL,
                &err);
    if (rc != RP_OK) {
        fprintf(stderr, "people: item %zu: %s: %s\n", err.index, rp_strerror(rc),
                err.message);
        goto done;
    }
    for (int i = 0; i < N; i++) {
        printf("people: %-8s %d -> %d\n", older[i].name, people[i].age, older[i].age);
        if (strcmp(older[i].name, people[i].name) != 0 || older[i].age != people[i].age + 1) {
            fprintf(stderr, "people: item %d is wrong\n", i);
            goto done;
        }
    }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "people: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
