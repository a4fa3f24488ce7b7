/* synthetic — procedural labelled images or sequences, for tests and quick demos.
 *
 *     data: {plugin: synthetic, kind: images, classes: 4, size: 28}
 *     data: {plugin: synthetic, kind: sequences, classes: 4, channels: 3, length: 128}
 *
 * Sample i has label i mod classes. Its jitter comes from the counter-based RNG keyed by
 * (seed, split, i), so a sample is a pure function of its index: read needs no state, is
 * thread-safe, and gives the same numbers on every run and machine.
 *
 * images: a soft bar (Gaussian profile across it) through a point near the centre, at angle
 * pi*k/classes for class k, jittered by up to a quarter of the spacing between classes; length,
 * thickness, brightness and position vary per sample; RGB images tint it with a per-sample
 * colour. Gaussian noise is added and values are clipped to [0, 1].
 *
 * sequences: every channel is a sinusoid with k + 1 cycles per window for class k (jittered by
 * up to a quarter cycle), with its own amplitude in [0.5, 1] and phase, plus Gaussian noise.
 * Held as (C, 1, T).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

enum synthetic_kind { SYN_IMAGES, SYN_SEQUENCES };

struct synthetic_config {
    int kind; // enum synthetic_kind
    int64_t classes;
    int64_t train_count;
    int64_t test_count;
    int64_t size;
    int64_t channels;
    int64_t length;
    double noise;
    int64_t seed;
};

static const struct invar_param_spec synthetic_params[] = {
    INVAR_PARAM_ENUM(struct synthetic_config, kind, "images", "images|sequences",
                     "oriented bars (images) or class-frequency sinusoids (sequences)"),
    INVAR_PARAM_INT(struct synthetic_config, classes, "4", 2, 64, "number of classes"),
    INVAR_PARAM_INT(struct synthetic_config, train_count, "2048", 1, 1 << 30,
                    "samples in the train split"),
    INVAR_PARAM_INT(struct synthetic_config, test_count, "512", 1, 1 << 30,
                    "samples in the test split"),
    INVAR_PARAM_INT(struct synthetic_config, size, "28", 4, 4096, "images: height and width"),
    INVAR_PARAM_INT(struct synthetic_config, channels, "1", 1, 64,
                    "images: 1 (gray) or 3 (RGB); sequences: any number of channels"),
    INVAR_PARAM_INT(struct synthetic_config, length, "128", 8, 1 << 20,
                    "sequences: time steps T; at least 4 * (classes + 1)"),
    INVAR_PARAM_FLOAT(struct synthetic_config, noise, "0.05", 0, 10,
                      "standard deviation of the added Gaussian noise"),
    INVAR_PARAM_INT(struct synthetic_config, seed, "0", 0, 9.0e15,
                    "the dataset's own seed (independent of the experiment's)"),
    INVAR_PARAM_END,
};

#define SYN_PI 3.14159265358979323846
#define SYN_STREAM_TAG 0x73796e74u // "synt": keeps these streams apart from augmentation ones

struct synthetic_data {
    struct synthetic_config cfg; // a copy: the handle outlives nothing it points to
    int64_t count;
    int split; // 0 train, 1 test
};

static enum invar_status synthetic_open(const void *config, const char *split, void **handle,
                                        struct invar_dataset_info *info, struct invar_error *err)
{
    const struct synthetic_config *c = config;
    int test;
    if (strcmp(split, "train") == 0)
        test = 0;
    else if (strcmp(split, "test") == 0)
        test = 1;
    else
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "synthetic: unknown split \"%s\" (train or test)", split);
    if (c->kind == SYN_IMAGES && c->channels != 1 && c->channels != 3)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "synthetic: images need channels 1 or 3 (got %lld)",
                               (long long)c->channels);
    // Keep the highest class frequency (classes + 1/4 cycles) well below Nyquist.
    if (c->kind == SYN_SEQUENCES && c->length < 4 * (c->classes + 1))
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "synthetic: length %lld is too short for %lld classes (want >= "
                               "%lld)",
                               (long long)c->length, (long long)c->classes,
                               (long long)(4 * (c->classes + 1)));
    struct synthetic_data *d = malloc(sizeof *d);
    if (!d)
        return invar_error_set(err, INVAR_ERR_NOMEM, "synthetic: out of memory");
    d->cfg = *c;
    d->split = test;
    d->count = test ? c->test_count : c->train_count;
    int seq = c->kind == SYN_SEQUENCES;
    *info = (struct invar_dataset_info){
        .count = d->count,
        .shape = {c->channels, seq ? 1 : c->size, seq ? c->length : c->size},
        .num_classes = (int32_t)c->classes,
        .is_sequence = seq,
    };
    *handle = d;
    return INVAR_OK;
}

static float clamp01(float v)
{
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

/* out (C, H, W): a bar of class k. */
static void synthetic_bar(const struct synthetic_config *c, struct invar_rng *r, int64_t k,
                          float *out)
{
    float s = (float)c->size, spacing = (float)(SYN_PI / (double)c->classes);
    float theta = (float)k * spacing + invar_rng_range(r, -0.25f, 0.25f) * spacing;
    float cx = 0.5f * (s - 1) + invar_rng_range(r, -s / 8, s / 8);
    float cy = 0.5f * (s - 1) + invar_rng_range(r, -s / 8, s / 8);
    float half = s * invar_rng_range(r, 0.30f, 0.45f);
    float sigma = s * invar_rng_range(r, 0.04f, 0.08f);
    float amp = invar_rng_range(r, 0.7f, 1.0f);
    float tint[3] = {1, 1, 1};
    if (c->channels == 3)
        for (int ch = 0; ch < 3; ch++)
            tint[ch] = invar_rng_range(r, 0.3f, 1.0f);
    float ux = cosf(theta), uy = sinf(theta), inv2s2 = 1.0f / (2 * sigma * sigma);
    int64_t n = c->size, hw = n * n;
    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++) {
            // Distance from (x, y) to the segment centre +- half * u.
            float dx = (float)x - cx, dy = (float)y - cy;
            float along = dx * ux + dy * uy;
            float across = -dx * uy + dy * ux;
            float beyond = fabsf(along) > half ? fabsf(along) - half : 0.0f;
            float v = amp * expf(-(across * across + beyond * beyond) * inv2s2);
            for (int64_t ch = 0; ch < c->channels; ch++)
                out[ch * hw + y * n + x] = v * tint[ch];
        }
    if (c->noise > 0)
        for (int64_t i = 0; i < c->channels * hw; i++)
            out[i] = clamp01(out[i] + (float)c->noise * invar_rng_normal(r));
}

