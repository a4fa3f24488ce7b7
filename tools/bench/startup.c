/* Benchmark: what `invar run` pays before its first training step — find and dlopen the
 * plugins, check every descriptor and parameter table, parse an experiment that names ten
 * plugins, type and validate every section through the tables, and hash the resolved config.
 *
 *     meson test -C build --benchmark startup -v
 *
 * Two figures, each the median of REPEATS cold starts (a fresh registry every time, so every
 * plugin is dlopened and validated again): `startup_ms` scans the whole search path as the
 * command does (every plugin of the build tree), `startup_ten_ms` loads only the ten files the
 * experiment names. The last line is `RESULT startup_ms=... startup_ten_ms=... plugins=N`.
 * Target: under 50 ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <invar/config.h>
#include <invar/registry.h>

#define REPEATS 9

/* Ten plugins: a dataset, seven augmentations, an encoder, an objective. */
static const char experiment[] =
    "name: startup\n"
    "seed: 1\n"
    "data: {plugin: idx, limit: 2048}\n"
    "augment:\n"
    "  - {plugin: resized_crop, scale: [0.2, 1.0]}\n"
    "  - {plugin: hflip, p: 0.5}\n"
    "  - {plugin: rotate, degrees: [-10, 10], p: 0.5}\n"
    "  - {plugin: color_jitter, brightness: 0.4, contrast: 0.4, p: 0.8}\n"
    "  - {plugin: gaussian_blur, p: 0.2}\n"
    "  - {plugin: erase, p: 0.25}\n"
    "  - {plugin: gaussian_noise, p: 0.2}\n"
    "encoder: {plugin: convnet, width: 1, dim: 128}\n"
    "objective: {plugin: moco, queue: 4096, momentum: 0.99, temperature: 0.1}\n"
    "optim: {name: sgd, lr: 0.06, momentum: 0.9, weight_decay: 5e-4, schedule: cosine}\n"
    "train: {epochs: 15, batch_size: 256, threads: 2}\n"
    "eval: {knn: {k: 200, t: 0.07}, linear: {epochs: 10}}\n";

static const char *const named[] = {"idx",          "resized_crop",  "hflip", "rotate",
                                    "color_jitter", "gaussian_blur", "erase", "gaussian_noise",
                                    "convnet",      "moco"};
#define N_NAMED (sizeof named / sizeof named[0])

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what, const struct invar_error *err)
{
    fprintf(stderr, "startup: %s: %s\n", what, err->msg);
    exit(1);
}

/* One cold start; paths NULL means scan the search path, else load exactly those files. */
static double one_start(char paths[][4096], size_t *n_plugins)
{
    struct invar_error err = {{0}};
    double t0 = now_ms();
    struct invar_registry *reg;
    if (invar_registry_create(&reg) != INVAR_OK)
        die("registry", &err);
    if (!paths) {
        if (invar_registry_scan(reg, NULL, &err) != INVAR_OK)
            die("scan", &err);
    } else {
        for (size_t i = 0; i < N_NAMED; i++)
            if (invar_registry_load_file(reg, paths[i], &err) != INVAR_OK)
                die(paths[i], &err);
    }
    struct invar_experiment *e;
    if (invar_experiment_load_string(&e, "startup.yaml", experiment, NULL, 0, reg, &err) !=
        INVAR_OK)
        die("experiment", &err);
    if (strlen(invar_experiment_hash(e)) != 64)
        die("hash", &err);
    *n_plugins = invar_registry_count(reg);
    invar_experiment_destroy(e);
    invar_registry_destroy(reg);
    return now_ms() - t0;
}

int main(void)
{
    /* Where the ten named plugins live, from one scan. */
    static char paths[N_NAMED][4096];
    struct invar_error err = {{0}};
    struct invar_registry *reg;
    if (invar_registry_create(&reg) != INVAR_OK || invar_registry_scan(reg, NULL, &err) != INVAR_OK)
        die("scan", &err);
    for (size_t i = 0; i < N_NAMED; i++) {
        const struct invar_registry_entry *e = invar_registry_find(reg, 0, named[i]);
        if (!e) {
            fprintf(stderr, "startup: plugin %s not found (build the plugins first)\n", named[i]);
            return 1;
        }
        snprintf(paths[i], sizeof paths[i], "%s", e->path);
    }
    invar_registry_destroy(reg);

    double all[REPEATS], ten[REPEATS];
    size_t n_all = 0, n_ten = 0;
    one_start(NULL, &n_all); /* warm the page cache */
    for (int r = 0; r < REPEATS; r++) {
        all[r] = one_start(NULL, &n_all);
        ten[r] = one_start(paths, &n_ten);
        printf("start %d: scan %.2f ms (%zu plugins), ten %.2f ms\n", r, all[r], n_all, ten[r]);
    }
    qsort(all, REPEATS, sizeof all[0], cmp);
    qsort(ten, REPEATS, sizeof ten[0], cmp);
    printf("RESULT startup_ms=%.2f startup_ten_ms=%.2f plugins=%zu\n", all[REPEATS / 2],
           ten[REPEATS / 2], n_all);
    return 0;
}
