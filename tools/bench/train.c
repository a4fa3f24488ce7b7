/* Benchmark: img/s of one training step of convnet-s (batch 256, 28x28, 2 BLAS threads) under
 * MoCo (K = 4096), InstDisc with the non-parametric softmax (N = 60000) and with NCE
 * (m = 4096), and of inference, beside the same steps in PyTorch (tools/bench/torch_reference.py,
 * run as a subprocess when torch is installed), in one run:
 *
 *     meson test -C build --benchmark train -v
 *
 * A step is what the trainer does per batch: forward, backward, optimizer (SGD, momentum 0.9,
 * weight decay 5e-4), after_step (EMA and enqueue, or the memory-bank update). The views are
 * random tensors already in memory, so augmentation and loading are not timed. Inference is a
 * forward pass in eval mode without gradients. Each figure is the median of REPEATS timed steps
 * after WARMUP untimed ones. The last line is
 * `RESULT moco_img_s=... moco_ratio=... instdisc_img_s=... instdisc_ratio=... nce_img_s=...
 * nce_ratio=... infer_img_s=... infer_ratio=...` with ratio = ours / PyTorch (nan when torch
 * is absent).
 *
 * `bench_train [--no-reference] [--steps N] [CASE...]` (CASE: moco, instdisc, nce, inference)
 * runs only the named cases with N timed steps and skips PyTorch, for profiling one step under
 * `perf record` or `perf stat`. Each case also prints the process CPU time of its median step
 * (every thread, BLAS's included), a steadier figure than wall time on a loaded machine.
 */
#define _POSIX_C_SOURCE 200809L // popen
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <invar/graph.h>
#include <invar/optim.h>
#include <invar/registry.h>
#include <invar/train.h>

#include "../blas_env.h"

#define BATCH 256
#define WARMUP 2
#define REPEATS 7
#define MAX_REPEATS 1000
#define THREADS 2
#define DATASET 60000

/* OpenBLAS's own thread control (the trainer sets it the same way). */
extern void openblas_set_num_threads(int n);

static const int64_t in_shape[3] = {1, 28, 28};