/* out (C, 1, T): sinusoids with k + 1 cycles per window. */
static void synthetic_wave(const struct synthetic_config *c, struct invar_rng *r, int64_t k,
                           float *out)
{
    float cycles = (float)(k + 1) + invar_rng_range(r, -0.25f, 0.25f);
    float w = (float)(2 * SYN_PI) * cycles / (float)c->length;
    for (int64_t ch = 0; ch < c->channels; ch++) {
        float amp = invar_rng_range(r, 0.5f, 1.0f);
        float phase = invar_rng_range(r, 0.0f, (float)(2 * SYN_PI));
        for (int64_t t = 0; t < c->length; t++)
            out[ch * c->length + t] = amp * sinf(w * (float)t + phase);
    }
    if (c->noise > 0)
        for (int64_t i = 0; i < c->channels * c->length; i++)
            out[i] += (float)c->noise * invar_rng_normal(r);
}

static enum invar_status synthetic_read(void *handle, int64_t index, float *out, int32_t *label,
                                        struct invar_error *err)
{
    const struct synthetic_data *d = handle;
    if (index < 0 || index >= d->count)
        return invar_error_set(err, INVAR_ERR_INVALID, "synthetic: index %lld outside [0, %lld)",
                               (long long)index, (long long)d->count);
    struct invar_rng r;
    invar_rng_init(&r, (uint64_t)d->cfg.seed,
                   invar_rng_stream((uint64_t)d->split, (uint64_t)index, 0, SYN_STREAM_TAG));
    int64_t k = index % d->cfg.classes;
    if (d->cfg.kind == SYN_IMAGES)
        synthetic_bar(&d->cfg, &r, k, out);
    else
        synthetic_wave(&d->cfg, &r, k, out);
    *label = (int32_t)k;
    return INVAR_OK;
}

static void synthetic_close(void *handle)
{
    free(handle);
}

static const struct invar_dataset_ops synthetic_ops = {
    .open = synthetic_open,
    .read = synthetic_read,
    .close = synthetic_close,
};

INVAR_PLUGIN_DEFINE(invar_dataset, "synthetic", "1.0.0",
                    "procedural labelled images (oriented bars) or sequences (sinusoids)",
                    struct synthetic_config, synthetic_params, synthetic_ops)
