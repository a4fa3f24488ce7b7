/* sequences — 1-D multichannel time series from NumPy .npy files.
 *
 *     data: {plugin: sequences, path: har/x.npy, labels: har/y.npy, test_fraction: 0.2}
 *
 * `path` holds an array of shape (N, C, T), float32 or float64; `labels` an array of shape (N),
 * int8/16/32/64 or uint8; both little-endian, C order (np.save of a C-contiguous array writes
 * exactly that). A sample is served as (C, 1, T) so image ops apply along T.
 *
 * Splits: with `test_path` and `test_labels` set, "train" reads path/labels and "test" reads
 * the test files. Otherwise one pair of files is split by `test_fraction` f: sample i goes to
 * test when floor((i + 1) f) > floor(i f), so floor(N f) test samples are spread evenly through
 * the file (a file sorted by class still gives a test split with every class) and the rest are
 * train, both in file order. With `classes: 0` the class count is the largest label + 1 over
 * both splits' labels, so train and test always agree on it.
 *
 * The header dict is parsed as the Python literal it is ({'descr': '<f4', 'fortran_order':
 * False, 'shape': (N, C, T), }), keys in any order; the payload must have exactly the size the
 * shape says. Values are converted to float32 at open and must be finite; nothing is
 * normalised here (the framework does that for every dataset).
 */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

struct sequences_config {
    char path[INVAR_STR_MAX];
    char labels[INVAR_STR_MAX];
    char test_path[INVAR_STR_MAX];
    char test_labels[INVAR_STR_MAX];
    double test_fraction;
    int64_t classes;
};

static const struct invar_param_spec sequences_params[] = {
    INVAR_PARAM_STRING(struct sequences_config, path, "",
                       "samples: .npy of shape (N, C, T), float32 or float64"),
    INVAR_PARAM_STRING(struct sequences_config, labels, "",
                       "labels: .npy of shape (N), integer, 0 <= label < classes"),
    INVAR_PARAM_STRING(struct sequences_config, test_path, "",
                       "test samples .npy; empty: split path by test_fraction"),
    INVAR_PARAM_STRING(struct sequences_config, test_labels, "",
                       "test labels .npy (with test_path)"),
    INVAR_PARAM_FLOAT(struct sequences_config, test_fraction, "0.2", 0, 0.9,
                      "without test_path: the share of samples (spread evenly) held out as test"),
    INVAR_PARAM_INT(struct sequences_config, classes, "0", 0, 1 << 20,
                    "number of classes; 0: the largest label + 1"),
    INVAR_PARAM_END,
};

/* ---- .npy --------------------------------------------------------------------------------- */

enum npy_kind { NPY_FLOAT, NPY_INT, NPY_UINT };

static const struct npy_type {
    const char *descr;
    int size;
    enum npy_kind kind;
} npy_types[] = {
    {"<f4", 4, NPY_FLOAT}, {"<f8", 8, NPY_FLOAT}, {"|i1", 1, NPY_INT},  {"<i2", 2, NPY_INT},
    {"<i4", 4, NPY_INT},   {"<i8", 8, NPY_INT},   {"|u1", 1, NPY_UINT}, {NULL, 0, 0},
};

#define NPY_MAX_DIMS 8

struct npy_array {
    const struct npy_type *type;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; // into file
    uint8_t *file;       // the whole file, owned
};

struct npy_parser {
    const char *s, *end, *path;
    struct invar_error *err;
};

static void npy_skip(struct npy_parser *p)
{
    while (p->s < p->end && isspace((unsigned char)*p->s))
        p->s++;
}

static enum invar_status npy_bad(struct npy_parser *p, const char *what)
{
    return invar_error_set(p->err, INVAR_ERR_FORMAT, "%s: bad .npy header: %s", p->path, what);
}

static enum invar_status npy_expect(struct npy_parser *p, char c, const char *what)
{
    npy_skip(p);
    if (p->s >= p->end || *p->s != c)
        return npy_bad(p, what);
    p->s++;
    return INVAR_OK;
}

