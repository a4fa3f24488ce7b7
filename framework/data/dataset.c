/* A dataset split read once through its plugin into memory: (N, C, H, W) floats + labels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/data.h"

struct invar_dataset {
    int64_t n;
    int64_t shape[3];   /* (C, H, W) */
    int64_t numel;      /* C * H * W */
    int32_t num_classes;
    float *x;           /* (N, C, H, W) */
    int32_t *y;         /* (N) */
};

enum invar_status invar_dataset_open(struct invar_dataset **out,
                                     const struct invar_plugin_use *use, const char *split,
                                     int64_t limit, struct invar_error *err)
{
    const struct invar_plugin *p = use->plugin;
    *out = NULL;
    if (!p || p->kind != INVAR_KIND_DATASET)
        return invar_error_set(err, INVAR_ERR_INVALID, "%s is not a dataset plugin",
                               p ? p->name : "(null)");
    void *h = NULL;
    struct invar_dataset_info info;
    memset(&info, 0, sizeof info);
    enum invar_status st = p->ops.dataset->open(use->config, split, &h, &info, err);
    if (st != INVAR_OK)
        return st;
    struct invar_dataset *d = calloc(1, sizeof *d);
    if (!d) {
        p->ops.dataset->close(h);
        return invar_error_set(err, INVAR_ERR_NOMEM, "dataset %s: out of memory", p->name);
    }
    d->n = limit > 0 && limit < info.count ? limit : info.count;
    memcpy(d->shape, info.shape, sizeof d->shape);
    d->numel = info.shape[0] * info.shape[1] * info.shape[2];
    d->num_classes = info.num_classes;
    d->x = malloc((size_t)(d->n * d->numel) * sizeof *d->x + 1);
    d->y = malloc((size_t)(d->n ? d->n : 1) * sizeof *d->y);
    if (!d->x || !d->y) {
        p->ops.dataset->close(h);
        invar_dataset_destroy(d);
        return invar_error_set(err, INVAR_ERR_NOMEM,
                               "dataset %s (%s): out of memory for %lld samples", p->name,
                               split, (long long)d->n);
    }
    for (int64_t i = 0; i < d->n; i++) {
        st = p->ops.dataset->read(h, i, d->x + i * d->numel, d->y + i, err);
        if (st != INVAR_OK) {
            p->ops.dataset->close(h);
            invar_dataset_destroy(d);
            return st;
        }
    }
    p->ops.dataset->close(h);
    *out = d;
    return INVAR_OK;
}

enum invar_status invar_dataset_split_off(struct invar_dataset *d, int64_t n_last,
                                          struct invar_dataset **out, struct invar_error *err)
{
    *out = NULL;
    if (n_last < 1 || n_last >= d->n)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "cannot split %lld of %lld samples off: 1 to %lld", (long long)n_last,
                               (long long)d->n, (long long)(d->n - 1));
    struct invar_dataset *h = calloc(1, sizeof *h);
    if (h) {
        *h = *d;
        h->n = n_last;
        h->x = malloc((size_t)(n_last * d->numel) * sizeof *h->x);
        h->y = malloc((size_t)n_last * sizeof *h->y);
    }
    if (!h || !h->x || !h->y) {
        if (h) {
            free(h->x);
            free(h->y);
            free(h);
        }
        return invar_error_set(err, INVAR_ERR_NOMEM, "out of memory for %lld held-out samples",
                               (long long)n_last);
    }
    int64_t first = d->n - n_last;
    memcpy(h->x, d->x + first * d->numel, (size_t)(n_last * d->numel) * sizeof *h->x);
    memcpy(h->y, d->y + first, (size_t)n_last * sizeof *h->y);
    d->n = first; /* the buffers keep their size; only the count shrinks */
    *out = h;
    return INVAR_OK;
}

void invar_dataset_destroy(struct invar_dataset *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    free(d);
}

int64_t invar_dataset_count(const struct invar_dataset *d) { return d->n; }
const int64_t *invar_dataset_shape(const struct invar_dataset *d) { return d->shape; }
int32_t invar_dataset_num_classes(const struct invar_dataset *d) { return d->num_classes; }
const float *invar_dataset_sample(const struct invar_dataset *d, int64_t i)
{
    INVAR_ASSERT(i >= 0 && i < d->n);
    return d->x + i * d->numel;
}
const int32_t *invar_dataset_labels(const struct invar_dataset *d) { return d->y; }

void invar_dataset_stats(const struct invar_dataset *d, float *mean, float *std)
{
    int64_t c = d->shape[0], hw = d->shape[1] * d->shape[2];
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < d->n; i++) {
            const float *p = d->x + i * d->numel + ch * hw;
            for (int64_t j = 0; j < hw; j++) {
                s += p[j];
                ss += (double)p[j] * p[j];
            }
        }
        double cnt = (double)(d->n * hw);
        double m = cnt > 0 ? s / cnt : 0;
        double var = cnt > 0 ? ss / cnt - m * m : 1;
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(var > 1e-12 ? var : 1e-12);
    }
}
