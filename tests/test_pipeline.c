/* The data pipeline: view chains, the probability p, normalisation, shuffling, and batches
 * that do not depend on the number of worker threads or on when an epoch is restarted. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "invar/data.h"
#include "plugin_harness.h"

/* ---- a dataset of N tiny images where pixel j of sample i is i + j / 100 ------------------ */

#define N 37
#define C 1
#define H 4
#define W 6

static enum invar_status toy_open(const void *config, const char *split, void **handle,
                                  struct invar_dataset_info *info, struct invar_error *err)
{
    (void)config, (void)split, (void)err;
    *handle = NULL;
    *info = (struct invar_dataset_info){.count = N, .shape = {C, H, W}, .num_classes = 3};
    return INVAR_OK;
}

static enum invar_status toy_read(void *handle, int64_t index, float *out, int32_t *label,
                                  struct invar_error *err)
{
    (void)handle, (void)err;
    for (int j = 0; j < C * H * W; j++)
        out[j] = (float)index + (float)j / 100.0f;
    *label = (int32_t)(index % 3);
    return INVAR_OK;
}

static void toy_close(void *handle) { (void)handle; }

static const struct invar_dataset_ops toy_ops = {toy_open, toy_read, toy_close};
static const struct invar_plugin toy = {
    .abi_version = INVAR_ABI_VERSION, .struct_size = sizeof(struct invar_plugin),
    .kind = INVAR_KIND_DATASET, .name = "toy", .ops = {.dataset = &toy_ops}};

/* ---- two arithmetic augmentations, to see order and probability --------------------------- */

static void add_one(const void *cfg, struct invar_rng *rng, const struct invar_image *in,
                    struct invar_image *out)
{
    (void)cfg, (void)rng;
    *out = (struct invar_image){out->data, in->c, in->h, in->w};
    for (int64_t i = 0; i < invar_image_numel(in); i++)
        out->data[i] = in->data[i] + 1.0f;
}

static void twice(const void *cfg, struct invar_rng *rng, const struct invar_image *in,
                  struct invar_image *out)
{
    (void)cfg, (void)rng;
    *out = (struct invar_image){out->data, in->c, in->h, in->w};
    for (int64_t i = 0; i < invar_image_numel(in); i++)
        out->data[i] = in->data[i] * 2.0f;
}

/* Adds a uniform draw to every pixel: its output shows which RNG stream was used. */
static void add_noise(const void *cfg, struct invar_rng *rng, const struct invar_image *in,
                      struct invar_image *out)
{
    (void)cfg;
    *out = (struct invar_image){out->data, in->c, in->h, in->w};
    float u = invar_rng_uniform(rng);
    for (int64_t i = 0; i < invar_image_numel(in); i++)
        out->data[i] = in->data[i] + u;
}

static const struct invar_augment_ops add_one_ops = {.apply = add_one};
static const struct invar_augment_ops twice_ops = {.apply = twice};
static const struct invar_augment_ops noise_ops = {.apply = add_noise};
#define AUG(n, o)                                                                              \
    {.abi_version = INVAR_ABI_VERSION, .struct_size = sizeof(struct invar_plugin),             \
     .kind = INVAR_KIND_AUGMENT, .name = n, .ops = {.augment = &o}}
static const struct invar_plugin aug_add_one = AUG("add_one", add_one_ops);
static const struct invar_plugin aug_twice = AUG("twice", twice_ops);
static const struct invar_plugin aug_noise = AUG("noise", noise_ops);

static struct invar_dataset *open_toy(int64_t limit)
{
    struct invar_dataset *d;
    struct invar_error err = {0};
    struct invar_plugin_use use = {&toy, NULL, 1};
    cr_assert_eq(invar_dataset_open(&d, &use, "train", limit, &err), INVAR_OK, "%s", err.msg);
    return d;
}

Test(pipeline, dataset_limit_and_stats)
{
    struct invar_dataset *d = open_toy(10);
    cr_assert_eq(invar_dataset_count(d), 10);
    cr_assert_float_eq(invar_dataset_sample(d, 7)[3], 7.03f, 1e-6);
    cr_assert_eq(invar_dataset_labels(d)[5], 2);
    float mean, std;
    invar_dataset_stats(d, &mean, &std);
    /* mean of i + j/100 over i < 10, j < 24: 4.5 + 0.115 */
    cr_assert_float_eq(mean, 4.615f, 1e-4);
    cr_assert(std > 2.8f && std < 2.9f, "std %f", std); /* sqrt(8.25 + 0.0048) */
    invar_dataset_destroy(d);
}