/* A Python string literal in ' or " quotes, without escapes (numpy never writes any). */
static enum invar_status npy_string(struct npy_parser *p, char *out, size_t cap)
{
    npy_skip(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return npy_bad(p, "expected a quoted string");
    char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (n + 1 >= cap)
            return npy_bad(p, "string too long");
        out[n++] = *p->s++;
    }
    if (p->s >= p->end)
        return npy_bad(p, "unterminated string");
    p->s++;
    out[n] = 0;
    return INVAR_OK;
}

static enum invar_status npy_bool(struct npy_parser *p, int *out)
{
    npy_skip(p);
    size_t left = (size_t)(p->end - p->s);
    if (left >= 4 && strncmp(p->s, "True", 4) == 0)
        *out = 1, p->s += 4;
    else if (left >= 5 && strncmp(p->s, "False", 5) == 0)
        *out = 0, p->s += 5;
    else
        return npy_bad(p, "fortran_order is neither True nor False");
    return INVAR_OK;
}

/* A tuple of non-negative integers: (), (N,), (N, C, T). */
static enum invar_status npy_shape(struct npy_parser *p, struct npy_array *a)
{
    if (npy_expect(p, '(', "shape is not a tuple") != INVAR_OK)
        return INVAR_ERR_FORMAT;
    a->ndim = 0;
    for (;;) {
        npy_skip(p);
        if (p->s < p->end && *p->s == ')') {
            p->s++;
            return INVAR_OK;
        }
        if (a->ndim == NPY_MAX_DIMS)
            return npy_bad(p, "too many dimensions");
        if (p->s >= p->end || !isdigit((unsigned char)*p->s))
            return npy_bad(p, "shape holds a non-integer");
        int64_t v = 0;
        while (p->s < p->end && isdigit((unsigned char)*p->s)) {
            if (v > (INT64_MAX - 9) / 10)
                return npy_bad(p, "dimension too large");
            v = v * 10 + (*p->s++ - '0');
        }
        a->shape[a->ndim++] = v;
        npy_skip(p);
        if (p->s < p->end && *p->s == ',')
            p->s++;
        else if (p->s >= p->end || *p->s != ')')
            return npy_bad(p, "shape tuple not closed");
    }
}

/* Parses the header dict: exactly the keys descr, fortran_order and shape. */
static enum invar_status npy_dict(struct npy_parser *p, struct npy_array *a)
{
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0, fortran = 0;
    char key[32], descr[32];
    if (npy_expect(p, '{', "not a dict") != INVAR_OK)
        return INVAR_ERR_FORMAT;
    for (;;) {
        npy_skip(p);
        if (p->s < p->end && *p->s == '}')
            break;
        enum invar_status st = npy_string(p, key, sizeof key);
        if (st == INVAR_OK)
            st = npy_expect(p, ':', "expected ':' after a key");
        if (st != INVAR_OK)
            return st;
        if (strcmp(key, "descr") == 0 && !seen_descr++)
            st = npy_string(p, descr, sizeof descr);
        else if (strcmp(key, "fortran_order") == 0 && !seen_fortran++)
            st = npy_bool(p, &fortran);
        else if (strcmp(key, "shape") == 0 && !seen_shape++)
            st = npy_shape(p, a);
        else
            return invar_error_set(p->err, INVAR_ERR_FORMAT,
                                   "%s: bad .npy header: unexpected or repeated key '%s'", p->path,
                                   key);
        if (st != INVAR_OK)
            return st;
        npy_skip(p);
        if (p->s < p->end && *p->s == ',')
            p->s++;
        else if (p->s >= p->end || *p->s != '}')
            return npy_bad(p, "expected ',' or '}'");
    }
    if (!seen_descr || !seen_fortran || !seen_shape)
        return npy_bad(p, "descr, fortran_order and shape are required");
    if (fortran)
        return invar_error_set(p->err, INVAR_ERR_FORMAT,
                               "%s: fortran_order is True; save a C-ordered array "
                               "(np.ascontiguousarray)",
                               p->path);
    for (a->type = npy_types; a->type->descr; a->type++)
        if (strcmp(a->type->descr, descr) == 0)
            break;
    if (!a->type->descr)
        return invar_error_set(p->err, INVAR_ERR_FORMAT,
                               "%s: dtype '%s' not supported (little-endian f4, f8, i1, i2, i4, "
                               "i8 or u1)",
                               p->path, descr);
    return INVAR_OK;
}

