/* The multi-view batch pipeline: view chains per sample, worker threads one or more batches
 * ahead of training, fixed slot buffers.
 *
 * Batch b of an epoch always goes to slot b % n_slots. Workers claim batch numbers in order
 * under the lock and fill their slot outside it; the consumer waits for its batch number to be
 * READY and releases the slot it held at its next call. A new epoch bumps `generation`, so a
 * fill that was under way for the old epoch is discarded when it finishes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "invar/data.h"

/* ---- one view's chain ----------------------------------------------------------------------- */

static void chain_shapes(const struct invar_view *v, const int64_t in[3], int64_t out[3],
                         int64_t *largest)
{
    int64_t cur[3] = {in[0], in[1], in[2]};
    int64_t most = cur[0] * cur[1] * cur[2];
    for (size_t i = 0; i < v->n_augs; i++) {
        const struct invar_plugin_use *a = &v->augs[i];
        if (a->plugin->ops.augment->out_shape) {
            int64_t next[3];
            a->plugin->ops.augment->out_shape(a->config, cur, next);
            memcpy(cur, next, sizeof cur);
        }
        if (cur[0] * cur[1] * cur[2] > most)
            most = cur[0] * cur[1] * cur[2];
    }
    if (out)
        memcpy(out, cur, sizeof cur);
    if (largest)
        *largest = most;
}

void invar_view_out_shape(const struct invar_view *v, const int64_t in[3], int64_t out[3])
{
    chain_shapes(v, in, out, NULL);
}

int64_t invar_view_scratch_numel(const struct invar_view *v, const int64_t in[3])
{
    int64_t most;
    chain_shapes(v, in, NULL, &most);
    return 2 * most; /* two ping-pong buffers */
}

