/* The multi-view batch pipeline: view chains per sample, worker threads one or more batches
 * ahead of training, fixed slot buffers. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "invar/data.h"

/* ---- one view's chain ----------------------------------------------------------------------- */

void invar_view_out_shape(const struct invar_view *v, const int64_t in[3], int64_t out[3])
{
    int64_t cur[3] = {in[0], in[1], in[2]};
    for (int i = 0; i < v->n_augments; i++) {
        const struct invar_plugin *p = v->augments[i].plugin;
        if (p->ops.augment->out_shape) {
            int64_t next[3];
            p->ops.augment->out_shape(v->augments[i].config, cur, next);
            memcpy(cur, next, sizeof cur);
        }
    }
    memcpy(out, cur, sizeof cur);
}

int64_t invar_view_scratch_numel(const struct invar_view *v, const int64_t in[3])
{
    int64_t cur[3] = {in[0], in[1], in[2]};
    int64_t most = cur[0] * cur[1] * cur[2];
    for (int i = 0; i < v->n_augments; i++) {
        const struct invar_plugin *p = v->augments[i].plugin;
        if (p->ops.augment->out_shape) {
            int64_t next[3];
            p->ops.augment->out_shape(v->augments[i].config, cur, next);
            memcpy(cur, next, sizeof cur);
        }
        if (cur[0] * cur[1] * cur[2] > most)
            most = cur[0] * cur[1] * cur[2];
    }
    return 2 * most; /* two ping-pong buffers */
}

void invar_view_apply(const struct invar_view *v, uint64_t seed, int64_t epoch, int64_t sample,
                      int64_t view, const float *in, const int64_t in_shape[3], float *out,
                      float *scratch)
{
    struct invar_rng rng;
    invar_rng_init(&rng, seed, invar_rng_stream((uint64_t)epoch, (uint64_t)sample,
                                                (uint64_t)view, 0));
    int64_t half = invar_view_scratch_numel(v, in_shape) / 2;
    struct invar_image cur = {(float *)in, in_shape[0], in_shape[1], in_shape[2]};
    int which = 0;
    for (int i = 0; i < v->n_augments; i++) {
        const struct invar_plugin_use *a = &v->augments[i];
        /* The draw is taken whether or not p is 1, so a chain's randomness does not shift
         * when one probability changes. */
        float u = invar_rng_uniform(&rng);
        if (u >= a->p)
            continue;
        struct invar_image next = {scratch + which * half, cur.c, cur.h, cur.w};
        a->plugin->ops.augment->apply(a->config, &rng, &cur, &next);
        cur = next;
        which ^= 1;
    }
    memcpy(out, cur.data, (size_t)invar_image_numel(&cur) * sizeof *out);
}

/* ---- the loader ----------------------------------------------------------------------------- */

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY };

struct slot {
    struct invar_batch batch;
    int64_t *indices;  /* (B) */
    int32_t *labels;   /* (B) */
    enum slot_state state;
    int64_t batch_no;
    uint64_t generation;
};

struct invar_loader {
    const struct invar_dataset *d;
    struct invar_loader_config cfg;
    struct invar_view views[INVAR_MAX_VIEWS];
    int64_t view_shape[INVAR_MAX_VIEWS][3];
    int64_t n, n_batches;
    int64_t *perm;          /* (N) this epoch's order */
    int64_t epoch;
    float *mean, *std;      /* (C) or NULL */

    int n_slots;
    struct slot *slots;
    int n_workers;
    pthread_t *workers;
    float **scratch;        /* per worker */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active, quit;
    uint64_t generation;
    int64_t next_claim, next_consume;
    struct slot *held;      /* handed to the consumer, released at the next call */
};

static void fill_slot(struct invar_loader *l, struct slot *s, int64_t b, float *scratch)
{
    const struct invar_dataset *d = l->d;
    const int64_t *shape = invar_dataset_shape(d);
    int64_t start = b * l->cfg.batch_size;
    int64_t size = l->n - start < l->cfg.batch_size ? l->n - start : l->cfg.batch_size;
    const int32_t *labels = invar_dataset_labels(d);
    s->batch.size = size;
    s->batch.index = b;
    for (int64_t i = 0; i < size; i++) {
        int64_t idx = l->perm[start + i];
        s->indices[i] = idx;
        s->labels[i] = labels[idx];
        for (int v = 0; v < l->cfg.n_views; v++) {
            const int64_t *vs = l->view_shape[v];
            int64_t vn = vs[0] * vs[1] * vs[2];
            float *out = s->batch.views[v].data + i * vn;
            invar_view_apply(&l->views[v], l->cfg.seed, l->epoch, idx, v,
                             invar_dataset_sample(d, idx), shape, out, scratch);
            if (l->mean) {
                int64_t hw = vs[1] * vs[2];
                for (int64_t c = 0; c < vs[0]; c++) {
                    float m = l->mean[c], inv = 1.0f / l->std[c];
                    for (int64_t j = 0; j < hw; j++)
                        out[c * hw + j] = (out[c * hw + j] - m) * inv;
                }
            }
        }
    }
    for (int v = 0; v < l->cfg.n_views; v++) {
        const int64_t *vs = l->view_shape[v];
        invar_tensor_wrap(&s->batch.views[v], s->batch.views[v].data, 4,
                          (int64_t[]){size, vs[0], vs[1], vs[2]});
    }
}

static void *worker_main(void *arg)
{
    struct invar_loader *l = *(struct invar_loader **)arg;
    int id = (int)(((struct invar_loader **)arg) - (struct invar_loader **)NULL);
    (void)id;
    return l;
}