static void npy_free(struct npy_array *a)
{
    free(a->file);
    memset(a, 0, sizeof *a);
}

/* Reads and validates a whole .npy file: magic, version, header, exact payload size. */
static enum invar_status npy_load(struct npy_array *a, const char *path, struct invar_error *err)
{
    memset(a, 0, sizeof *a);
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return invar_error_set(err, errno == ENOENT ? INVAR_ERR_NOT_FOUND : INVAR_ERR_IO, "%s: %s",
                               path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return invar_error_set(err, INVAR_ERR_IO, "%s: cannot determine the file size", path);
    }
    a->file = malloc((size_t)size + 1);
    if (!a->file) {
        fclose(f);
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(a->file, 1, (size_t)size, f);
    fclose(f);
    enum invar_status st = INVAR_OK;
    const uint8_t *b = a->file;
    size_t head = 0, hlen = 0;
    if (got != (size_t)size)
        st = invar_error_set(err, INVAR_ERR_IO, "%s: read %zu of %ld bytes", path, got, size);
    else if (got < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    else if (b[6] == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        head = 10;
    } else if ((b[6] == 2 || b[6] == 3) && got >= 12) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        head = 12;
    } else
        st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: .npy version %u.%u not supported", path,
                             b[6], b[7]);
    if (st == INVAR_OK && head + hlen > got)
        st = invar_error_set(err, INVAR_ERR_FORMAT,
                             "%s: truncated: header of %zu bytes, file ends after %zu", path,
                             head + hlen, got);
    if (st == INVAR_OK) {
        struct npy_parser p = {(const char *)b + head, (const char *)b + head + hlen, path, err};
        st = npy_dict(&p, a);
    }
    if (st == INVAR_OK) {
        // Checked products: a corrupt shape must not overflow into a plausible size.
        int64_t numel = 1;
        for (int i = 0; i < a->ndim && st == INVAR_OK; i++) {
            if (a->shape[i] != 0 && numel > INT64_MAX / 8 / a->shape[i])
                st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: shape too large", path);
            numel *= a->shape[i];
        }
        a->numel = numel;
        size_t want = head + hlen + (size_t)numel * (size_t)a->type->size;
        if (st == INVAR_OK && want != got)
            st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: %s: expected %zu bytes, file has %zu",
                                 path, want > got ? "truncated" : "trailing bytes", want, got);
        a->data = b + head + hlen;
    }
    if (st != INVAR_OK)
        npy_free(a);
    return st;
}

/* Element i as a double (every supported dtype is exact in a double but i8 beyond 2^53). */
static double npy_get(const struct npy_array *a, int64_t i)
{
    const uint8_t *p = a->data + i * a->type->size;
    uint64_t u = 0;
    for (int k = 0; k < a->type->size; k++)
        u |= (uint64_t)p[k] << (8 * k);
    switch (a->type->kind) {
    case NPY_FLOAT:
        if (a->type->size == 4) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, 4);
            return f;
        } else {
            double d;
            memcpy(&d, &u, 8);
            return d;
        }
    case NPY_INT: {
        int bits = 8 * a->type->size;
        if (bits < 64 && (u >> (bits - 1)) & 1)
            u |= ~0ull << bits; // sign-extend
        return (double)(int64_t)u;
    }
    case NPY_UINT:
        return (double)u;
    }
    return 0;
}

/* ---- the plugin --------------------------------------------------------------------------- */