Test(pipeline, chain_order_and_probability)
{
    struct invar_plugin_use chain[2] = {{&aug_add_one, NULL, 1}, {&aug_twice, NULL, 1}};
    struct invar_view v = {chain, 2};
    float in[C * H * W], out[C * H * W], scratch[2 * C * H * W];
    for (int j = 0; j < C * H * W; j++)
        in[j] = (float)j;
    invar_view_apply(&v, 1, 0, 0, 0, in, (int64_t[]){C, H, W}, out, scratch, 2 * C * H * W);
    for (int j = 0; j < C * H * W; j++)
        cr_assert_eq(out[j], ((float)j + 1) * 2);
    chain[0].p = 0; /* never: only the doubling */
    invar_view_apply(&v, 1, 0, 0, 0, in, (int64_t[]){C, H, W}, out, scratch, 2 * C * H * W);
    for (int j = 0; j < C * H * W; j++)
        cr_assert_eq(out[j], (float)j * 2);
    /* p = 0.5 applies about half of the time over many samples */
    chain[0].p = 0.5;
    int applied = 0;
    for (int s = 0; s < 2000; s++) {
        invar_view_apply(&v, 1, 0, s, 0, in, (int64_t[]){C, H, W}, out, scratch, 2 * C * H * W);
        applied += out[0] == 2.0f;
    }
    cr_assert(applied > 900 && applied < 1100, "applied %d of 2000", applied);
}

Test(pipeline, randomness_is_keyed_by_seed_epoch_sample_view)
{
    struct invar_plugin_use chain[1] = {{&aug_noise, NULL, 1}};
    struct invar_view v = {chain, 1};
    float in[C * H * W] = {0}, a[C * H * W], b[C * H * W], scratch[2 * C * H * W];
    const int64_t shape[3] = {C, H, W};
    invar_view_apply(&v, 7, 2, 11, 1, in, shape, a, scratch, 2 * C * H * W);
    invar_view_apply(&v, 7, 2, 11, 1, in, shape, b, scratch, 2 * C * H * W);
    cr_assert_eq(a[0], b[0], "same key, different draw");
    const int64_t keys[4][4] = {{8, 2, 11, 1}, {7, 3, 11, 1}, {7, 2, 12, 1}, {7, 2, 11, 0}};
    for (int k = 0; k < 4; k++) {
        invar_view_apply(&v, (uint64_t)keys[k][0], keys[k][1], keys[k][2], keys[k][3], in, shape,
                         b, scratch, 2 * C * H * W);
        cr_assert_neq(a[0], b[0], "key %d did not change the draw", k);
    }
}

/* Every batch of epochs 0 and 1, flattened, for comparison. */
struct record {
    float views[2][N * C * H * W];
    int64_t indices[N];
    int32_t labels[N];
    int64_t n;
};

static void run_epochs(struct invar_loader *l, int64_t epoch, struct record *r)
{
    memset(r, 0, sizeof *r);
    invar_loader_start_epoch(l, epoch);
    const struct invar_batch *b;
    int64_t expect = 0;
    while ((b = invar_loader_next(l)) != NULL) {
        cr_assert_eq(b->index, expect++);
        for (int v = 0; v < 2; v++)
            memcpy(r->views[v] + r->n * C * H * W, b->views[v].data,
                   (size_t)b->views[v].numel * sizeof(float));
        memcpy(r->indices + r->n, b->indices, (size_t)b->size * sizeof(int64_t));
        memcpy(r->labels + r->n, b->labels, (size_t)b->size * sizeof(int32_t));
        r->n += b->size;
    }
}

static struct invar_loader *make_loader(struct invar_dataset *d, int threads, int shuffle,
                                        int drop_last, const struct invar_view *views)
{
    struct invar_loader_config lc = {.views = views, .n_views = 2, .batch_size = 8, .seed = 3,
                                     .threads = threads, .shuffle = shuffle,
                                     .drop_last = drop_last};
    struct invar_loader *l;
    struct invar_error err = {0};
    cr_assert_eq(invar_loader_create(&l, d, &lc, &err), INVAR_OK, "%s", err.msg);
    return l;
}

static struct invar_plugin_use noise_chain[1] = {{&aug_noise, NULL, 1}};
static const struct invar_view noise_views[2] = {{noise_chain, 1}, {noise_chain, 1}};

