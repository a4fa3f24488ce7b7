/* Fixed-slice parallel loops: see parallel.h. */
#include <pthread.h>

#include "parallel.h"

static int64_t ops_par_min = OPS_PAR_MIN;

void ops_set_par_min(int64_t work)
{
    ops_par_min = work > 0 ? work : OPS_PAR_MIN;
}

struct ops_slice {
    ops_slice_fn fn;
    void *arg;
    int slice;
    int64_t lo, hi;
};

static void *ops_slice_run(void *p)
{
    const struct ops_slice *s = p;
    if (s->lo < s->hi)
        s->fn(s->arg, s->slice, s->lo, s->hi);
    return NULL;
}

void ops_parallel_for(ops_slice_fn fn, void *arg, int64_t n, int64_t work)
{
    if (n <= 0)
        return;
    struct ops_slice s[OPS_THREADS];
    pthread_t th[OPS_THREADS];
    int started[OPS_THREADS] = {0};
    for (int t = 0; t < OPS_THREADS; t++)
        s[t] = (struct ops_slice){fn, arg, t, n * t / OPS_THREADS, n * (t + 1) / OPS_THREADS};
    for (int t = 1; t < OPS_THREADS && work >= ops_par_min && n >= 2; t++)
        started[t] = pthread_create(&th[t], NULL, ops_slice_run, &s[t]) == 0;
    ops_slice_run(&s[0]);
    /* a slice whose thread did not start runs here: the same slice, so the same result */
    for (int t = 1; t < OPS_THREADS; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            ops_slice_run(&s[t]);
    }
}