static struct invar_registry *reg;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int repeats = REPEATS;

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static void die(const char *what, const struct invar_error *err)
{
    fprintf(stderr, "bench_train: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* A plugin with its defaults and KEY, VALUE overrides (NULL-terminated); the config is leaked
 * on purpose, it lives as long as the benchmark. */
static struct invar_plugin_use plugin_use(uint32_t kind, const char *name, const char *const *kv)
{
    const struct invar_registry_entry *e = invar_registry_find(reg, kind, name);
    if (!e)
        die(name, NULL);
    struct invar_error err = {0};
    void *cfg;
    if (invar_plugin_config_create(e->desc, &cfg, &err) != INVAR_OK)
        die(name, &err);
    for (; kv && kv[0]; kv += 2) {
        const struct invar_param_spec *s = invar_param_find(e->desc->params, kv[0]);
        if (!s || invar_param_set(s, cfg, kv[1], 0, &err) != INVAR_OK)
            die(kv[0], &err);
    }
    return (struct invar_plugin_use){e->desc, cfg, 1};
}

/* ---- the objective's context, as the trainer builds it ----------------------------------- */

struct bench {
    struct invar_plugin_use enc_use, obj_use;
    const struct invar_objective_ops *ops;
    struct invar_objective_ctx ctx;
    struct invar_encoder *online, *clones[4];
    int n_clones;
    void *obj;
    struct invar_optim *opt;
    struct invar_graph *g;
    float *views[2];  /* (BATCH, 1, 28, 28) each */
    int64_t *indices; /* (BATCH) distinct dataset positions */
};

static enum invar_status bench_clone(struct invar_objective_ctx *ctx, struct invar_encoder **out,
                                     struct invar_error *err)
{
    struct bench *b = ctx->framework;
    enum invar_status st = invar_encoder_create(out, &b->enc_use, in_shape, 2, err);
    if (st != INVAR_OK)
        return st;
    invar_params_copy(invar_encoder_params(*out), invar_encoder_params(ctx->online));
    b->clones[b->n_clones++] = *out;
    return INVAR_OK;
}

static void bench_open(struct bench *b, const char *objective, const char *const *kv, int n_views)
{
    memset(b, 0, sizeof *b);
    struct invar_error err = {0};
    b->enc_use = plugin_use(INVAR_KIND_ENCODER, "convnet",
                            (const char *[]){"width", "1", "dim", "128", "head", "linear", NULL});
    if (invar_encoder_create(&b->online, &b->enc_use, in_shape, 1, &err) != INVAR_OK)
        die("convnet", &err);
    b->g = invar_graph_create(256u << 20);
    int64_t numel = BATCH * in_shape[0] * in_shape[1] * in_shape[2];
    struct invar_rng rng;
    invar_rng_init(&rng, 42, 0);
    for (int v = 0; v < 2; v++) {
        b->views[v] = malloc((size_t)numel * sizeof(float));
        for (int64_t i = 0; i < numel; i++)
            b->views[v][i] = invar_rng_normal(&rng);
    }
    b->indices = malloc(BATCH * sizeof *b->indices);
    int64_t *perm = malloc(DATASET * sizeof *perm);
    for (int64_t i = 0; i < DATASET; i++)
        perm[i] = i;
    invar_rng_permutation(&rng, perm, DATASET);
    memcpy(b->indices, perm, BATCH * sizeof *b->indices);
    free(perm);
    if (!objective)
        return;
    b->obj_use = plugin_use(INVAR_KIND_OBJECTIVE, objective, kv);
    b->ops = b->obj_use.plugin->ops.objective;
    b->ctx = (struct invar_objective_ctx){.dataset_size = DATASET,
                                          .batch_size = BATCH,
                                          .n_views = n_views,
                                          .feature_dim = invar_encoder_dim(b->online),
                                          .steps_per_epoch = DATASET / BATCH,
                                          .epochs = 1,
                                          .seed = 1,
                                          .online = b->online,
                                          .params = invar_params_create(),
                                          .encoder_clone = bench_clone,
                                          .framework = b};
    if (b->ops->create(b->obj_use.config, &b->ctx, &b->obj, &err) != INVAR_OK ||
        invar_params_finalize(b->ctx.params, 3, &err) != INVAR_OK ||
        (b->ops->init_state && b->ops->init_state(b->obj, &err) != INVAR_OK))
        die(objective, &err);
    struct invar_optim_config oc = {.kind = INVAR_OPTIM_SGD,
                                    .lr = 0.03,
                                    .momentum = 0.9,
                                    .weight_decay = 5e-4,
                                    .schedule = INVAR_SCHED_CONSTANT};
    struct invar_params *groups[2] = {invar_encoder_params(b->online), b->ctx.params};
    if (invar_optim_create(&b->opt, &oc, groups, 2, &err) != INVAR_OK)
        die("optimizer", &err);
}

static void bench_close(struct bench *b)
{
    if (b->obj)
        b->ops->destroy(b->obj);
    invar_optim_destroy(b->opt);
    if (b->ctx.params)
        invar_params_destroy(b->ctx.params);
    for (int i = 0; i < b->n_clones; i++)
        invar_encoder_destroy(b->clones[i]);
    invar_encoder_destroy(b->online);
    invar_graph_destroy(b->g);
    free(b->views[0]);
    free(b->views[1]);
    free(b->indices);
}

/* Leaves over the in-memory views, as the trainer wraps the loader's buffers. */
static void wrap_views(struct bench *b, struct invar_tensor **views)
{
    for (int v = 0; v < 2; v++) {
        views[v] = invar_arena_alloc(invar_graph_arena(b->g), sizeof *views[v]);
        invar_tensor_wrap(views[v], b->views[v], 4,
                          (int64_t[]){BATCH, in_shape[0], in_shape[1], in_shape[2]});
    }
}

/* One training step; returns seconds. */
static double train_step(struct bench *b, int64_t step)
{
    double t0 = now();
    invar_graph_reset(b->g);
    struct invar_tensor *views[2];
    wrap_views(b, views);
    struct invar_step_info info = {0, step, step, 1000, 0.03};
    struct invar_tensor *loss =
        b->ops->loss(b->obj, b->g, views, b->ctx.n_views, b->indices, &info);
    invar_params_zero_grad(invar_encoder_params(b->online));
    invar_params_zero_grad(b->ctx.params);
    invar_graph_backward(b->g, loss);
    invar_optim_step(b->opt, 0.03);
    if (b->ops->after_step)
        b->ops->after_step(b->obj, b->g, &info);
    double t = now() - t0;
    if (!isfinite(loss->data[0])) {
        fprintf(stderr, "bench_train: loss is %g at step %lld\n", loss->data[0], (long long)step);
        exit(1);
    }
    return t;
}

static double infer_step(struct bench *b)
{
    double t0 = now();
    invar_graph_reset(b->g);
    struct invar_tensor *views[2];
    wrap_views(b, views);
    struct invar_tensor *f = invar_encoder_forward(b->online, b->g, views[0]);
    double t = now() - t0;
    if (!isfinite(f->data[0]))
        exit(1);
    return t;
}

/* img/s of the median step */
static double measure(const char *name, const char *objective, const char *const *kv, int n_views)
{
    struct bench b;
    bench_open(&b, objective, kv, n_views);
    static double t[MAX_REPEATS], cpu[MAX_REPEATS];
    for (int i = 0; i < WARMUP + repeats; i++) {
        double c0 = cpu_now();
        double dt;
        if (objective) {
            dt = train_step(&b, i);
        } else {
            invar_graph_set_grad(b.g, 0);
            invar_graph_set_training(b.g, 0);
            dt = infer_step(&b);
        }
        if (i >= WARMUP) {
            t[i - WARMUP] = dt;
            cpu[i - WARMUP] = cpu_now() - c0;
        }
    }
    double best = t[0];
    for (int i = 1; i < repeats; i++)
        best = fmin(best, t[i]);
    double med = median(t, repeats), cpu_med = median(cpu, repeats);
    printf("invar  %-9s %8.1f img/s  (median %.1f ms, best %.1f ms, cpu %.1f ms/step)\n", name,
           BATCH / med, 1e3 * med, 1e3 * best, 1e3 * cpu_med);
    fflush(stdout);
    bench_close(&b);
    return BATCH / med;
}

/* ---- the PyTorch side ------------------------------------------------------------------------ */

/* tools/bench/torch_reference.py beside this file; __FILE__ is relative to the build root. */
static void reference_path(char *buf, size_t n)
{
    const char *file = __FILE__, *slash = strrchr(file, '/');
    int dir = slash ? (int)(slash - file) : 0;
    const char *root = getenv("INVAR_BUILD_ROOT");
    if (file[0] == '/' || !root)
        snprintf(buf, n, "%.*s%storch_reference.py", dir, file, dir ? "/" : "");
    else
        snprintf(buf, n, "%s/%.*s%storch_reference.py", root, dir, file, dir ? "/" : "");
}

/* $INVAR_PYTHON, else the system interpreter (Debian's python3-torch is installed for it, and
 * a `python3` earlier in PATH, from pyenv or a venv, may not see it), else python3. */
static const char *python(void)
{
    const char *env = getenv("INVAR_PYTHON");
    if (env && *env)
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Runs the reference and reads its `TORCH key=value ...` line into the four rates. 0 when
 * torch is not installed (the script says so) or the run failed. */
static int run_reference(double rates[4])
{
    char script[4096], cmd[8192];
    reference_path(script, sizeof script);
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=%d "
             "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:"
             "glibc.malloc.trim_threshold=4294967296 "
             "'%s' '%s' --threads %d --batch %d --warmup %d --repeats %d",
             THREADS, python(), script, THREADS, BATCH, WARMUP, REPEATS);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "bench_train: cannot run %s\n", script);
        return 0;
    }
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        if (strncmp(line, "TORCH ", 6) == 0)
            got = sscanf(line,
                         "TORCH moco_img_s=%lf instdisc_img_s=%lf nce_img_s=%lf "
                         "infer_img_s=%lf",
                         &rates[0], &rates[1], &rates[2], &rates[3]) == 4;
    }
    int status = pclose(p);
    if (status != 0)
        fprintf(stderr, "bench_train: the PyTorch reference exited with status %d\n", status);
    return got && status == 0;
}

