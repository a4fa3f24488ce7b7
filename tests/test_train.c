/* The trainer end to end on a few hundred synthetic 28x28 images written as an IDX dataset
 * (ten classes, each a bar pattern under noise) and read through the idx plugin with a
 * limit: metrics come out finite, a run interrupted and resumed from its checkpoint
 * ends bit-identical to an uninterrupted one (MoCo and InstDisc NCE), MoCo with momentum 0
 * ends as finished or diverged, and a stop flag ends a run as interrupted. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "invar/registry.h"
#include "invar/train.h"

static struct invar_registry *reg;
static void *configs[64];
static int n_configs;
static char tmpdir[256];

static const char *const tmp_files[] = {"train-images-idx3-ubyte",
                                        "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte",
                                        "t10k-labels-idx1-ubyte",
                                        "a.ckpt",
                                        "b.ckpt",
                                        NULL};

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* Images from..to-1 of a sequence in which image i has class i % 10: a bright vertical bar at
 * column 2 + 2.4c and a horizontal one at row 3 + 4(c % 5), over uniform noise. */
static void write_split(const char *dir, const char *images, const char *labels, int from,
                        int to, uint32_t seed)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, images);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s", dir, labels);
    FILE *fl = fopen(path, "wb");
    cr_assert(fi && fl, "cannot write the dataset in %s", dir);
    int n = to - from;
    put_be32(fi, 0x803), put_be32(fi, (uint32_t)n), put_be32(fi, 28), put_be32(fi, 28);
    put_be32(fl, 0x801), put_be32(fl, (uint32_t)n);
    unsigned char img[28 * 28];
    for (int i = 0; i < to; i++) {
        int c = i % 10, col = 2 + (c * 12) / 5, row = 3 + 4 * (c % 5);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                seed = seed * 1664525u + 1013904223u;
                int v = (int)(seed >> 25); /* 0..127 */
                if ((x >= col && x < col + 3) || (y >= row && y < row + 2))
                    v += 110;
                img[y * 28 + x] = (unsigned char)v;
            }
        if (i < from)
            continue;
        fwrite(img, 1, sizeof img, fi);
        unsigned char label = (unsigned char)c;
        fwrite(&label, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

/* tmpdir: 300 training images, 200 test images. tmpdir/split: the same training sequence cut
 * at 200, its images 200-255 as the test split (what data.limit=256 data.holdout=56 makes of
 * the first). */
static void write_dataset(void)
{
    write_split(tmpdir, tmp_files[0], tmp_files[1], 0, 300, 1);
    write_split(tmpdir, tmp_files[2], tmp_files[3], 0, 200, 2);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/split", tmpdir);
    cr_assert_eq(mkdir(dir, 0700), 0, "cannot create %s", dir);
    write_split(dir, tmp_files[0], tmp_files[1], 0, 200, 1);
    write_split(dir, tmp_files[2], tmp_files[3], 200, 256, 1);
}

static void suite_init(void)
{
    struct invar_error err = {0};
    cr_assert_eq(invar_registry_create(&reg), INVAR_OK);
    cr_assert_eq(invar_registry_scan(reg, NULL, &err), INVAR_OK, "%s", err.msg);
    snprintf(tmpdir, sizeof tmpdir, "%s/invar-train-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir));
    write_dataset();
}

static void suite_fini(void)
{
    for (int i = 0; i < n_configs; i++)
        invar_plugin_config_destroy(configs[i]);
    n_configs = 0;
    invar_registry_destroy(reg);
    reg = NULL;
    char path[512];
    for (int i = 0; tmp_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, tmp_files[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/split/%s", tmpdir, tmp_files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/split", tmpdir);
    rmdir(path);
    rmdir(tmpdir);
}

TestSuite(train, .init = suite_init, .fini = suite_fini);

static struct invar_plugin_use plugin_use(const char *name, double p, const char *const *kv)
{
    const struct invar_registry_entry *e = invar_registry_find(reg, 0, name);
    cr_assert_not_null(e, "plugin %s is not in the build tree", name);
    struct invar_error err = {0};
    void *cfg = NULL;
    cr_assert_eq(invar_plugin_config_create(e->desc, &cfg, &err), INVAR_OK, "%s", err.msg);
    cr_assert_lt(n_configs, (int)(sizeof configs / sizeof *configs));
    configs[n_configs++] = cfg;
    for (; kv && kv[0]; kv += 2) {
        const struct invar_param_spec *s = invar_param_find(e->desc->params, kv[0]);
        cr_assert_not_null(s, "%s has no parameter %s", name, kv[0]);
        cr_assert_eq(invar_param_set(s, cfg, kv[1], 0, &err), INVAR_OK, "%s", err.msg);
    }
    return (struct invar_plugin_use){e->desc, cfg, p};
}

/* ---- what a run reports ------------------------------------------------------------------- */

#define MAX_METRICS 256

struct metric {
    char key[32];
    int64_t step, epoch;
    double value;
};

struct record {
    struct metric m[MAX_METRICS];
    int n;
    /* raise stop when this (epoch, step) has been taken; epoch -1 = never */
    int64_t stop_epoch, stop_step;
    volatile sig_atomic_t stop;
    int progress_calls;
};

static void on_metric(void *user, const char *key, int64_t step, int64_t epoch, double value)
{
    struct record *r = user;
    cr_assert_lt(r->n, MAX_METRICS);
    struct metric *m = &r->m[r->n++];
    snprintf(m->key, sizeof m->key, "%s", key);
    m->step = step;
    m->epoch = epoch;
    m->value = value;
}

static void on_progress(void *user, const struct invar_progress *p)
{
    struct record *r = user;
    r->progress_calls++;
    if (strcmp(p->phase, "train") == 0 && p->epoch == r->stop_epoch && p->step >= r->stop_step)
        r->stop = 1;
}

static int count_metric(const struct record *r, const char *key)
{
    int n = 0;
    for (int i = 0; i < r->n; i++)
        n += strcmp(r->m[i].key, key) == 0;
    return n;
}

/* ---- a tiny job ----------------------------------------------------------------------------- */

struct setup {
    struct invar_plugin_use augs[2];
    struct invar_view views[2];
    struct invar_job job;
};

/* mlp encoder, 256 of the 300 training images, batch 32 (8 steps an epoch), 2 epochs, kNN
 * every epoch, step_loss every 3 steps (after steps 3, 6 and 8 of each epoch) */
static void setup_job(struct setup *s, struct record *rec, struct invar_plugin_use objective,
                      int n_views)
{
    memset(s, 0, sizeof *s);
    memset(rec, 0, sizeof *rec);
    rec->stop_epoch = -1;
    s->augs[0] = plugin_use("translate", 1, (const char *[]){"max_shift", "0.1", NULL});
    s->augs[1] = plugin_use("gaussian_noise", 0.5, (const char *[]){"std", "0.05", NULL});
    s->views[0] = s->views[1] = (struct invar_view){s->augs, 2};
    s->job = (struct invar_job){
        .seed = 3,
        .dataset = plugin_use("idx", 1, (const char *[]){"path", tmpdir, NULL}),
        .limit = 256,
        .test_limit = 200,
        .normalize = 1,
        .views = s->views,
        .n_views = n_views,
        .encoder =
            plugin_use("mlp", 1, (const char *[]){"hidden", "64", "depth", "1", "dim", "16", NULL}),
        .objective = objective,
        .optim = {.kind = INVAR_OPTIM_SGD,
                  .lr = 0.05,
                  .momentum = 0.9,
                  .weight_decay = 5e-4,
                  .schedule = INVAR_SCHED_COSINE},
        .warmup_epochs = 0.5,
        .epochs = 2,
        .batch_size = 32,
        .threads = 1,
        .checkpoint_every = 1,
        .log_every = 3,
        .eval = {.knn_k = 20, .knn_t = 0.07, .knn_every = 1},
        .on_metric = on_metric,
        .on_progress = on_progress,
        .user = rec,
        .stop = &rec->stop,
    };
}

static const char *tmp_path(const char *name)
{
    static char path[2][512];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", tmpdir, name);
    return path[which];
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

/* ---- tests ---------------------------------------------------------------------------------- */

Test(train, moco_end_to_end_metrics)
{
    struct setup s;
    struct record rec;
    setup_job(
        &s, &rec,
        plugin_use("moco", 1,
                   (const char *[]){"queue", "64", "momentum", "0.99", "temperature", "0.2", NULL}),
        2);
    s.job.eval.linear_epochs = 5;
    s.job.eval.linear_lr = 1e-2;
    s.job.eval.linear_batch = 64;
    struct invar_result res;
    struct invar_error err = {0};
    enum invar_status st = invar_train(&s.job, &res, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(res.epochs_done, 2);
    cr_log_info("loss %.4f, kNN %.1f / %.1f %%, linear %.1f %%", res.final_loss, res.knn_top1,
                res.knn_top5, res.linear_top1);
    /* ten classes: chance is 10 %; the bars are plain enough for any features to keep them */
    cr_expect(res.linear_top1 > 25 && res.linear_top1 <= 100, "linear probe %.1f %%",
              res.linear_top1);
    cr_expect(res.knn_top1 > 25, "kNN %.1f %%", res.knn_top1);
    cr_expect_eq(count_metric(&rec, "linear_top1"), 1);
    cr_expect(isfinite(res.final_loss) && res.final_loss > 0);
    cr_expect(res.knn_top1 >= 0 && res.knn_top1 <= 100);
    cr_expect(res.knn_top5 >= res.knn_top1 && res.knn_top5 <= 100);
    /* per epoch: loss, lr, img_per_s; kNN after epoch 1 (monitor) and at the end */
    cr_expect_eq(count_metric(&rec, "loss"), 2);
    cr_expect_eq(count_metric(&rec, "lr"), 2);
    cr_expect_eq(count_metric(&rec, "img_per_s"), 2);
    cr_expect_eq(count_metric(&rec, "knn_top1"), 2);
    cr_expect_eq(count_metric(&rec, "knn_top5"), 2);
    cr_expect_eq(count_metric(&rec, "collapse_std"), 2);
    cr_expect_eq(count_metric(&rec, "moco/pos_sim"), 2);
    for (int i = 0; i < rec.n; i++) {
        cr_expect(isfinite(rec.m[i].value), "%s = %g", rec.m[i].key, rec.m[i].value);
        /* lr is the last step's: positive in epoch 1, the cosine's final 0 at the very end */
        if (strcmp(rec.m[i].key, "img_per_s") == 0 ||
            (strcmp(rec.m[i].key, "lr") == 0 && rec.m[i].epoch == 0))
            cr_expect_gt(rec.m[i].value, 0, "%s = %g", rec.m[i].key, rec.m[i].value);
        if (strcmp(rec.m[i].key, "collapse_std") == 0) /* healthy: about 1/sqrt(16) */
            cr_expect(rec.m[i].value > 0.02 && rec.m[i].value < 1, "collapse_std %g",
                      rec.m[i].value);
        if (strcmp(rec.m[i].key, "loss") == 0)
            cr_expect_eq(rec.m[i].step, 8 * (rec.m[i].epoch + 1), "loss logged at step %lld",
                         (long long)rec.m[i].step);
    }
    cr_expect_eq(rec.progress_calls >= 16, 1, "%d progress calls", rec.progress_calls);

    /* step_loss: windows of 3, 3 and 2 steps an epoch, whose means weigh up to the epoch's
     * loss; step_loss_max, the window's worst step, above its mean (equal only if the window's
     * losses were); step_grad_norm_max beside them, a norm */
    cr_expect_eq(count_metric(&rec, "step_loss"), 6);
    cr_expect_eq(count_metric(&rec, "step_loss_max"), 6);
    cr_expect_eq(count_metric(&rec, "step_grad_norm_max"), 6);
    const int64_t ends[3] = {3, 6, 8};
    int above = 0;
    for (int64_t e = 0; e < 2; e++) {
        double weighed = 0, epoch_loss = NAN;
        int w = 0;
        for (int i = 0; i < rec.n; i++) {
            const struct metric *m = &rec.m[i];
            if (m->epoch != e)
                continue;
            if (strcmp(m->key, "loss") == 0)
                epoch_loss = m->value;
            if (strcmp(m->key, "step_loss") != 0)
                continue;
            cr_assert_lt(w, 3);
            cr_expect_eq(m->step, 8 * e + ends[w], "window %d of epoch %lld ends at step %lld", w,
                         (long long)e, (long long)m->step);
            cr_assert(i + 1 < rec.n && strcmp(rec.m[i + 1].key, "step_loss_max") == 0);
            cr_expect_eq(rec.m[i + 1].step, m->step);
            cr_expect_geq(rec.m[i + 1].value, m->value);
            above += rec.m[i + 1].value > m->value;
            cr_assert(i + 2 < rec.n && strcmp(rec.m[i + 2].key, "step_grad_norm_max") == 0);
            cr_expect(rec.m[i + 2].value > 0 && isfinite(rec.m[i + 2].value),
                      "step_grad_norm_max %g", rec.m[i + 2].value);
            weighed += (double)(ends[w] - (w ? ends[w - 1] : 0)) * m->value;
            w++;
        }
        cr_expect_eq(w, 3);
        cr_expect(fabs(weighed / 8 - epoch_loss) < 1e-12 * fabs(epoch_loss),
                  "epoch %lld: windows weigh up to %.17g, the epoch's loss is %.17g", (long long)e,
                  weighed / 8, epoch_loss);
    }
    cr_expect_gt(above, 0, "no window's worst step stood above its mean");
}

/* eval.knn.features and eval.linear.features route each protocol to the encoder's output or
 * to the representation under its head (a convnet, whose backbone differs from its output):
 * the same training with the kNN features unchanged gives the same kNN bits, a different
 * probe features set gives a different probe, and the collapse monitor always watches the
 * encoder's output. */
static double last_metric(const struct record *r, const char *key)
{
    for (int i = r->n - 1; i >= 0; i--)
        if (strcmp(r->m[i].key, key) == 0)
            return r->m[i].value;
    cr_assert_fail("no metric %s", key);
    return 0;
}

/* One epoch of MoCo on a small convnet with a 3-epoch probe, evaluated as ec says (its
 * features, sizes and precise_bn; the rest of the protocol fixed), or two epochs with kNN after
 * each when ec->knn_every is set: the results and the last collapse_std. */
static void eval_variant(const struct invar_eval_config *ec, struct invar_result *res,
                         double *collapse)
{
    struct setup s;
    struct record rec;
    setup_job(&s, &rec,
              plugin_use("moco", 1, (const char *[]){"queue", "64", "momentum", "0.99", NULL}), 2);
    s.job.encoder = plugin_use(
        "convnet", 1,
        (const char *[]){"width", "0.25", "head", "mlp", "hidden", "32", "dim", "16", NULL});
    s.job.epochs = ec->knn_every ? 2 : 1;
    s.job.checkpoint_every = 0;
    s.job.log_every = 0;
    s.job.eval.knn_every = ec->knn_every;
    s.job.eval.linear_epochs = 3;
    s.job.eval.linear_lr = 1e-2;
    s.job.eval.linear_batch = 64;
    s.job.eval.knn_features = ec->knn_features;
    s.job.eval.linear_features = ec->linear_features;
    s.job.eval.knn_size = ec->knn_size;
    s.job.eval.linear_size = ec->linear_size;
    s.job.eval.knn_precise_bn = ec->knn_precise_bn;
    s.job.eval.linear_precise_bn = ec->linear_precise_bn;
    struct invar_error err = {0};
    enum invar_status st = invar_train(&s.job, res, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    *collapse = last_metric(&rec, "collapse_std");
    cr_expect_eq(count_metric(&rec, "step_loss"), 0, "log_every 0 logs no step_loss");
}

Test(train, evaluation_features_follow_the_protocol_settings)
{
    static const enum invar_eval_features knn_f[3] = {INVAR_FEATURES_HEAD, INVAR_FEATURES_HEAD,
                                                      INVAR_FEATURES_BACKBONE};
    static const enum invar_eval_features lin_f[3] = {INVAR_FEATURES_HEAD,
                                                      INVAR_FEATURES_BACKBONE,
                                                      INVAR_FEATURES_BACKBONE};
    struct invar_result res[3];
    double collapse[3];
    for (int v = 0; v < 3; v++)
        eval_variant(&(struct invar_eval_config){.knn_features = knn_f[v],
                                                 .linear_features = lin_f[v]},
                     &res[v], &collapse[v]);
    cr_expect_eq(res[0].knn_top1, res[1].knn_top1, "kNN on the head both times");
    cr_expect_eq(res[0].knn_top5, res[1].knn_top5);
    cr_expect_neq(res[0].linear_top1, res[1].linear_top1, "probe on the head vs the backbone");
    cr_expect_eq(res[1].linear_top1, res[2].linear_top1, "probe on the backbone both times");
    cr_expect(res[1].knn_top1 != res[2].knn_top1 || res[1].knn_top5 != res[2].knn_top5,
              "kNN on the head vs the backbone");
    cr_expect_eq(collapse[0], collapse[1]);
    cr_expect_eq(collapse[0], collapse[2], "collapse_std watches the output whatever kNN uses");
}

/* eval.knn.size and eval.linear.size each resize the images its protocol embeds (the probe
 * embeds again when its size differs from kNN's); the collapse monitor follows kNN's. */
Test(train, evaluation_sizes_follow_the_protocol_settings)
{
    static const int64_t knn_s[3] = {0, 20, 20}, lin_s[3] = {0, 0, 20};
    struct invar_result res[3];
    double collapse[3];
    for (int v = 0; v < 3; v++)
        eval_variant(&(struct invar_eval_config){.knn_features = INVAR_FEATURES_HEAD,
                                                 .linear_features = INVAR_FEATURES_HEAD,
                                                 .knn_size = knn_s[v],
                                                 .linear_size = lin_s[v]},
                     &res[v], &collapse[v]);
    cr_expect(res[0].knn_top1 != res[1].knn_top1 || res[0].knn_top5 != res[1].knn_top5,
              "kNN on the images as stored vs at 20 x 20");
    cr_expect_eq(res[1].knn_top1, res[2].knn_top1, "kNN at 20 x 20 both times");
    cr_expect_eq(res[1].knn_top5, res[2].knn_top5);
    cr_expect_eq(res[0].linear_top1, res[1].linear_top1, "the probe on the images as stored");
    cr_expect_neq(res[1].linear_top1, res[2].linear_top1, "the probe as stored vs at 20 x 20");
    cr_expect_neq(collapse[0], collapse[1]);
    cr_expect_eq(collapse[1], collapse[2], "collapse_std at kNN's size");
}

/* eval.knn.precise_bn and eval.linear.precise_bn each have their protocol embed under batch-norm
 * statistics recomputed on that many training images (the probe embeds again when its setting
 * differs from kNN's, and reuses kNN's statistics when only its features differ); the collapse
 * monitor follows kNN's. The running statistics come back
 * after each evaluation: with kNN after every epoch, training goes on exactly as without. */
Test(train, evaluation_precise_bn_follows_the_protocol_settings)
{
    static const int64_t knn_p[7] = {0, 200, 200, 0, 200, 200, 0};
    static const int64_t lin_p[7] = {0, 0, 200, 0, 0, 200, 200};
    struct invar_result res[7];
    double collapse[7];
    for (int v = 0; v < 7; v++)
        eval_variant(&(struct invar_eval_config){.knn_features = INVAR_FEATURES_HEAD,
                                                 .linear_features = v >= 5 ? INVAR_FEATURES_BACKBONE
                                                                           : INVAR_FEATURES_HEAD,
                                                 .knn_every = v >= 3,
                                                 .knn_precise_bn = knn_p[v],
                                                 .linear_precise_bn = lin_p[v]},
                     &res[v], &collapse[v]);
    cr_expect(res[0].knn_top1 != res[1].knn_top1 || res[0].knn_top5 != res[1].knn_top5,
              "kNN under the running vs the recomputed statistics");
    cr_expect_eq(res[1].knn_top1, res[2].knn_top1, "kNN recomputed both times");
    cr_expect_eq(res[1].knn_top5, res[2].knn_top5);
    cr_expect_eq(res[0].linear_top1, res[1].linear_top1, "the probe under the running ones");
    cr_expect_neq(res[1].linear_top1, res[2].linear_top1, "the probe running vs recomputed");
    cr_expect_neq(collapse[0], collapse[1]);
    cr_expect_eq(collapse[1], collapse[2], "collapse_std under kNN's statistics");
    cr_expect_eq(res[3].final_loss, res[4].final_loss, "training saw the running statistics");
    cr_expect_eq(res[3].linear_top1, res[4].linear_top1, "the probe too, after the kNN");
    /* the probe on the backbone reuses the statistics kNN recomputed, or recomputes them */
    cr_expect_eq(res[5].linear_top1, res[6].linear_top1);
}

/* The trainer scores a clustering objective's pseudo-labels against the true labels for it
 * (ctx->label_nmi): DeepCluster logs deepcluster/nmi_labels every epoch. The bars of ten
 * classes under noise cluster far from independently of their class. */
Test(train, deepcluster_logs_nmi_against_the_labels)
{
    struct setup s;
    struct record rec;
    setup_job(&s, &rec,
              plugin_use("deepcluster", 1, (const char *[]){"k", "10", "kmeans_iters", "10", NULL}),
              1);
    s.job.checkpoint_every = 0;
    s.job.eval.knn_every = 0;
    struct invar_result res;
    struct invar_error err = {0};
    enum invar_status st = invar_train(&s.job, &res, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(count_metric(&rec, "deepcluster/nmi_labels"), 2);
    for (int i = 0; i < rec.n; i++)
        if (strcmp(rec.m[i].key, "deepcluster/nmi_labels") == 0)
            cr_expect(rec.m[i].value > 0.2 && rec.m[i].value <= 1, "NMI %g at epoch %lld",
                      rec.m[i].value, (long long)rec.m[i].epoch);
}

/* data.holdout: the last training samples (after the limit) leave training and take the test
 * split's place in every evaluation. A run holding out 56 of its 256 images trains and scores
 * bit for bit as the same run on a dataset whose training split is the first 200 images and
 * whose test split is the 56 after them; a checkpoint's "test" embedding is the held-out
 * images too; a holdout that leaves nothing to train on is refused, naming the key. */
Test(train, holdout_replaces_the_test_split)
{
    struct invar_plugin_use moco = plugin_use("moco", 1, (const char *[]){"queue", "64", NULL});
    struct setup s;
    struct record ra, rb;
    struct invar_result a, b;
    struct invar_error err = {0};

    setup_job(&s, &rb, moco, 2);
    char split_dir[512];
    snprintf(split_dir, sizeof split_dir, "%s/split", tmpdir);
    s.job.dataset = plugin_use("idx", 1, (const char *[]){"path", split_dir, NULL});
    s.job.eval.linear_epochs = 2;
    s.job.eval.linear_lr = 1e-2;
    s.job.checkpoint_every = 0;
    enum invar_status st = invar_train(&s.job, &b, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);

    setup_job(&s, &ra, moco, 2);
    s.job.holdout = 56;
    s.job.eval.linear_epochs = 2;
    s.job.eval.linear_lr = 1e-2;
    s.job.checkpoint_every = 0;
    s.job.checkpoint_path = tmp_path("a.ckpt");
    struct invar_dataset *train = NULL, *held = NULL, *all = NULL;
    cr_assert_eq(invar_job_open_splits(&s.job, &train, &held, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_dataset_open(&all, &s.job.dataset, "train", 0, &err), INVAR_OK);
    cr_expect_eq(invar_dataset_count(train), 200);
    cr_assert_eq(invar_dataset_count(held), 56);
    int64_t numel = 28 * 28;
    for (int64_t i = 0; i < 56; i++) {
        cr_expect_eq(invar_dataset_labels(held)[i], (200 + i) % 10);
        cr_expect_eq(memcmp(invar_dataset_sample(held, i), invar_dataset_sample(all, 200 + i),
                            (size_t)numel * sizeof(float)),
                     0, "held-out image %lld is training image %lld", (long long)i,
                     (long long)(200 + i));
    }
    cr_expect_eq(memcmp(invar_dataset_sample(train, 199), invar_dataset_sample(all, 199),
                        (size_t)numel * sizeof(float)),
                 0);
    invar_dataset_destroy(train);
    invar_dataset_destroy(held);
    invar_dataset_destroy(all);

    st = invar_train(&s.job, &a, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(memcmp(&a.final_loss, &b.final_loss, sizeof a.final_loss), 0,
                 "final loss %.17g vs %.17g", a.final_loss, b.final_loss);
    cr_expect_eq(memcmp(&a.knn_top1, &b.knn_top1, sizeof a.knn_top1), 0, "kNN %.17g vs %.17g",
                 a.knn_top1, b.knn_top1);
    cr_expect_eq(memcmp(&a.knn_top5, &b.knn_top5, sizeof a.knn_top5), 0);
    cr_expect_eq(memcmp(&a.linear_top1, &b.linear_top1, sizeof a.linear_top1), 0,
                 "linear %.17g vs %.17g", a.linear_top1, b.linear_top1);
    cr_expect_gt(a.linear_top1, 0);
    cr_assert_eq(ra.n, rb.n, "%d metrics against %d", ra.n, rb.n);
    for (int i = 0; i < ra.n; i++) {
        cr_expect_str_eq(ra.m[i].key, rb.m[i].key);
        if (strcmp(ra.m[i].key, "img_per_s") != 0)
            cr_expect_eq(memcmp(&ra.m[i].value, &rb.m[i].value, sizeof(double)), 0,
                         "%s: %.17g held out, %.17g on the cut dataset", ra.m[i].key,
                         ra.m[i].value, rb.m[i].value);
    }

    struct invar_embedding e;
    st = invar_checkpoint_embed(&s.job, tmp_path("a.ckpt"), "test", INVAR_FEATURES_HEAD, 0, &e,
                                &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(e.n, 56);
    cr_expect_eq(e.classes, 10);
    cr_expect_eq(e.labels[0], 0);
    cr_expect_eq(e.labels[55], 5);
    invar_embedding_deinit(&e);

    s.job.holdout = 256;
    st = invar_train(&s.job, &a, &err);
    cr_expect_eq(st, INVAR_ERR_CONFIG, "%s", invar_status_str(st));
    cr_expect_not_null(strstr(err.msg, "data.holdout"), "%s", err.msg);
}

/* 2 epochs in one go (checkpoint a), and the same job stopped in the middle of epoch 2 then
 * resumed from its end-of-epoch-1 checkpoint (checkpoint b): same final checkpoint bytes, same
 * epoch-2 metrics and results, bit for bit. */
static void resume_exactness(struct invar_plugin_use objective, int n_views, double momentum)
{
    struct setup s;
    struct record a, b;
    struct invar_error err = {0};
    struct invar_result ra, rb;

    setup_job(&s, &a, objective, n_views);
    s.job.optim.momentum = momentum;
    s.job.checkpoint_path = tmp_path("a.ckpt");
    enum invar_status st = invar_train(&s.job, &ra, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);

    setup_job(&s, &b, objective, n_views);
    s.job.optim.momentum = momentum;
    s.job.checkpoint_path = tmp_path("b.ckpt");
    b.stop_epoch = 1;
    b.stop_step = 3;
    st = invar_train(&s.job, &rb, &err);
    cr_assert_eq(st, INVAR_ERR_INTERRUPTED, "%s: %s", invar_status_str(st), err.msg);
    cr_assert_eq(rb.epochs_done, 1);

    struct record c;
    setup_job(&s, &c, objective, n_views);
    s.job.optim.momentum = momentum;
    s.job.checkpoint_path = tmp_path("b.ckpt");
    s.job.resume = 1;
    st = invar_train(&s.job, &rb, &err);
    cr_assert_eq(st, INVAR_OK, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(rb.epochs_done, 2);
    cr_expect_eq(count_metric(&c, "loss"), 1, "the resumed run trained epoch 2 only");

    size_t na, nb;
    unsigned char *fa = read_all(tmp_path("a.ckpt"), &na), *fb = read_all(tmp_path("b.ckpt"), &nb);
    cr_expect_eq(na, nb, "checkpoint sizes %zu and %zu", na, nb);
    size_t first = 0;
    while (first < na && first < nb && fa[first] == fb[first])
        first++;
    cr_expect(na == nb && first == na, "final checkpoints differ from byte %zu of %zu", first, na);
    free(fa);
    free(fb);

    cr_expect_eq(memcmp(&ra.final_loss, &rb.final_loss, sizeof ra.final_loss), 0,
                 "final loss %.17g vs %.17g", ra.final_loss, rb.final_loss);
    cr_expect_eq(memcmp(&ra.knn_top1, &rb.knn_top1, sizeof ra.knn_top1), 0);
    cr_expect_eq(memcmp(&ra.knn_top5, &rb.knn_top5, sizeof ra.knn_top5), 0);
    /* every epoch-2 metric of the resumed run equals the uninterrupted run's, timing aside */
    int compared = 0;
    for (int i = 0; i < c.n; i++) {
        if (strcmp(c.m[i].key, "img_per_s") == 0)
            continue;
        int found = 0;
        for (int j = 0; j < a.n && !found; j++)
            if (strcmp(a.m[j].key, c.m[i].key) == 0 && a.m[j].epoch == c.m[i].epoch &&
                a.m[j].step == c.m[i].step) {
                found = 1;
                cr_expect_eq(memcmp(&a.m[j].value, &c.m[i].value, sizeof(double)), 0,
                             "%s at epoch %lld: %.17g uninterrupted, %.17g resumed", c.m[i].key,
                             (long long)c.m[i].epoch, a.m[j].value, c.m[i].value);
            }
        cr_expect(found, "resumed run logged %s at step %lld, the uninterrupted one did not",
                  c.m[i].key, (long long)c.m[i].step);
        compared += found;
    }
    cr_expect_geq(compared, 5);
}

Test(train, resume_is_exact_moco)
{
    /* K = 40 is not a multiple of the batch: the queue pointer is mid-queue at the checkpoint */
    resume_exactness(
        plugin_use("moco", 1, (const char *[]){"queue", "40", "momentum", "0.9", NULL}), 2, 0.9);
}

Test(train, resume_is_exact_instdisc_nce)
{
    /* plain SGD: an optimizer without state must resume too */
    resume_exactness(
        plugin_use("instdisc", 1, (const char *[]){"softmax", "nce", "nce_k", "32", NULL}), 1, 0);
}

Test(train, moco_momentum_zero_finishes_or_diverges)
{
    struct setup s;
    struct record rec;
    setup_job(&s, &rec,
              plugin_use("moco", 1, (const char *[]){"queue", "64", "momentum", "0", NULL}), 2);
    s.job.optim.lr = 0.5; /* push it: a diverging run must end as a result, not a crash */
    struct invar_result res;
    struct invar_error err = {0};
    enum invar_status st = invar_train(&s.job, &res, &err);
    cr_expect(st == INVAR_OK || st == INVAR_ERR_DIVERGED, "%s: %s", invar_status_str(st), err.msg);
    if (st == INVAR_OK)
        cr_expect(isfinite(res.final_loss));
}

Test(train, stop_flag_interrupts)
{
    struct setup s;
    struct record rec;
    setup_job(&s, &rec, plugin_use("instdisc", 1, NULL), 1);
    rec.stop_epoch = 0;
    rec.stop_step = 2;
    struct invar_result res;
    struct invar_error err = {0};
    enum invar_status st = invar_train(&s.job, &res, &err);
    cr_expect_eq(st, INVAR_ERR_INTERRUPTED, "%s: %s", invar_status_str(st), err.msg);
    cr_expect_eq(res.epochs_done, 0);
    cr_expect_eq(count_metric(&rec, "loss"), 0, "an interrupted epoch logs no loss");
    cr_expect_eq(rec.progress_calls, 2, "stopped after %d steps, want 2", rec.progress_calls);
    cr_expect(strstr(err.msg, "interrupted") != NULL, "%s", err.msg);
}

/* A checkpoint that was damaged, or written by a different configuration, is refused with a
 * status and a message naming the file. */
Test(train, damaged_or_foreign_checkpoints_are_refused)
{
    struct setup s;
    struct record rec;
    struct invar_result res;
    struct invar_error err = {0};
    const char *path = tmp_path("a.ckpt");
    setup_job(&s, &rec, plugin_use("moco", 1, (const char *[]){"queue", "40", NULL}), 2);
    s.job.epochs = 1;
    s.job.checkpoint_path = path;
    cr_assert_eq(invar_train(&s.job, &res, &err), INVAR_OK, "%s", err.msg);
    size_t n;
    unsigned char *good = read_all(path, &n);

    /* one flipped byte in the middle of the weights (intact ones: the resume tests) */
    unsigned char *bad = malloc(n);
    memcpy(bad, good, n);
    bad[n / 2] ^= 0x40;
    FILE *f = fopen(path, "wb");
    fwrite(bad, 1, n, f);
    fclose(f);
    s.job.resume = 1;
    enum invar_status st = invar_train(&s.job, &res, &err);
    cr_expect_eq(st, INVAR_ERR_FORMAT, "%s: %s", invar_status_str(st), err.msg);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "checksum"), "%s", err.msg);

    /* intact, but for a queue of 40 keys, not 41 */
    f = fopen(path, "wb");
    fwrite(good, 1, n, f);
    fclose(f);
    setup_job(&s, &rec, plugin_use("moco", 1, (const char *[]){"queue", "41", NULL}), 2);
    s.job.epochs = 1;
    s.job.checkpoint_path = path;
    s.job.resume = 1;
    st = invar_train(&s.job, &res, &err);
    cr_expect_eq(st, INVAR_ERR_FORMAT, "%s: %s", invar_status_str(st), err.msg);
    cr_expect(strstr(err.msg, "objective") != NULL, "%s", err.msg);
    free(bad);
    free(good);
}
