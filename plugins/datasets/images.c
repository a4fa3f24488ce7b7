/* images — a folder of PNG files, one sub-folder per class.
 *
 *     data: {plugin: images, path: data/shapes, channels: 3, size: 64}
 *
 *     data/shapes/train/circle/001.png        class folders sorted by name give the labels
 *     data/shapes/train/square/001.png        (circle = 0, square = 1)
 *     data/shapes/test/square/002.png         test uses the train split's class list
 *
 * With `split_dirs: false` the class folders sit directly in `path` and every split reads
 * them all (a demo folder with no held-out part). Files ending in .png are taken in byte order
 * of their names, so the sample order never depends on the filesystem. Every image is decoded
 * at open through libpng's simplified API, which also converts gray, palette, 16-bit and alpha
 * images to the requested `channels` (alpha is composited onto black); all must share one
 * size. The decoded bytes are kept, read converts one image to floats in [0, 1].
 */
#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <invar/plugin.h>

struct images_config {
    char path[INVAR_STR_MAX];
    int split_dirs;
    int64_t channels;
    int64_t size;
};

static const struct invar_param_spec images_params[] = {
    INVAR_PARAM_STRING(struct images_config, path, "",
                       "root folder: PATH/SPLIT/CLASS/*.png (or PATH/CLASS/*.png)"),
    INVAR_PARAM_BOOL(struct images_config, split_dirs, "true",
                     "class folders live in PATH/train and PATH/test; false: in PATH itself, "
                     "shared by every split"),
    INVAR_PARAM_INT(struct images_config, channels, "3", 1, 3,
                    "1 (gray) or 3 (RGB); images are converted to it"),
    INVAR_PARAM_INT(struct images_config, size, "0", 0, 65536,
                    "required height and width in pixels; 0: whatever the first image has"),
    INVAR_PARAM_END,
};

#define IMAGES_PATH_MAX 4096

/* out = a/b, refusing a path that does not fit. */
static enum invar_status path_join(char *out, const char *a, const char *b, struct invar_error *err)
{
    int n = snprintf(out, IMAGES_PATH_MAX, "%s/%s", a, b);
    if (n < 0 || n >= IMAGES_PATH_MAX)
        return invar_error_set(err, INVAR_ERR_INVALID, "%s/%s: path too long", a, b);
    return INVAR_OK;
}

/* A sorted list of names. */
struct images_names {
    char **v;
    size_t n, cap;
};

static void names_free(struct images_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_png_suffix(const char *s)
{
    size_t n = strlen(s);
    return n > 4 && strcmp(s + n - 4, ".png") == 0;
}

/* Names in dir, sorted; dirs_only picks sub-folders, else *.png files. Hidden entries skipped. */
static enum invar_status names_list(struct images_names *l, const char *dir, int dirs_only,
                                    struct invar_error *err)
{
    memset(l, 0, sizeof *l);
    errno = 0;
    DIR *d = opendir(dir);
    if (!d)
        return invar_error_set(err, errno == ENOENT ? INVAR_ERR_NOT_FOUND : INVAR_ERR_IO, "%s: %s",
                               dir, strerror(errno));
    struct dirent *e;
    enum invar_status st = INVAR_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char full[IMAGES_PATH_MAX];
        struct stat sb;
        if ((st = path_join(full, dir, e->d_name, err)) != INVAR_OK)
            break;
        if (stat(full, &sb) != 0)
            continue; // a dangling link: nothing to read
        if (dirs_only ? !S_ISDIR(sb.st_mode) : !(S_ISREG(sb.st_mode) && has_png_suffix(e->d_name)))
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 64;
            char **v = realloc(l->v, cap * sizeof *v);
            if (!v) {
                st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            l->v = v, l->cap = cap;
        }
        if (!(l->v[l->n] = strdup(e->d_name))) {
            st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        l->n++;
    }
    closedir(d);
    if (st != INVAR_OK) {
        names_free(l);
        return st;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof *l->v, names_cmp);
    return INVAR_OK;
}

struct images_data {
    uint8_t *pixels; // (N, C, H, W)
    int32_t *labels; // (N)
    int64_t n, cap, c, h, w;
    int fixed; // h and w come from the size parameter
};

static void images_close(void *handle)
{
    struct images_data *d = handle;
    if (!d)
        return;
    free(d->pixels);
    free(d->labels);
    free(d);
}

/* Decodes one PNG into d as sample d->n, in (C, H, W) order. */
static enum invar_status images_load_one(struct images_data *d, const char *path, int32_t label,
                                         uint8_t **scratch, size_t *scratch_cap,
                                         struct invar_error *err)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return invar_error_set(err, INVAR_ERR_FORMAT, "%s: not a readable PNG: %s", path,
                               im.message);
    if (d->h == 0) {
        d->h = im.height;
        d->w = im.width;
    } else if ((int64_t)im.height != d->h || (int64_t)im.width != d->w) {
        png_image_free(&im);
        return invar_error_set(err, INVAR_ERR_FORMAT,
                               "%s: image is %ux%u (width x height), %s %lldx%lld", path, im.width,
                               im.height, d->fixed ? "size requires" : "the images before it are",
                               (long long)d->w, (long long)d->h);
    }
    im.format = d->c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    size_t hwc = (size_t)(d->h * d->w * d->c);
    if (hwc > *scratch_cap) {
        uint8_t *s = realloc(*scratch, hwc);
        if (!s) {
            png_image_free(&im);
            return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
        }
        *scratch = s, *scratch_cap = hwc;
    }
    if (d->n == d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 256;
        uint8_t *px = realloc(d->pixels, (size_t)cap * hwc);
        if (px)
            d->pixels = px;
        int32_t *lb = realloc(d->labels, (size_t)cap * sizeof *lb);
        if (lb)
            d->labels = lb;
        if (!px || !lb) {
            png_image_free(&im);
            return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
        }
        d->cap = cap;
    }
    // Interleaved (H, W, C) from libpng; alpha, if any, is composited onto this black (with
    // NULL libpng would blend onto whatever the buffer held before).
    const png_color black = {0, 0, 0};
    if (!png_image_finish_read(&im, &black, *scratch, 0, NULL))
        return invar_error_set(err, INVAR_ERR_FORMAT, "%s: not a readable PNG: %s", path,
                               im.message);
    uint8_t *dst = d->pixels + (size_t)d->n * hwc; // (C, H, W)
    int64_t hw = d->h * d->w;
    for (int64_t ch = 0; ch < d->c; ch++)
        for (int64_t i = 0; i < hw; i++)
            dst[ch * hw + i] = (*scratch)[i * d->c + ch];
    d->labels[d->n] = label;
    d->n++;
    return INVAR_OK;
}

