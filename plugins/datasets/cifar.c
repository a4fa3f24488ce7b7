/* cifar — CIFAR-10 and CIFAR-100 in their binary versions.
 *
 *     data: {plugin: cifar, variant: cifar100, label: coarse, path: data/cifar-100-binary}
 *
 * CIFAR-10: data_batch_1.bin … data_batch_5.bin (train) and test_batch.bin (test), records of
 * 1 label byte + 3072 pixel bytes. CIFAR-100: train.bin and test.bin, records of a coarse label
 * byte, a fine label byte and 3072 pixel bytes. The pixels are already planar (1024 red, 1024
 * green, 1024 blue, each row-major 32×32), which is our (C, H, W). The split is loaded whole at
 * open and validated (file size a multiple of the record, labels in range); read converts to
 * floats in [0, 1] and touches nothing shared, so it is thread-safe.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

enum cifar_variant { CIFAR_10, CIFAR_100 };
enum cifar_label { CIFAR_FINE, CIFAR_COARSE };

struct cifar_config {
    char path[INVAR_STR_MAX];
    int variant; // enum cifar_variant
    int label;   // enum cifar_label
};

static const struct invar_param_spec cifar_params[] = {
    INVAR_PARAM_STRING(struct cifar_config, path, "",
                       "folder of the .bin batches; empty: ./cifar-10-batches-bin or "
                       "./cifar-100-binary by variant"),
    INVAR_PARAM_ENUM(struct cifar_config, variant, "cifar10", "cifar10|cifar100",
                     "cifar10 (3073-byte records) or cifar100 (3074-byte records)"),
    INVAR_PARAM_ENUM(struct cifar_config, label, "fine", "fine|coarse",
                     "CIFAR-100 only: the 100 fine classes or the 20 coarse superclasses"),
    INVAR_PARAM_END,
};

#define CIFAR_PIXELS 3072 // (3, 32, 32)

/* One row per variant: the files of each split, the record layout, the class counts. */
static const struct cifar_layout {
    const char *default_dir;
    const char *train[6]; // NULL-terminated
    const char *test[2];
    int label_bytes; // bytes before the pixels
    int classes[2];  // by enum cifar_label
} cifar_layouts[] = {
    [CIFAR_10] = {"cifar-10-batches-bin",
                  {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                   "data_batch_5.bin", NULL},
                  {"test_batch.bin", NULL},
                  1,
                  {10, 10}},
    [CIFAR_100] = {"cifar-100-binary", {"train.bin", NULL}, {"test.bin", NULL}, 2, {100, 20}},
};

struct cifar_data {
    uint8_t *pixels; // (N, 3, 32, 32)
    int32_t *labels; // (N)
    int64_t n;
};

static void cifar_close(void *handle)
{
    struct cifar_data *d = handle;
    if (!d)
        return;
    free(d->pixels);
    free(d->labels);
    free(d);
}

/* Appends the records of one file to d, checking its size and every label. */
static enum invar_status cifar_load_file(struct cifar_data *d, const char *path,
                                         const struct cifar_layout *lay, int which,
                                         struct invar_error *err)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return invar_error_set(err, errno == ENOENT ? INVAR_ERR_NOT_FOUND : INVAR_ERR_IO, "%s: %s",
                               path, strerror(errno));
    enum invar_status st = INVAR_OK;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return invar_error_set(err, INVAR_ERR_IO, "%s: cannot determine the file size", path);
    }
    size_t rec = (size_t)lay->label_bytes + CIFAR_PIXELS;
    if (size == 0 || (size_t)size % rec != 0) {
        fclose(f);
        return invar_error_set(err, INVAR_ERR_FORMAT,
                               "%s: %ld bytes is not a whole number of %zu-byte records "
                               "(%zu records and %zu bytes over)",
                               path, size, rec, (size_t)size / rec, (size_t)size % rec);
    }
    int64_t n = (int64_t)((size_t)size / rec);
    uint8_t *px = realloc(d->pixels, (size_t)(d->n + n) * CIFAR_PIXELS);
    if (px)
        d->pixels = px;
    int32_t *lb = realloc(d->labels, (size_t)(d->n + n) * sizeof *lb);
    if (lb)
        d->labels = lb;
    uint8_t *buf = malloc((size_t)size);
    if (!px || !lb || !buf) {
        free(buf);
        fclose(f);
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return invar_error_set(err, INVAR_ERR_IO, "%s: read %zu of %ld bytes", path, got, size);
    }
    // CIFAR-100 puts the coarse label first, then the fine one.
    int label_at = lay->label_bytes == 2 ? (which == CIFAR_COARSE ? 0 : 1) : 0;
    int classes = lay->classes[which];
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *r = buf + (size_t)i * rec;
        if (r[label_at] >= classes) {
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: record %lld has label %u, beyond %d classes", path,
                                 (long long)i, r[label_at], classes);
            break;
        }
        d->labels[d->n + i] = r[label_at];
        memcpy(d->pixels + (size_t)(d->n + i) * CIFAR_PIXELS, r + lay->label_bytes, CIFAR_PIXELS);
    }
    free(buf);
    if (st == INVAR_OK)
        d->n += n;
    return st;
}

static enum invar_status cifar_open(const void *config, const char *split, void **handle,
                                    struct invar_dataset_info *info, struct invar_error *err)
{
    const struct cifar_config *c = config;
    const struct cifar_layout *lay = &cifar_layouts[c->variant];
    const char *const *files;
    if (strcmp(split, "train") == 0)
        files = lay->train;
    else if (strcmp(split, "test") == 0)
        files = lay->test;
    else
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "cifar: unknown split \"%s\" (train or test)", split);
    const char *dir = c->path[0] ? c->path : lay->default_dir;
    struct cifar_data *d = calloc(1, sizeof *d);
    if (!d)
        return invar_error_set(err, INVAR_ERR_NOMEM, "cifar: out of memory");
    for (int i = 0; files[i]; i++) {
        char path[INVAR_STR_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        enum invar_status st = cifar_load_file(d, path, lay, c->label, err);
        if (st != INVAR_OK) {
            cifar_close(d);
            return st;
        }
    }
    *info = (struct invar_dataset_info){
        .count = d->n,
        .shape = {3, 32, 32},
        .num_classes = lay->classes[c->label],
        .is_sequence = 0,
    };
    *handle = d;
    return INVAR_OK;
}

static enum invar_status cifar_read(void *handle, int64_t index, float *out, int32_t *label,
                                    struct invar_error *err)
{
    const struct cifar_data *d = handle;
    if (index < 0 || index >= d->n)
        return invar_error_set(err, INVAR_ERR_INVALID, "cifar: index %lld outside [0, %lld)",
                               (long long)index, (long long)d->n);
    const uint8_t *src = d->pixels + (size_t)index * CIFAR_PIXELS; // (3, 32, 32)
    for (int i = 0; i < CIFAR_PIXELS; i++)
        out[i] = (float)src[i] / 255.0f;
    *label = d->labels[index];
    return INVAR_OK;
}

static const struct invar_dataset_ops cifar_ops = {
    .open = cifar_open,
    .read = cifar_read,
    .close = cifar_close,
};

INVAR_PLUGIN_DEFINE(invar_dataset, "cifar", "1.0.0",
                    "CIFAR-10 / CIFAR-100 binary batches (32x32 RGB), splits train and test",
                    struct cifar_config, cifar_params, cifar_ops)