static const char *const case_names[4] = {"moco", "instdisc", "nce", "inference"};

static double measure_case(int i)
{
    switch (i) {
    case 0:
        return measure(
            "moco", "moco",
            (const char *[]){"queue", "4096", "momentum", "0.99", "temperature", "0.1", NULL}, 2);
    case 1:
        return measure("instdisc", "instdisc", (const char *[]){"softmax", "nonparametric", NULL},
                       1);
    case 2:
        return measure("nce", "instdisc", (const char *[]){"softmax", "nce", "nce_k", "4096", NULL},
                       1);
    default:
        return measure("inference", NULL, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    blas_env_apply(argv); /* the OpenBLAS settings invar runs with, as `invar run` has them */
    int want[4] = {1, 1, 1, 1}, reference = 1, named = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--no-reference") == 0) {
            reference = 0;
        } else if (strcmp(argv[a], "--steps") == 0 && a + 1 < argc) {
            repeats = atoi(argv[++a]);
            if (repeats < 1 || repeats > MAX_REPEATS) {
                fprintf(stderr, "bench_train: --steps must be in 1..%d\n", MAX_REPEATS);
                return 2;
            }
        } else {
            int found = 0;
            if (!named)
                memset(want, 0, sizeof want);
            named = 1;
            for (int i = 0; i < 4; i++)
                if (strcmp(argv[a], case_names[i]) == 0)
                    want[i] = found = 1;
            if (!found) {
                fprintf(stderr, "usage: bench_train [--no-reference] [--steps N] "
                                "[moco|instdisc|nce|inference ...]\n");
                return 2;
            }
        }
    }
    if (named)
        reference = 0; /* the ratios need every case */
    struct invar_error err = {0};
    if (invar_registry_create(&reg) != INVAR_OK || invar_registry_scan(reg, NULL, &err) != INVAR_OK)
        die("plugins", &err);
    openblas_set_num_threads(THREADS);
    printf("convnet-s, batch %d, 28x28, %d threads; median of %d steps after %d warm-up\n", BATCH,
           THREADS, repeats, WARMUP);
    double ours[4] = {NAN, NAN, NAN, NAN};
    for (int i = 0; i < 4; i++)
        if (want[i])
            ours[i] = measure_case(i);

    double torch_rates[4];
    int have = reference && run_reference(torch_rates);
    if (!have)
        printf("PyTorch reference skipped: no ratios\n");
    static const char *const keys[4] = {"moco", "instdisc", "nce", "infer"};
    printf("RESULT");
    for (int i = 0; i < 4; i++)
        printf(" %s_img_s=%.1f %s_ratio=%.3f", keys[i], ours[i], keys[i],
               have ? ours[i] / torch_rates[i] : NAN);
    printf("\n");
    invar_registry_destroy(reg);
    return 0;
}
