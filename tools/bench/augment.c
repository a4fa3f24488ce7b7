/* Benchmark: images per second of every augmentation plugin on 28 x 28 grayscale images, one
 * thread, and of the default two-view MoCo stack (resized_crop scale [0.2, 1]; hflip p 0.5;
 * color_jitter brightness 0.4 contrast 0.4, p 0.8) applied twice per image. The stack must
 * reach 50,000 two-view images per second on one core so that it never starves a training
 * step; the benchmark fails below that.
 *
 *     meson test -C build --benchmark augment -v
 *
 * Plugins are dlopened from $INVAR_BUILD_ROOT/plugins/augment/, as the framework's loader
 * does, and configured through their own parameter tables. Images are Fashion-MNIST-like:
 * a smooth bright blob with texture on a dark background, values in [0, 1]. Temporal plugins
 * run on (1, 1, 784) sequences, the same number of values. The application probability `p`
 * is drawn here from each view's RNG before the plugin, as the framework does (a skip copies
 * the input). Rates are images per second of one thread's CPU time (see now()).
 * Last line: RESULT twoview_img_s=<n> twoview_wall_img_s=<n> <plugin>_img_s=<n> ... */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <invar/plugin.h>
#include <invar/rng.h>

#define SIDE 28
#define NPIX (SIDE * SIDE)
#define NIMG 1024
#define TARGET_TWOVIEW 50000.0

struct bench_plugin {
    void *so;
    const struct invar_plugin *desc;
    void *config;
};

/* Rates are per core: the thread's own CPU time, so that other processes on a shared machine
 * do not count against the plugins. The wall-clock rate of the two-view stack is printed
 * beside it. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Writes one value into the config by the parameter's type; the benchmark only ever passes
 * well-formed values, the framework's parser does the checking. */
static int bench_write(const struct invar_param_spec *s, void *config, const char *text)
{
    char *base = (char *)config + s->offset;
    switch (s->type) {
    case INVAR_TYPE_BOOL:
        *(int *)base = strcmp(text, "true") == 0 || strcmp(text, "1") == 0;
        return 0;
    case INVAR_TYPE_INT:
        *(int64_t *)base = strtoll(text, NULL, 10);
        return 0;
    case INVAR_TYPE_FLOAT:
        *(double *)base = strtod(text, NULL);
        return 0;
    case INVAR_TYPE_STRING:
        snprintf(base, INVAR_STR_MAX, "%s", text);
        return 0;
    case INVAR_TYPE_ENUM: {
        size_t n = strlen(text);
        int idx = 0;
        for (const char *a = s->allowed; a && *a; idx++) {
            const char *bar = strchr(a, '|');
            size_t len = bar ? (size_t)(bar - a) : strlen(a);
            if (len == n && strncmp(a, text, n) == 0) {
                *(int *)base = idx;
                return 0;
            }
            a = bar ? bar + 1 : a + len;
        }
        return -1;
    }
    case INVAR_TYPE_RANGE: {
        double *r = (double *)base;
        const char *p = text + strspn(text, "[ ");
        char *end;
        r[0] = strtod(p, &end);
        p = end + strspn(end, ", ");
        r[1] = strtod(p, NULL);
        return 0;
    }
    }
    return -1;
}

static int bench_set(struct bench_plugin *p, const char *key, const char *text)
{
    for (const struct invar_param_spec *s = p->desc->params; s && s->key; s++)
        if (strcmp(s->key, key) == 0)
            return bench_write(s, p->config, text);
    return -1;
}

