/* idx — MNIST and Fashion-MNIST in LeCun's IDX format, plain or gzipped.
 *
 *     data: {plugin: idx, path: /usr/share/datasets/fashion-mnist}
 *
 * A split is two files in `path`: train-images-idx3-ubyte and train-labels-idx1-ubyte (or
 * t10k-… for "test"), each optionally with a .gz suffix. zlib's gzread reads plain and gzipped
 * files alike, so both go through one path. The whole split is loaded and validated at open
 * (magic numbers, dimensions, exact byte counts, image/label agreement, label range) and kept
 * as bytes; read converts one image to floats in [0, 1]. Nothing changes after open, so read
 * is safe from any number of threads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <invar/plugin.h>

struct idx_config {
    char path[INVAR_STR_MAX];
    int64_t classes;
};

static const struct invar_param_spec idx_params[] = {
    INVAR_PARAM_STRING(struct idx_config, path, "/usr/share/datasets/fashion-mnist",
                       "folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"),
    INVAR_PARAM_INT(struct idx_config, classes, "10", 1, 256,
                    "number of classes; every label must be below it"),
    INVAR_PARAM_END,
};

struct idx_data {
    uint8_t *images; // (N, H, W)
    int32_t *labels; // (N)
    int64_t n, h, w;
};

#define IDX_IMAGES_MAGIC 0x00000803u // unsigned bytes, 3 dimensions
#define IDX_LABELS_MAGIC 0x00000801u // unsigned bytes, 1 dimension
#define IDX_MAX_DIM (1 << 20)        // far beyond any real IDX file; keeps sizes from overflowing

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Picks "dir/name" if it exists, else "dir/name.gz"; a missing pair is a NOT_FOUND naming both. */
static enum invar_status idx_find(char *out, size_t cap, const char *dir, const char *name,
                                  struct invar_error *err)
{
    struct stat st;
    snprintf(out, cap, "%s/%s", dir, name);
    if (stat(out, &st) == 0)
        return INVAR_OK;
    snprintf(out, cap, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0)
        return INVAR_OK;
    return invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s/%s: no such file (nor %s.gz)", dir, name,
                           name);
}

/* zlib treats a gzip stream that stops early as a soft error: gzread returns what it had, then
 * 0, and only gzerror tells it from a clean end of file. */
static int idx_cut_stream(gzFile f)
{
    int zerr = Z_OK;
    gzerror(f, &zerr);
    return zerr == Z_BUF_ERROR;
}

/* gzerror's text without the "path: " zlib puts in front (our message names the file). */
static const char *idx_zmsg(const char *msg, const char *path)
{
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
        return msg + n + 2;
    return msg;
}

/* Reads exactly n bytes into dst; reports how many arrived on a short read. */
static enum invar_status idx_read_exact(gzFile f, const char *path, uint8_t *dst, size_t n,
                                        size_t already, size_t expected, struct invar_error *err)
{
    size_t got = 0;
    while (got < n) {
        // gzread takes an unsigned count: feed it in 64 MiB pieces.
        unsigned chunk = (unsigned)(n - got < (1u << 26) ? n - got : (1u << 26));
        int r = gzread(f, dst + got, chunk);
        if (r < 0) {
            int zerr;
            const char *msg = idx_zmsg(gzerror(f, &zerr), path);
            return invar_error_set(err, INVAR_ERR_FORMAT,
                                   "%s: corrupt gzip data (after %zu bytes): %s", path,
                                   already + got, msg);
        }
        if (r == 0 && idx_cut_stream(f))
            return invar_error_set(err, INVAR_ERR_FORMAT,
                                   "%s: gzip stream cut short: expected %zu bytes, it ends "
                                   "after %zu",
                                   path, expected, already + got);
        if (r == 0)
            return invar_error_set(err, INVAR_ERR_FORMAT,
                                   "%s: truncated: expected %zu bytes, file ends after %zu", path,
                                   expected, already + got);
        got += (size_t)r;
    }
    return INVAR_OK;
}

/* Opens one IDX file, checks its magic and dimension count, and returns its dims. */
static enum invar_status idx_open_file(gzFile *out, const char *path, uint32_t magic, int ndim,
                                       uint32_t *dims, struct invar_error *err)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return invar_error_set(err, INVAR_ERR_IO, "%s: %s", path,
                               errno ? strerror(errno) : "cannot open");
    gzbuffer(f, 1u << 20);
    uint8_t head[16];
    size_t head_len = 4 + 4 * (size_t)ndim;
    size_t expected = head_len;
    enum invar_status st = idx_read_exact(f, path, head, head_len, 0, expected, err);
    if (st != INVAR_OK) {
        gzclose(f);
        return st;
    }
    uint32_t m = be32(head);
    if (m != magic) {
        gzclose(f);
        return invar_error_set(err, INVAR_ERR_FORMAT,
                               "%s: bad magic number 0x%08x (expected 0x%08x: unsigned bytes, "
                               "%d dimension%s)",
                               path, m, magic, ndim, ndim == 1 ? "" : "s");
    }
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(head + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > IDX_MAX_DIM) {
            gzclose(f);
            return invar_error_set(err, INVAR_ERR_FORMAT, "%s: dimension %d is %u (want 1..%d)",
                                   path, i, dims[i], IDX_MAX_DIM);
        }
    }
    *out = f;
    return INVAR_OK;
}

/* Reads the payload of n bytes, then insists the file ends there. The buffer grows as data
 * arrives, so a header that claims gigabytes in a tiny file costs no giant allocation. */