struct sequences_data {
    float *x;        // (N, C, T)
    int32_t *labels; // (N)
    int64_t n, c, t;
};

static void sequences_close(void *handle)
{
    struct sequences_data *d = handle;
    if (!d)
        return;
    free(d->x);
    free(d->labels);
    free(d);
}

/* 1 when sample i of the single file belongs to the test split. */
static int sequences_is_test(int64_t i, double f)
{
    return floor((double)(i + 1) * f) > floor((double)i * f);
}

/* Loads the samples and labels files and keeps the samples that select (-1: all, 0: train,
 * 1: test by test_fraction). */
static enum invar_status sequences_load(struct sequences_data *d, const char *xpath,
                                        const char *ypath, int select, double fraction,
                                        int64_t classes, int32_t *num_classes,
                                        struct invar_error *err)
{
    struct npy_array x, y;
    enum invar_status st = npy_load(&x, xpath, err);
    if (st != INVAR_OK)
        return st;
    st = npy_load(&y, ypath, err);
    if (st != INVAR_OK) {
        npy_free(&x);
        return st;
    }
    if (x.ndim != 3 || x.type->kind != NPY_FLOAT || x.shape[0] == 0 || x.shape[1] == 0 ||
        x.shape[2] == 0)
        st = invar_error_set(err, INVAR_ERR_FORMAT,
                             "%s: want a float array of shape (N, C, T) with N, C, T > 0 "
                             "(ndim %d, dtype %s)",
                             xpath, x.ndim, x.type->descr);
    else if (y.ndim != 1 || y.type->kind == NPY_FLOAT)
        st = invar_error_set(err, INVAR_ERR_FORMAT,
                             "%s: want an integer array of shape (N) (ndim %d, dtype %s)", ypath,
                             y.ndim, y.type->descr);
    else if (y.shape[0] != x.shape[0])
        st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: %lld labels for %lld samples in %s", ypath,
                             (long long)y.shape[0], (long long)x.shape[0], xpath);
    int64_t n = x.shape[0], ct = x.shape[1] * x.shape[2];
    // Labels: non-negative integers below classes (or define it: the largest + 1).
    int64_t top = -1;
    for (int64_t i = 0; i < n && st == INVAR_OK; i++) {
        double v = npy_get(&y, i);
        if (v < 0 || v > INT32_MAX - 1)
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: label %.0f of sample %lld is out of range", ypath, v,
                                 (long long)i);
        else if (classes > 0 && v >= (double)classes)
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: label %.0f of sample %lld is not below classes (%lld)", ypath,
                                 v, (long long)i, (long long)classes);
        else if ((int64_t)v > top)
            top = (int64_t)v;
    }
    if (st == INVAR_OK) {
        d->c = x.shape[1];
        d->t = x.shape[2];
        d->x = malloc((size_t)(n * ct) * sizeof *d->x);
        d->labels = malloc((size_t)n * sizeof *d->labels);
        if (!d->x || !d->labels)
            st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", xpath);
    }
    for (int64_t i = 0; i < n && st == INVAR_OK; i++) {
        if (select >= 0 && sequences_is_test(i, fraction) != select)
            continue;
        float *dst = d->x + d->n * ct; // (C, T)
        for (int64_t k = 0; k < ct; k++) {
            double v = npy_get(&x, i * ct + k);
            if (!isfinite(v) || fabs(v) > FLT_MAX) {
                st = invar_error_set(err, INVAR_ERR_FORMAT,
                                     "%s: sample %lld holds a non-finite or out-of-float value "
                                     "at channel %lld, step %lld",
                                     xpath, (long long)i, (long long)(k / d->t),
                                     (long long)(k % d->t));
                break;
            }
            dst[k] = (float)v;
        }
        d->labels[d->n++] = (int32_t)npy_get(&y, i);
    }
    if (st == INVAR_OK && d->n == 0)
        st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: the split selects no samples", xpath);
    *num_classes = (int32_t)(classes > 0 ? classes : top + 1);
    npy_free(&x);
    npy_free(&y);
    return st;
}