static int bench_open(struct bench_plugin *p, const char *name)
{
    const char *root = getenv("INVAR_BUILD_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/plugins/augment/%s.so", root ? root : ".", name);
    memset(p, 0, sizeof *p);
    p->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->so) {
        fprintf(stderr, "bench: dlopen %s: %s\n", path, dlerror());
        return -1;
    }
    invar_plugin_entry_fn entry;
    void *sym = dlsym(p->so, INVAR_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry); /* POSIX: dlsym's result is callable */
    if (!entry) {
        fprintf(stderr, "bench: %s has no entry symbol\n", path);
        return -1;
    }
    for (const struct invar_plugin *const *t = entry(); *t; t++)
        if ((*t)->abi_version == INVAR_ABI_VERSION && strcmp((*t)->name, name) == 0)
            p->desc = *t;
    if (!p->desc || p->desc->kind != INVAR_KIND_AUGMENT) {
        fprintf(stderr, "bench: %s does not define augmentation %s\n", path, name);
        return -1;
    }
    p->config = calloc(1, p->desc->config_size ? p->desc->config_size : 1);
    if (!p->config)
        return -1;
    for (const struct invar_param_spec *s = p->desc->params; s && s->key; s++)
        if (s->def && bench_write(s, p->config, s->def) != 0) {
            fprintf(stderr, "bench: %s.%s: bad default %s\n", name, s->key, s->def);
            return -1;
        }
    return 0;
}

static void bench_close(struct bench_plugin *p)
{
    free(p->config);
    if (p->so)
        dlclose(p->so);
    memset(p, 0, sizeof *p);
}

/* NIMG images (NIMG, 28, 28): an elliptic blob with stripes, as a garment on black. */
static void make_images(float *imgs)
{
    struct invar_rng r;
    invar_rng_init(&r, 7, 0);
    for (int n = 0; n < NIMG; n++) {
        double cx = 13.5 + 3.0 * invar_rng_range(&r, -1, 1);
        double cy = 13.5 + 3.0 * invar_rng_range(&r, -1, 1);
        double ax = 6.0 + 5.0 * invar_rng_uniform(&r), ay = 8.0 + 5.0 * invar_rng_uniform(&r);
        double freq = 0.3 + 0.8 * invar_rng_uniform(&r), level = 0.5 + 0.4 * invar_rng_uniform(&r);
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                double d = (x - cx) * (x - cx) / (ax * ax) + (y - cy) * (y - cy) / (ay * ay);
                double v = d < 1.0 ? level * (0.8 + 0.2 * sin(freq * y)) * (1.0 - 0.3 * d) : 0.0;
                imgs[n * NPIX + y * SIDE + x] = (float)v;
            }
    }
}

struct bench_row {
    const char *name;
    const char *key[4], *value[4]; /* overrides of the defaults, if any */
};

static const struct bench_row rows[] = {
    {"translate", {0}, {0}},
    {"crop", {0}, {0}},
    {"rotate", {0}, {0}},
    {"rot90", {0}, {0}},
    {"resized_crop", {"scale"}, {"[0.2, 1.0]"}},
    {"zoom", {0}, {0}},
    {"time_shift", {0}, {0}},
    {"time_crop", {0}, {0}},
    {"time_warp", {0}, {0}},
    {"time_mask", {0}, {0}},
    {"color_jitter", {0}, {0}},
    {"grayscale", {0}, {0}},
    {"solarize", {0}, {0}},
    {"invert", {0}, {0}},
    {"elastic", {0}, {0}},
    {"affine", {0}, {0}},
    {"perspective", {0}, {0}},
    {"hflip", {0}, {0}},
    {"vflip", {0}, {0}},
    {"gaussian_blur", {0}, {0}},
    {"gaussian_noise", {0}, {0}},
    {"erase", {0}, {0}},
};
#define NROWS (sizeof rows / sizeof rows[0])

/* Applies p to images until `seconds` have passed; returns images per second. */
static double bench_one(struct bench_plugin *p, const float *imgs, float *out, double seconds)
{
    const struct invar_augment_ops *ops = p->desc->ops.augment;
    int seq = !(ops->flags & INVAR_AUG_IMAGES) || ops->flags == INVAR_AUG_SEQUENCES;
    int64_t n = 0;
    double t0 = now(), t;
    do {
        for (int k = 0; k < 256; k++, n++) {
            struct invar_rng r;
            invar_rng_init(&r, 1, invar_rng_stream(0, (uint64_t)n, 0, 0));
            struct invar_image in = {(float *)imgs + (n % NIMG) * NPIX, 1, seq ? 1 : SIDE,
                                     seq ? NPIX : SIDE};
            struct invar_image o = {out, 0, 0, 0};
            ops->apply(p->config, &r, &in, &o);
        }
        t = now() - t0;
    } while (t < seconds);
    return (double)n / t;
}