struct worker_arg {
    struct invar_loader *l;
    int id;
};

static void *worker_loop(void *varg)
{
    struct worker_arg *wa = varg;
    struct invar_loader *l = wa->l;
    float *scratch = l->scratch[wa->id];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->quit)
            break;
        struct slot *s = NULL;
        if (l->active && l->next_claim < l->n_batches) {
            struct slot *cand = &l->slots[l->next_claim % l->n_slots];
            if (cand->state == SLOT_FREE)
                s = cand;
        }
        if (!s) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        int64_t b = l->next_claim++;
        uint64_t gen = l->generation;
        s->state = SLOT_FILLING;
        s->batch_no = b;
        s->generation = gen;
        pthread_mutex_unlock(&l->mu);
        fill_slot(l, s, b, scratch);
        pthread_mutex_lock(&l->mu);
        s->state = gen == l->generation ? SLOT_READY : SLOT_FREE;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

enum invar_status invar_loader_create(struct invar_loader **out, const struct invar_dataset *d,
                                      const struct invar_loader_config *cfg,
                                      struct invar_error *err)
{
    *out = NULL;
    if (cfg->n_views < 1 || cfg->n_views > INVAR_MAX_VIEWS)
        return invar_error_set(err, INVAR_ERR_CONFIG, "views: %d views (1 to %d allowed)",
                               cfg->n_views, INVAR_MAX_VIEWS);
    if (cfg->batch_size < 1)
        return invar_error_set(err, INVAR_ERR_CONFIG, "batch_size must be at least 1");
    struct invar_loader *l = calloc(1, sizeof *l);
    if (!l)
        return invar_error_set(err, INVAR_ERR_NOMEM, "loader: out of memory");
    l->d = d;
    l->cfg = *cfg;
    l->n = invar_dataset_count(d);
    l->n_batches = cfg->drop_last ? l->n / cfg->batch_size
                                  : (l->n + cfg->batch_size - 1) / cfg->batch_size;
    const int64_t *shape = invar_dataset_shape(d);
    int64_t scratch_numel = 1;
    for (int v = 0; v < cfg->n_views; v++) {
        l->views[v] = cfg->views[v];
        invar_view_out_shape(&l->views[v], shape, l->view_shape[v]);
        int64_t s = invar_view_scratch_numel(&l->views[v], shape);
        if (s > scratch_numel)
            scratch_numel = s;
    }
    l->n_workers = cfg->threads < 1 ? 1 : cfg->threads;
    l->n_slots = l->n_workers + 2;
    l->perm = malloc((size_t)(l->n ? l->n : 1) * sizeof *l->perm);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    l->workers = calloc((size_t)l->n_workers, sizeof *l->workers);
    l->scratch = calloc((size_t)l->n_workers, sizeof *l->scratch);
    int ok = l->perm && l->slots && l->workers && l->scratch;
    if (ok && cfg->mean) {
        l->mean = malloc((size_t)shape[0] * sizeof(float));
        l->std = malloc((size_t)shape[0] * sizeof(float));
        ok = l->mean && l->std;
        if (ok) {
            memcpy(l->mean, cfg->mean, (size_t)shape[0] * sizeof(float));
            memcpy(l->std, cfg->std, (size_t)shape[0] * sizeof(float));
        }
    }
    for (int i = 0; ok && i < l->n_slots; i++) {
        struct slot *s = &l->slots[i];
        s->indices = malloc((size_t)cfg->batch_size * sizeof *s->indices);
        s->labels = malloc((size_t)cfg->batch_size * sizeof *s->labels);
        ok = s->indices && s->labels;
        s->batch.indices = s->indices;
        s->batch.labels = s->labels;
        for (int v = 0; ok && v < cfg->n_views; v++) {
            const int64_t *vs = l->view_shape[v];
            s->batch.views[v].data =
                aligned_alloc(64, (((size_t)(cfg->batch_size * vs[0] * vs[1] * vs[2]) *
                                    sizeof(float)) + 63) & ~(size_t)63);
            ok = s->batch.views[v].data != NULL;
        }
    }
    for (int w = 0; ok && w < l->n_workers; w++) {
        l->scratch[w] = malloc((size_t)scratch_numel * sizeof(float));
        ok = l->scratch[w] != NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (!ok) {
        l->n_workers = 0;
        invar_loader_destroy(l);
        return invar_error_set(err, INVAR_ERR_NOMEM, "loader: out of memory for batch buffers");
    }
    static struct worker_arg args_unused;
    (void)args_unused;
    (void)worker_main;
    struct worker_arg *args = calloc((size_t)l->n_workers, sizeof *args);
    if (!args) {
        l->n_workers = 0;
        invar_loader_destroy(l);
        return invar_error_set(err, INVAR_ERR_NOMEM, "loader: out of memory");
    }
    for (int w = 0; w < l->n_workers; w++) {
        args[w] = (struct worker_arg){l, w};
        if (pthread_create(&l->workers[w], NULL, worker_loop, &args[w]) != 0) {
            l->n_workers = w;
            invar_loader_destroy(l);
            free(args);
            return invar_error_set(err, INVAR_ERR_INTERNAL, "loader: cannot start a thread");
        }
    }
    /* The argument block lives as long as the workers: keep it on the loader. */
    l->scratch = l->scratch; /* (unchanged) */
    *out = l;
    l->held = (struct slot *)(void *)args; /* parked until the first start_epoch */
    return INVAR_OK;
}