void invar_view_apply(const struct invar_view *v, uint64_t seed, int64_t epoch, int64_t sample,
                      int64_t view, const float *in, const int64_t in_shape[3], float *out,
                      float *scratch, int64_t scratch_numel)
{
    struct invar_rng rng;
    invar_rng_init(&rng, seed,
                   invar_rng_stream((uint64_t)epoch, (uint64_t)sample, (uint64_t)view, 0));
    int64_t half = scratch_numel / 2;
    struct invar_image cur = {(float *)in, in_shape[0], in_shape[1], in_shape[2]};
    int which = 0;
    for (size_t i = 0; i < v->n_augs; i++) {
        const struct invar_plugin_use *a = &v->augs[i];
        /* The draw is taken even when p is 1, so a chain's randomness does not shift when one
         * probability changes. */
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
};

struct worker {
    struct invar_loader *l;
    pthread_t thread;
    float *scratch;    /* ping-pong buffers of the largest view chain */
    int started;
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
    int64_t scratch_numel;  /* floats in each worker's scratch: the largest view chain's */

    int n_slots;
    struct slot *slots;
    int n_workers;
    struct worker *workers;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active, quit;
    uint64_t generation;
    int64_t next_claim, next_consume;
    struct slot *held;      /* handed to the consumer, released at its next call */
};

static void fill_slot(struct invar_loader *l, struct slot *s, int64_t b, float *scratch,
                      int64_t scratch_numel)
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
            float *out = s->batch.views[v].data + i * vs[0] * vs[1] * vs[2];
            invar_view_apply(&l->views[v], l->cfg.seed, l->epoch, idx, v,
                             invar_dataset_sample(d, idx), shape, out, scratch, scratch_numel);
            if (!l->mean)
                continue;
            int64_t hw = vs[1] * vs[2];
            for (int64_t c = 0; c < vs[0]; c++) {
                float m = l->mean[c], inv = 1.0f / l->std[c];
                for (int64_t j = 0; j < hw; j++)
                    out[c * hw + j] = (out[c * hw + j] - m) * inv;
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
    struct worker *w = arg;
    struct invar_loader *l = w->l;
    pthread_mutex_lock(&l->mu);
    while (!l->quit) {
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
        pthread_mutex_unlock(&l->mu);
        fill_slot(l, s, b, w->scratch, l->scratch_numel);
        pthread_mutex_lock(&l->mu);
        s->state = gen == l->generation ? SLOT_READY : SLOT_FREE;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int loader_alloc(struct invar_loader *l)
{
    const int64_t *shape = invar_dataset_shape(l->d);
    const struct invar_loader_config *cfg = &l->cfg;
    l->perm = malloc((size_t)(l->n ? l->n : 1) * sizeof *l->perm);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    l->workers = calloc((size_t)l->n_workers, sizeof *l->workers);
    if (!l->perm || !l->slots || !l->workers)
        return 0;
    if (cfg->mean) {
        l->mean = malloc((size_t)shape[0] * sizeof(float));
        l->std = malloc((size_t)shape[0] * sizeof(float));
        if (!l->mean || !l->std)
            return 0;
        memcpy(l->mean, cfg->mean, (size_t)shape[0] * sizeof(float));
        memcpy(l->std, cfg->std, (size_t)shape[0] * sizeof(float));
    }
    for (int i = 0; i < l->n_slots; i++) {
        struct slot *s = &l->slots[i];
        s->indices = malloc((size_t)cfg->batch_size * sizeof *s->indices);
        s->labels = malloc((size_t)cfg->batch_size * sizeof *s->labels);
        if (!s->indices || !s->labels)
            return 0;
        s->batch.indices = s->indices;
        s->batch.labels = s->labels;
        for (int v = 0; v < cfg->n_views; v++) {
            const int64_t *vs = l->view_shape[v];
            size_t bytes = (size_t)(cfg->batch_size * vs[0] * vs[1] * vs[2]) * sizeof(float);
            s->batch.views[v].data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
            if (!s->batch.views[v].data)
                return 0;
        }
    }
    for (int w = 0; w < l->n_workers; w++) {
        l->workers[w].l = l;
        l->workers[w].scratch = malloc((size_t)l->scratch_numel * sizeof(float));
        if (!l->workers[w].scratch)
            return 0;
    }
    return 1;
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
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->d = d;
    l->cfg = *cfg;
    l->cfg.mean = l->cfg.std = NULL;
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
    l->cfg.views = l->views;
    l->n_workers = cfg->threads < 1 ? 1 : cfg->threads;
    l->n_slots = l->n_workers + 2;
    l->cfg.mean = cfg->mean;
    l->cfg.std = cfg->std;
    l->scratch_numel = scratch_numel;
    if (!loader_alloc(l)) {
        invar_loader_destroy(l);
        return invar_error_set(err, INVAR_ERR_NOMEM, "loader: out of memory for batch buffers");
    }
    l->cfg.mean = l->mean;
    l->cfg.std = l->std;
    for (int w = 0; w < l->n_workers; w++) {
        if (pthread_create(&l->workers[w].thread, NULL, worker_main, &l->workers[w]) != 0) {
            invar_loader_destroy(l);
            return invar_error_set(err, INVAR_ERR_INTERNAL, "loader: cannot start a thread");
        }
        l->workers[w].started = 1;
    }
    *out = l;
    return INVAR_OK;
}

void invar_loader_destroy(struct invar_loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int w = 0; l->workers && w < l->n_workers; w++) {
        if (l->workers[w].started)
            pthread_join(l->workers[w].thread, NULL);
        free(l->workers[w].scratch);
    }
    for (int i = 0; l->slots && i < l->n_slots; i++) {
        free(l->slots[i].indices);
        free(l->slots[i].labels);
        for (int v = 0; v < l->cfg.n_views; v++)
            free(l->slots[i].batch.views[v].data);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->workers);
    free(l->slots);
    free(l->perm);
    free(l->mean);
    free(l->std);
    free(l);
}

int64_t invar_loader_batches(const struct invar_loader *l) { return l->n_batches; }

void invar_loader_start_epoch(struct invar_loader *l, int64_t epoch)
{
    pthread_mutex_lock(&l->mu);
    l->generation++;
    /* Fills of the previous epoch read perm: let them finish (they will be discarded). */
    for (;;) {
        int filling = 0;
        for (int i = 0; i < l->n_slots; i++)
            filling |= l->slots[i].state == SLOT_FILLING;
        if (!filling)
            break;
        pthread_cond_wait(&l->cv, &l->mu);
    }
    for (int i = 0; i < l->n_slots; i++)
        l->slots[i].state = SLOT_FREE;
    l->held = NULL;
    l->epoch = epoch;
    for (int64_t i = 0; i < l->n; i++)
        l->perm[i] = i;
    if (l->cfg.shuffle) {
        struct invar_rng r;
        invar_rng_init(&r, l->cfg.seed, invar_rng_stream((uint64_t)epoch, 0x5ffe, 0, 0));
        invar_rng_permutation(&r, l->perm, l->n);
    }
    l->next_claim = l->next_consume = 0;
    l->active = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

const struct invar_batch *invar_loader_next(struct invar_loader *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->held) {
        l->held->state = SLOT_FREE;
        l->held = NULL;
        pthread_cond_broadcast(&l->cv);
    }
    if (!l->active || l->next_consume >= l->n_batches) {
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    struct slot *s = &l->slots[l->next_consume % l->n_slots];
    while (!(s->state == SLOT_READY && s->batch_no == l->next_consume))
        pthread_cond_wait(&l->cv, &l->mu);
    l->next_consume++;
    l->held = s;
    pthread_mutex_unlock(&l->mu);
    return &s->batch;
}