static enum invar_status idx_read_payload(gzFile f, const char *path, size_t head_len, size_t n,
                                          uint8_t **out, struct invar_error *err)
{
    size_t expected = head_len + n;
    size_t cap = n < (16u << 20) ? n : (16u << 20);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
    size_t got = 0;
    enum invar_status st = INVAR_OK;
    while (got < n) {
        if (got == cap) {
            size_t ncap = cap * 2 < n ? cap * 2 : n;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: cannot allocate %zu bytes", path,
                                     ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        st = idx_read_exact(f, path, buf + got, cap - got, head_len + got, expected, err);
        if (st != INVAR_OK)
            break;
        got = cap;
    }
    if (st == INVAR_OK) {
        uint8_t extra;
        int r = gzread(f, &extra, 1);
        if (r < 0) {
            int zerr;
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: corrupt gzip data (after %zu bytes): %s", path, expected,
                                 idx_zmsg(gzerror(f, &zerr), path));
        } else if (r == 0 && idx_cut_stream(f)) {
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: gzip stream cut short after its %zu bytes of data (no "
                                 "trailer)",
                                 path, expected);
        } else if (r > 0) {
            st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: expected %zu bytes, file is longer",
                                 path, expected);
        }
    }
    if (st != INVAR_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return INVAR_OK;
}

static enum invar_status idx_load_images(struct idx_data *d, const char *path,
                                         struct invar_error *err)
{
    gzFile f = NULL;
    uint32_t dims[3] = {0, 0, 0};
    enum invar_status st = idx_open_file(&f, path, IDX_IMAGES_MAGIC, 3, dims, err);
    if (st != INVAR_OK)
        return st;
    d->n = dims[0];
    d->h = dims[1];
    d->w = dims[2];
    st = idx_read_payload(f, path, 16, (size_t)(d->n * d->h * d->w), &d->images, err);
    gzclose(f);
    return st;
}

static enum invar_status idx_load_labels(struct idx_data *d, const char *path, int64_t classes,
                                         struct invar_error *err)
{
    gzFile f = NULL;
    uint32_t dims[1] = {0};
    enum invar_status st = idx_open_file(&f, path, IDX_LABELS_MAGIC, 1, dims, err);
    if (st != INVAR_OK)
        return st;
    if ((int64_t)dims[0] != d->n) {
        gzclose(f);
        return invar_error_set(err, INVAR_ERR_FORMAT, "%s: %u labels for %lld images", path,
                               dims[0], (long long)d->n);
    }
    uint8_t *raw;
    st = idx_read_payload(f, path, 8, dims[0], &raw, err);
    gzclose(f);
    if (st != INVAR_OK)
        return st;
    d->labels = malloc((size_t)d->n * sizeof *d->labels);
    if (!d->labels) {
        free(raw);
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int64_t i = 0; i < d->n; i++) {
        if (raw[i] >= classes) {
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: label %u of sample %lld is out of range (classes: %lld)",
                                 path, raw[i], (long long)i, (long long)classes);
            break;
        }
        d->labels[i] = raw[i];
    }
    free(raw);
    return st;
}

static void idx_close(void *handle)
{
    struct idx_data *d = handle;
    if (!d)
        return;
    free(d->images);
    free(d->labels);
    free(d);
}

static enum invar_status idx_open(const void *config, const char *split, void **handle,
                                  struct invar_dataset_info *info, struct invar_error *err)
{
    const struct idx_config *c = config;
    const char *prefix;
    if (strcmp(split, "train") == 0)
        prefix = "train";
    else if (strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return invar_error_set(err, INVAR_ERR_INVALID, "idx: unknown split \"%s\" (train or test)",
                               split);
    char name[64], images_path[INVAR_STR_MAX + 80], labels_path[INVAR_STR_MAX + 80];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    enum invar_status st = idx_find(images_path, sizeof images_path, c->path, name, err);
    if (st != INVAR_OK)
        return st;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    st = idx_find(labels_path, sizeof labels_path, c->path, name, err);
    if (st != INVAR_OK)
        return st;

    struct idx_data *d = calloc(1, sizeof *d);
    if (!d)
        return invar_error_set(err, INVAR_ERR_NOMEM, "idx: out of memory");
    st = idx_load_images(d, images_path, err);
    if (st == INVAR_OK)
        st = idx_load_labels(d, labels_path, c->classes, err);
    if (st != INVAR_OK) {
        idx_close(d);
        return st;
    }
    *info = (struct invar_dataset_info){
        .count = d->n,
        .shape = {1, d->h, d->w},
        .num_classes = (int32_t)c->classes,
        .is_sequence = 0,
    };
    *handle = d;
    return INVAR_OK;
}

static enum invar_status idx_read(void *handle, int64_t index, float *out, int32_t *label,
                                  struct invar_error *err)
{
    const struct idx_data *d = handle;
    if (index < 0 || index >= d->n)
        return invar_error_set(err, INVAR_ERR_INVALID, "idx: index %lld outside [0, %lld)",
                               (long long)index, (long long)d->n);
    int64_t hw = d->h * d->w;
    const uint8_t *src = d->images + index * hw; // (H, W)
    for (int64_t i = 0; i < hw; i++)
        out[i] = (float)src[i] / 255.0f; // exact at 0 and 1
    *label = d->labels[index];
    return INVAR_OK;
}

static const struct invar_dataset_ops idx_ops = {
    .open = idx_open,
    .read = idx_read,
    .close = idx_close,
};

INVAR_PLUGIN_DEFINE(invar_dataset, "idx", "1.0.0",
                    "MNIST / Fashion-MNIST IDX files (plain or gzip), splits train and test",
                    struct idx_config, idx_params, idx_ops)