Test(pipeline, batches_do_not_depend_on_threads)
{
    struct invar_dataset *d = open_toy(0);
    static struct record one, three;
    struct invar_loader *l1 = make_loader(d, 1, 1, 0, noise_views);
    struct invar_loader *l3 = make_loader(d, 3, 1, 0, noise_views);
    cr_assert_eq(invar_loader_batches(l1), 5); /* 37 / 8, the last one partial */
    for (int64_t e = 0; e < 2; e++) {
        run_epochs(l1, e, &one);
        run_epochs(l3, e, &three);
        cr_assert_eq(one.n, N);
        cr_assert_eq(memcmp(&one, &three, sizeof one), 0, "epoch %lld differs", (long long)e);
    }
    invar_loader_destroy(l1);
    invar_loader_destroy(l3);
    invar_dataset_destroy(d);
}

Test(pipeline, epochs_are_permutations_and_views_are_the_samples)
{
    struct invar_dataset *d = open_toy(0);
    static struct record r0, r1;
    struct invar_loader *l = make_loader(d, 2, 1, 0, noise_views);
    run_epochs(l, 0, &r0);
    run_epochs(l, 1, &r1);
    int seen[N] = {0};
    for (int64_t i = 0; i < N; i++)
        seen[r0.indices[i]]++;
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "sample %d seen %d times", i, seen[i]);
    cr_assert_neq(memcmp(r0.indices, r1.indices, sizeof r0.indices), 0, "same order twice");
    for (int64_t i = 0; i < N; i++) {
        int64_t idx = r0.indices[i];
        cr_assert_eq(r0.labels[i], idx % 3);
        float u0 = r0.views[0][i * C * H * W] - (float)idx;  /* the draw added to view 0 */
        float u1 = r0.views[1][i * C * H * W] - (float)idx;
        cr_assert(u0 >= 0 && u0 < 1 && u1 >= 0 && u1 < 1);
        cr_assert_neq(u0, u1, "two views of sample %lld drew alike", (long long)idx);
        /* the whole image moved by the same draw */
        cr_assert_float_eq(r0.views[0][i * C * H * W + 5], (float)idx + 0.05f + u0, 1e-5);
    }
    invar_loader_destroy(l);
    invar_dataset_destroy(d);
}

Test(pipeline, no_shuffle_drop_last_and_restart_mid_epoch)
{
    struct invar_dataset *d = open_toy(0);
    static struct record fresh, restarted;
    struct invar_loader *l = make_loader(d, 1, 0, 1, noise_views);
    cr_assert_eq(invar_loader_batches(l), 4);
    run_epochs(l, 1, &fresh);
    cr_assert_eq(fresh.n, 32);
    for (int64_t i = 0; i < 32; i++)
        cr_assert_eq(fresh.indices[i], i);
    /* abandon epoch 0 after one batch, then run epoch 1 in full */
    struct invar_loader *l2 = make_loader(d, 2, 0, 1, noise_views);
    invar_loader_start_epoch(l2, 0);
    cr_assert_not_null(invar_loader_next(l2));
    run_epochs(l2, 1, &restarted);
    cr_assert_eq(memcmp(&fresh, &restarted, sizeof fresh), 0);
    invar_loader_destroy(l);
    invar_loader_destroy(l2);
    invar_dataset_destroy(d);
}

Test(pipeline, normalisation_and_resizing_views)
{
    struct ph_plugin rc;
    ph_open(&rc, "augment", "resized_crop");
    ph_set(&rc, "size", "3");
    struct invar_plugin_use small[1] = {{rc.desc, rc.config, 1}};
    struct invar_plugin_use none[1] = {{&aug_add_one, NULL, 0}};
    struct invar_view views[2] = {{none, 1}, {small, 1}};
    struct invar_dataset *d = open_toy(0);
    float mean = 10.0f, std = 4.0f;
    struct invar_loader_config lc = {.views = views, .n_views = 2, .batch_size = 5, .seed = 1,
                                     .threads = 1, .mean = &mean, .std = &std};
    struct invar_loader *l;
    struct invar_error err = {0};
    cr_assert_eq(invar_loader_create(&l, d, &lc, &err), INVAR_OK, "%s", err.msg);
    invar_loader_start_epoch(l, 0);
    const struct invar_batch *b = invar_loader_next(l);
    cr_assert_eq(b->views[0].shape[0], 5);
    cr_assert_eq(b->views[1].shape[2], 3);
    cr_assert_eq(b->views[1].shape[3], 3);
    for (int64_t i = 0; i < 5; i++) /* view 0: p = 0, so only normalisation */
        for (int j = 0; j < C * H * W; j++)
            cr_assert_float_eq(b->views[0].data[i * C * H * W + j],
                               ((float)b->indices[i] + (float)j / 100.0f - 10.0f) / 4.0f, 1e-5);
    invar_loader_destroy(l);
    invar_dataset_destroy(d);
    ph_close(&rc);
}