/* Loads every PNG of every class folder of dir; classes maps folder names to labels. */
static enum invar_status images_load_dir(struct images_data *d, const char *dir,
                                         const struct images_names *classes,
                                         struct invar_error *err)
{
    struct images_names here;
    enum invar_status st = names_list(&here, dir, 1, err);
    if (st != INVAR_OK)
        return st;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    for (size_t k = 0; k < here.n && st == INVAR_OK; k++) {
        char **hit = bsearch(&here.v[k], classes->v, classes->n, sizeof *classes->v, names_cmp);
        if (!hit) {
            st = invar_error_set(err, INVAR_ERR_FORMAT,
                                 "%s/%s: class folder not present in the training split", dir,
                                 here.v[k]);
            break;
        }
        char cdir[IMAGES_PATH_MAX];
        struct images_names files = {0};
        st = path_join(cdir, dir, here.v[k], err);
        if (st == INVAR_OK)
            st = names_list(&files, cdir, 0, err);
        for (size_t i = 0; i < files.n && st == INVAR_OK; i++) {
            char path[IMAGES_PATH_MAX];
            st = path_join(path, cdir, files.v[i], err);
            if (st == INVAR_OK)
                st = images_load_one(d, path, (int32_t)(hit - classes->v), &scratch, &scratch_cap,
                                     err);
        }
        names_free(&files);
    }
    free(scratch);
    names_free(&here);
    if (st == INVAR_OK && d->n == 0)
        st = invar_error_set(err, INVAR_ERR_FORMAT, "%s: no .png files in its class folders", dir);
    return st;
}

static enum invar_status images_open(const void *config, const char *split, void **handle,
                                     struct invar_dataset_info *info, struct invar_error *err)
{
    const struct images_config *c = config;
    if (c->channels != 1 && c->channels != 3)
        return invar_error_set(err, INVAR_ERR_CONFIG, "images: channels is %lld (1 or 3)",
                               (long long)c->channels);
    if (!c->path[0])
        return invar_error_set(err, INVAR_ERR_CONFIG, "images: path is not set");
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "images: unknown split \"%s\" (train or test)", split);
    char train_dir[INVAR_STR_MAX + 16], dir[INVAR_STR_MAX + 16];
    snprintf(train_dir, sizeof train_dir, "%s%s", c->path, c->split_dirs ? "/train" : "");
    snprintf(dir, sizeof dir, "%s%s%s", c->path, c->split_dirs ? "/" : "",
             c->split_dirs ? split : "");
    // The label of a class is its rank among the training split's class folders, so both
    // splits agree even when the test split lacks a class.
    struct images_names classes;
    enum invar_status st = names_list(&classes, train_dir, 1, err);
    if (st != INVAR_OK)
        return st;
    if (classes.n == 0 || classes.n > INT32_MAX) {
        names_free(&classes);
        return invar_error_set(err, INVAR_ERR_FORMAT, "%s: no class folders", train_dir);
    }
    struct images_data *d = calloc(1, sizeof *d);
    if (!d) {
        names_free(&classes);
        return invar_error_set(err, INVAR_ERR_NOMEM, "images: out of memory");
    }
    d->c = c->channels;
    d->h = d->w = c->size; // 0: set by the first image
    d->fixed = c->size > 0;
    st = images_load_dir(d, dir, &classes, err);
    *info = (struct invar_dataset_info){
        .count = d->n,
        .shape = {d->c, d->h, d->w},
        .num_classes = (int32_t)classes.n,
        .is_sequence = 0,
    };
    names_free(&classes);
    if (st != INVAR_OK) {
        images_close(d);
        return st;
    }
    *handle = d;
    return INVAR_OK;
}

static enum invar_status images_read(void *handle, int64_t index, float *out, int32_t *label,
                                     struct invar_error *err)
{
    const struct images_data *d = handle;
    if (index < 0 || index >= d->n)
        return invar_error_set(err, INVAR_ERR_INVALID, "images: index %lld outside [0, %lld)",
                               (long long)index, (long long)d->n);
    int64_t chw = d->c * d->h * d->w;
    const uint8_t *src = d->pixels + index * chw; // (C, H, W)
    for (int64_t i = 0; i < chw; i++)
        out[i] = (float)src[i] / 255.0f;
    *label = d->labels[index];
    return INVAR_OK;
}

static const struct invar_dataset_ops images_ops = {
    .open = images_open,
    .read = images_read,
    .close = images_close,
};

INVAR_PLUGIN_DEFINE(invar_dataset, "images", "1.0.0",
                    "a folder of PNG files with one sub-folder per class (libpng)",
                    struct images_config, images_params, images_ops)