/* The largest label of a labels file + 1: both splits must agree on num_classes. */
static enum invar_status sequences_label_bound(const char *ypath, int32_t *bound,
                                               struct invar_error *err)
{
    struct npy_array y;
    enum invar_status st = npy_load(&y, ypath, err);
    if (st != INVAR_OK)
        return st;
    if (y.ndim != 1 || y.type->kind == NPY_FLOAT)
        st = invar_error_set(err, INVAR_ERR_FORMAT,
                             "%s: want an integer array of shape (N) (ndim %d, dtype %s)", ypath,
                             y.ndim, y.type->descr);
    double top = -1;
    for (int64_t i = 0; i < y.numel && st == INVAR_OK; i++) {
        double v = npy_get(&y, i);
        if (v < 0 || v > INT32_MAX - 1)
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s: label %.0f of sample %lld is out of range", ypath, v,
                                 (long long)i);
        top = v > top ? v : top;
    }
    *bound = (int32_t)(top + 1);
    npy_free(&y);
    return st;
}

static enum invar_status sequences_open(const void *config, const char *split, void **handle,
                                        struct invar_dataset_info *info, struct invar_error *err)
{
    const struct sequences_config *c = config;
    int test;
    if (strcmp(split, "train") == 0)
        test = 0;
    else if (strcmp(split, "test") == 0)
        test = 1;
    else
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "sequences: unknown split \"%s\" (train or test)", split);
    if (!c->path[0] || !c->labels[0])
        return invar_error_set(err, INVAR_ERR_CONFIG, "sequences: path and labels must be set");
    int separate = c->test_path[0] != 0;
    if (separate != (c->test_labels[0] != 0))
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "sequences: test_path and test_labels go together");
    struct sequences_data *d = calloc(1, sizeof *d);
    if (!d)
        return invar_error_set(err, INVAR_ERR_NOMEM, "sequences: out of memory");
    int32_t num_classes = 0;
    enum invar_status st;
    if (separate)
        st = sequences_load(d, test ? c->test_path : c->path, test ? c->test_labels : c->labels, -1,
                            0, c->classes, &num_classes, err);
    else
        st = sequences_load(d, c->path, c->labels, test, c->test_fraction, c->classes, &num_classes,
                            err);
    if (st == INVAR_OK && separate && c->classes == 0) {
        // The other split's labels count too, or a test file lacking the top class would
        // report fewer classes than train.
        int32_t other = 0;
        st = sequences_label_bound(test ? c->labels : c->test_labels, &other, err);
        num_classes = other > num_classes ? other : num_classes;
    }
    if (st != INVAR_OK) {
        sequences_close(d);
        return st;
    }
    *info = (struct invar_dataset_info){
        .count = d->n,
        .shape = {d->c, 1, d->t},
        .num_classes = num_classes,
        .is_sequence = 1,
    };
    *handle = d;
    return INVAR_OK;
}

static enum invar_status sequences_read(void *handle, int64_t index, float *out, int32_t *label,
                                        struct invar_error *err)
{
    const struct sequences_data *d = handle;
    if (index < 0 || index >= d->n)
        return invar_error_set(err, INVAR_ERR_INVALID, "sequences: index %lld outside [0, %lld)",
                               (long long)index, (long long)d->n);
    size_t ct = (size_t)(d->c * d->t);
    memcpy(out, d->x + (size_t)index * ct, ct * sizeof *out); // (C, 1, T)
    *label = d->labels[index];
    return INVAR_OK;
}

static const struct invar_dataset_ops sequences_ops = {
    .open = sequences_open,
    .read = sequences_read,
    .close = sequences_close,
};

INVAR_PLUGIN_DEFINE(invar_dataset, "sequences", "1.0.0",
                    "1-D multichannel time series from .npy files (N, C, T), held as (C, 1, T)",
                    struct sequences_config, sequences_params, sequences_ops)