/* One step of a view: with probability prob apply p to in, else copy in (as the framework
 * does), into out. */
static void view_step(struct bench_plugin *p, double prob, struct invar_rng *r,
                      const struct invar_image *in, struct invar_image *out)
{
    if (prob < 1.0 && invar_rng_uniform(r) >= (float)prob) {
        out->c = in->c, out->h = in->h, out->w = in->w;
        memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
    } else {
        p->desc->ops.augment->apply(p->config, r, in, out);
    }
}

static double bench_twoview(struct bench_plugin stack[3], const float *imgs, float *views,
                            double seconds, double *wall_rate)
{
    double w0 = wall();
    static const double prob[3] = {1.0, 0.5, 0.8};
    float bufa[NPIX], bufb[NPIX];
    int64_t n = 0;
    double t0 = now(), t;
    do {
        for (int k = 0; k < 256; k++, n++)
            for (uint64_t v = 0; v < 2; v++) {
                struct invar_rng r;
                invar_rng_init(&r, 1, invar_rng_stream(0, (uint64_t)n, v, 0));
                struct invar_image in = {(float *)imgs + (n % NIMG) * NPIX, 1, SIDE, SIDE};
                struct invar_image a = {bufa, 0, 0, 0}, b = {bufb, 0, 0, 0};
                struct invar_image slot = {views + ((size_t)k * 2 + v) * NPIX, 0, 0, 0};
                view_step(&stack[0], prob[0], &r, &in, &a);
                view_step(&stack[1], prob[1], &r, &a, &b);
                view_step(&stack[2], prob[2], &r, &b, &slot);
            }
        t = now() - t0;
    } while (t < seconds);
    *wall_rate = (double)n / (wall() - w0);
    return (double)n / t;
}

int main(void)
{
    float *imgs = malloc(sizeof(float) * NIMG * NPIX);      // (NIMG, 28, 28)
    float *out = malloc(sizeof(float) * 4 * NPIX);          // any plugin's output
    float *views = malloc(sizeof(float) * 256 * 2 * NPIX);  // (256, 2, 28, 28)
    if (!imgs || !out || !views)
        return 1;
    make_images(imgs);
    char result[4096];
    size_t len = 0;
    printf("%-16s %12s\n", "augmentation", "img/s");
    for (size_t i = 0; i < NROWS; i++) {
        struct bench_plugin p;
        if (bench_open(&p, rows[i].name) != 0)
            return 1;
        for (int k = 0; k < 4 && rows[i].key[k]; k++)
            if (bench_set(&p, rows[i].key[k], rows[i].value[k]) != 0)
                return 1;
        double rate = bench_one(&p, imgs, out, 0.25);
        printf("%-16s %12.0f\n", rows[i].name, rate);
        len += (size_t)snprintf(result + len, sizeof result - len, " %s_img_s=%.0f",
                                rows[i].name, rate);
        bench_close(&p);
    }
    struct bench_plugin stack[3];
    if (bench_open(&stack[0], "resized_crop") || bench_open(&stack[1], "hflip") ||
        bench_open(&stack[2], "color_jitter"))
        return 1;
    bench_set(&stack[0], "scale", "[0.2, 1.0]");
    bench_set(&stack[2], "brightness", "0.4");
    bench_set(&stack[2], "contrast", "0.4");
    bench_set(&stack[2], "saturation", "0");
    bench_set(&stack[2], "hue", "0");
    double wall_rate;
    double twoview = bench_twoview(stack, imgs, views, 1.0, &wall_rate);
    printf("two-view MoCo stack: %.0f two-view images/s per core (%.0f by the wall clock; "
           "target %.0f)\n", twoview, wall_rate, TARGET_TWOVIEW);
    printf("RESULT twoview_img_s=%.0f twoview_wall_img_s=%.0f%s\n", twoview, wall_rate, result);
    for (int i = 0; i < 3; i++)
        bench_close(&stack[i]);
    free(imgs), free(out), free(views);
    return twoview >= TARGET_TWOVIEW ? 0 : 1;
}
