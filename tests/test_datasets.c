/* Dataset plugins: tiny fixtures written at test time (plain and gzipped IDX, CIFAR records,
 * PNG folders, .npy files), exact values read back, and every kind of damaged file refused with
 * a status and a message naming the file. */
#define _XOPEN_SOURCE 700 // nftw
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "invar/plugin.h"
// The harness casts dlsym's result to a function pointer, which POSIX allows and ISO C frowns on.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include "plugin_harness.h"
#pragma GCC diagnostic pop

/* ---- fixture helpers ---------------------------------------------------------------------- */

static char tmp[256];

static void tmp_make(void)
{
    snprintf(tmp, sizeof tmp, "%s/invar-ds-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp), "mkdtemp");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void tmp_remove(void)
{
    if (tmp[0])
        nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmp[0] = 0;
}

TestSuite(datasets, .init = tmp_make, .fini = tmp_remove);

/* tmp/rel, creating the parent folders of rel. */
static const char *fx_path(const char *rel)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    for (char *p = path + strlen(tmp) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    return path;
}

static void fx_write(const char *rel, const void *data, size_t n)
{
    FILE *f = fopen(fx_path(rel), "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void fx_write_gz(const char *rel, const void *data, size_t n)
{
    gzFile f = gzopen(fx_path(rel), "wb");
    cr_assert_not_null(f);
    cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(f), Z_OK);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Opens a split of the plugin with its current config. */
static enum invar_status ds_open(struct ph_plugin *p, const char *split, void **h,
                                 struct invar_dataset_info *info, struct invar_error *err)
{
    memset(err, 0, sizeof *err);
    *h = NULL;
    return p->desc->ops.dataset->open(p->config, split, h, info, err);
}

/* Asserts that opening fails with st and a message holding each of the given pieces. */
static void expect_open_error(struct ph_plugin *p, const char *split, enum invar_status st,
                              const char *piece1, const char *piece2)
{
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    enum invar_status got = ds_open(p, split, &h, &info, &err);
    cr_assert_eq(got, st, "status %s (want %s): %s", invar_status_str(got), invar_status_str(st),
                 err.msg);
    cr_assert_null(h);
    cr_assert(strstr(err.msg, piece1), "message \"%s\" lacks \"%s\"", err.msg, piece1);
    if (piece2)
        cr_assert(strstr(err.msg, piece2), "message \"%s\" lacks \"%s\"", err.msg, piece2);
}

/* ---- idx ---------------------------------------------------------------------------------- */

#define IDX_N 3
#define IDX_H 2
#define IDX_W 3

static uint8_t idx_pixel(int i, int p) { return (uint8_t)(i * 97 + p * 41 + (p == 0 ? 255 : 0)); }

/* An IDX images file of n images (H, W), payload cut to keep bytes. */
static size_t idx_images(uint8_t *buf, uint32_t magic, int n)
{
    put_be32(buf, magic);
    put_be32(buf + 4, (uint32_t)n);
    put_be32(buf + 8, IDX_H);
    put_be32(buf + 12, IDX_W);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < IDX_H * IDX_W; p++)
            buf[16 + i * IDX_H * IDX_W + p] = idx_pixel(i, p);
    return 16 + (size_t)n * IDX_H * IDX_W;
}

static size_t idx_labels(uint8_t *buf, int n, const uint8_t *labels)
{
    put_be32(buf, 0x00000801);
    put_be32(buf + 4, (uint32_t)n);
    memcpy(buf + 8, labels, (size_t)n);
    return 8 + (size_t)n;
}

static const uint8_t idx_good_labels[IDX_N] = {9, 0, 4};

static void idx_fixture(const char *prefix, int gz)
{
    uint8_t img[256], lab[64];
    size_t ni = idx_images(img, 0x00000803, IDX_N), nl = idx_labels(lab, IDX_N, idx_good_labels);
    char a[128], b[128];
    snprintf(a, sizeof a, "mnist/%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    snprintf(b, sizeof b, "mnist/%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? fx_write_gz : fx_write)(a, img, ni);
    (gz ? fx_write_gz : fx_write)(b, lab, nl);
}

static void idx_plugin(struct ph_plugin *p)
{
    ph_open(p, "datasets", "idx");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mnist", tmp);
    ph_set(p, "path", dir);
}

static void idx_check_split(struct ph_plugin *p, const char *split)
{
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(p, split, &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, IDX_N);
    cr_assert_eq(info.shape[0], 1);
    cr_assert_eq(info.shape[1], IDX_H);
    cr_assert_eq(info.shape[2], IDX_W);
    cr_assert_eq(info.num_classes, 10);
    cr_assert_eq(info.is_sequence, 0);
    for (int i = 0; i < IDX_N; i++) {
        float out[IDX_H * IDX_W];
        int32_t label = -7;
        cr_assert_eq(p->desc->ops.dataset->read(h, i, out, &label, &err), INVAR_OK);
        cr_assert_eq(label, idx_good_labels[i]);
        for (int k = 0; k < IDX_H * IDX_W; k++)
            cr_assert_eq(out[k], (float)idx_pixel(i, k) / 255.0f, "image %d pixel %d", i, k);
    }
    float out[IDX_H * IDX_W];
    int32_t label;
    cr_assert_eq(p->desc->ops.dataset->read(h, IDX_N, out, &label, &err), INVAR_ERR_INVALID);
    cr_assert_eq(p->desc->ops.dataset->read(h, -1, out, &label, &err), INVAR_ERR_INVALID);
    p->desc->ops.dataset->close(h);
}

Test(datasets, idx_plain_and_gzip_read_back_exactly)
{
    idx_fixture("train", 0);
    idx_fixture("t10k", 1);
    struct ph_plugin p;
    idx_plugin(&p);
    // The fixture spans the whole byte range: pixel 0 of image 0 is 255, so 1.0 exactly.
    cr_assert_eq(idx_pixel(0, 0), 255);
    idx_check_split(&p, "train");
    idx_check_split(&p, "test");
    expect_open_error(&p, "validation", INVAR_ERR_INVALID, "validation", NULL);
    ph_close(&p);
}

Test(datasets, idx_bad_magic)
{
    uint8_t img[256], lab[64];
    size_t ni = idx_images(img, 0x00000802, IDX_N), nl = idx_labels(lab, IDX_N, idx_good_labels);
    fx_write("mnist/train-images-idx3-ubyte", img, ni);
    fx_write("mnist/train-labels-idx1-ubyte", lab, nl);
    struct ph_plugin p;
    idx_plugin(&p);
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "train-images-idx3-ubyte", "magic");
    ph_close(&p);
}

Test(datasets, idx_truncated_images_plain_and_gzip)
{
    uint8_t img[256], lab[64];
    size_t ni = idx_images(img, 0x00000803, IDX_N), nl = idx_labels(lab, IDX_N, idx_good_labels);
    cr_assert_eq(ni, 34);
    fx_write("mnist/train-images-idx3-ubyte", img, ni - 5);
    fx_write("mnist/train-labels-idx1-ubyte", lab, nl);
    fx_write_gz("mnist/t10k-images-idx3-ubyte.gz", img, 10); // ends inside the header
    fx_write("mnist/t10k-labels-idx1-ubyte", lab, nl);
    struct ph_plugin p;
    idx_plugin(&p);
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "train-images-idx3-ubyte",
                      "expected 34 bytes, file ends after 29");
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "t10k-images-idx3-ubyte.gz",
                      "file ends after 10");
    ph_close(&p);
}

Test(datasets, idx_extra_bytes_and_corrupt_gzip)
{
    uint8_t img[4096], lab[64];
    size_t ni = idx_images(img, 0x00000803, IDX_N), nl = idx_labels(lab, IDX_N, idx_good_labels);
    fx_write("mnist/train-images-idx3-ubyte", img, ni + 1);
    fx_write("mnist/train-labels-idx1-ubyte", lab, nl);
    // A gzip stream whose compressed body is overwritten: inflate or the CRC must object.
    fx_write_gz("mnist/t10k-images-idx3-ubyte.gz", img, ni);
    FILE *f = fopen(fx_path("mnist/t10k-images-idx3-ubyte.gz"), "r+b");
    cr_assert_not_null(f);
    fseek(f, 12, SEEK_SET);
    uint8_t junk[8] = {0xff, 0x00, 0xff, 0x13, 0x37, 0xff, 0xee, 0x01};
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    fx_write("mnist/t10k-labels-idx1-ubyte", lab, nl);
    struct ph_plugin p;
    idx_plugin(&p);
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "train-images-idx3-ubyte", "longer");
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "t10k-images-idx3-ubyte.gz", NULL);
    ph_close(&p);
}

Test(datasets, idx_label_count_mismatch_and_range)
{
    uint8_t img[256], lab[64];
    size_t ni = idx_images(img, 0x00000803, IDX_N);
    fx_write("mnist/train-images-idx3-ubyte", img, ni);
    fx_write("mnist/train-labels-idx1-ubyte", lab, idx_labels(lab, 2, idx_good_labels));
    fx_write("mnist/t10k-images-idx3-ubyte", img, ni);
    const uint8_t bad[IDX_N] = {1, 10, 2};
    fx_write("mnist/t10k-labels-idx1-ubyte", lab, idx_labels(lab, IDX_N, bad));
    struct ph_plugin p;
    idx_plugin(&p);
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "train-labels-idx1-ubyte",
                      "2 labels for 3 images");
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "t10k-labels-idx1-ubyte", "label 10");
    // With more classes allowed the same file is fine.
    ph_set(&p, "classes", "11");
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(&p, "test", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.num_classes, 11);
    p.desc->ops.dataset->close(h);
    ph_close(&p);
}

Test(datasets, idx_missing_file)
{
    uint8_t img[256];
    fx_write("mnist/train-images-idx3-ubyte", img, idx_images(img, 0x00000803, IDX_N));
    struct ph_plugin p;
    idx_plugin(&p);
    expect_open_error(&p, "train", INVAR_ERR_NOT_FOUND, "train-labels-idx1-ubyte", "mnist");
    expect_open_error(&p, "test", INVAR_ERR_NOT_FOUND, "t10k-images-idx3-ubyte", NULL);
    ph_close(&p);
}

Test(datasets, idx_real_fashion_mnist)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0)
        cr_skip_test("%s is not installed (Debian package dataset-fashion-mnist)", dir);
    // The first training label, looked up independently of the plugin: byte 8 of the file.
    char path[512];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
    gzFile f = gzopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t head[9];
    cr_assert_eq(gzread(f, head, 9), 9);
    gzclose(f);
    cr_assert_eq(head[8], 9, "Fashion-MNIST's first training image is an ankle boot (9)");

    struct ph_plugin p;
    ph_open(&p, "datasets", "idx"); // the default path is the Debian one
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(&p, "train", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, 60000);
    cr_assert_eq(info.shape[0], 1);
    cr_assert_eq(info.shape[1], 28);
    cr_assert_eq(info.shape[2], 28);
    cr_assert_eq(info.num_classes, 10);
    float img[28 * 28];
    int32_t label;
    cr_assert_eq(p.desc->ops.dataset->read(h, 0, img, &label, &err), INVAR_OK);
    cr_assert_eq(label, 9);
    float lo = 1, hi = 0;
    for (int i = 0; i < 28 * 28; i++)
        lo = fminf(lo, img[i]), hi = fmaxf(hi, img[i]);
    cr_assert_eq(lo, 0.0f);
    cr_assert(hi > 0.5f && hi <= 1.0f);
    cr_assert_eq(p.desc->ops.dataset->read(h, 59999, img, &label, &err), INVAR_OK);
    cr_assert(label >= 0 && label < 10);
    p.desc->ops.dataset->close(h);
    cr_assert_eq(ds_open(&p, "test", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, 10000);
    p.desc->ops.dataset->close(h);
    ph_close(&p);
}

/* ---- cifar -------------------------------------------------------------------------------- */

static uint8_t cifar_pixel(int rec, int p) { return (uint8_t)(rec * 31 + p * 7 + p / 1024); }

/* n records starting at global record number first; label bytes from the labels array. */
static void cifar_batch(const char *rel, int first, int n, int label_bytes, const uint8_t *labels)
{
    size_t rec = (size_t)label_bytes + 3072;
    uint8_t *buf = malloc(rec * (size_t)n + 1);
    for (int r = 0; r < n; r++) {
        uint8_t *o = buf + rec * (size_t)r;
        memcpy(o, labels + (size_t)(first + r) * (size_t)label_bytes, (size_t)label_bytes);
        for (int p = 0; p < 3072; p++)
            o[label_bytes + p] = cifar_pixel(first + r, p);
    }
    fx_write(rel, buf, rec * (size_t)n);
    free(buf);
}

static void cifar_expect(struct ph_plugin *p, const char *split, int n, int first,
                         const int32_t *labels, int classes)
{
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(p, split, &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, n);
    cr_assert_eq(info.shape[0], 3);
    cr_assert_eq(info.shape[1], 32);
    cr_assert_eq(info.shape[2], 32);
    cr_assert_eq(info.num_classes, classes);
    static float out[3072];
    for (int i = 0; i < n; i++) {
        int32_t label;
        cr_assert_eq(p->desc->ops.dataset->read(h, i, out, &label, &err), INVAR_OK);
        cr_assert_eq(label, labels[i], "%s record %d", split, i);
        for (int k = 0; k < 3072; k += 97)
            cr_assert_eq(out[k], (float)cifar_pixel(first + i, k) / 255.0f);
        cr_assert_eq(out[3071], (float)cifar_pixel(first + i, 3071) / 255.0f);
    }
    p->desc->ops.dataset->close(h);
}

Test(datasets, cifar10_batches_in_order)
{
    // Batch b holds b records (1..5), then a test batch of 2: 17 records in all.
    uint8_t labels[17];
    for (int i = 0; i < 17; i++)
        labels[i] = (uint8_t)((i * 3) % 10);
    int first = 0;
    for (int b = 1; b <= 5; b++) {
        char rel[64];
        snprintf(rel, sizeof rel, "c10/data_batch_%d.bin", b);
        cifar_batch(rel, first, b, 1, labels);
        first += b;
    }
    cifar_batch("c10/test_batch.bin", 15, 2, 1, labels);
    struct ph_plugin p;
    ph_open(&p, "datasets", "cifar");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/c10", tmp);
    ph_set(&p, "path", dir);
    int32_t want[17];
    for (int i = 0; i < 17; i++)
        want[i] = labels[i];
    cifar_expect(&p, "train", 15, 0, want, 10);
    cifar_expect(&p, "test", 2, 15, want + 15, 10);
    ph_close(&p);
}

Test(datasets, cifar100_fine_and_coarse)
{
    uint8_t labels[2 * 4] = {3, 99, 19, 0, 7, 42, 0, 5}; // (coarse, fine) pairs
    cifar_batch("c100/train.bin", 0, 3, 2, labels);
    cifar_batch("c100/test.bin", 3, 1, 2, labels);
    struct ph_plugin p;
    ph_open(&p, "datasets", "cifar");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/c100", tmp);
    ph_set(&p, "path", dir);
    ph_set(&p, "variant", "cifar100");
    cifar_expect(&p, "train", 3, 0, (int32_t[]){99, 0, 42}, 100);
    cifar_expect(&p, "test", 1, 3, (int32_t[]){5}, 100);
    ph_set(&p, "label", "coarse");
    cifar_expect(&p, "train", 3, 0, (int32_t[]){3, 19, 7}, 20);
    ph_close(&p);
}

Test(datasets, cifar_bad_sizes_labels_and_missing)
{
    uint8_t labels[4] = {1, 2, 3, 4};
    cifar_batch("c10/test_batch.bin", 0, 2, 1, labels);
    // Cut the file by one byte: no longer a multiple of 3073.
    FILE *f = fopen(fx_path("c10/test_batch.bin"), "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 2 * 3073 - 1), 0);
    fclose(f);
    cifar_batch("c10/data_batch_1.bin", 0, 1, 1, labels);
    cifar_batch("c10/data_batch_2.bin", 0, 1, 1, labels);
    struct ph_plugin p;
    ph_open(&p, "datasets", "cifar");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/c10", tmp);
    ph_set(&p, "path", dir);
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "test_batch.bin", "3073-byte records");
    expect_open_error(&p, "train", INVAR_ERR_NOT_FOUND, "data_batch_3.bin", NULL);
    // A CIFAR-10 label of 10, and a CIFAR-100 coarse label of 20.
    uint8_t bad[2] = {10, 20};
    cifar_batch("c10/test_batch.bin", 0, 1, 1, bad);
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "test_batch.bin", "label 10");
    cifar_batch("c10/test.bin", 0, 1, 1, labels); // a CIFAR-10 record under CIFAR-100's name
    ph_set(&p, "variant", "cifar100");
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "test.bin", "3074-byte records");
    ph_set(&p, "label", "coarse");
    cifar_batch("c10/test.bin", 0, 1, 2, (uint8_t[]){20, 50});
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "test.bin", "label 20");
    ph_close(&p);
}

/* ---- images ------------------------------------------------------------------------------- */

/* A PNG of (H, W, C) interleaved bytes, C = 1 (gray) or 3 (RGB). */
static void fx_png(const char *rel, int w, int h, int c, const uint8_t *hwc)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    cr_assert(png_image_write_to_file(&im, fx_path(rel), 0, hwc, 0, NULL), "%s", im.message);
}

static uint8_t img_value(int file, int y, int x, int ch) { return (uint8_t)(file * 50 + y * 20 + x * 7 + ch * 90); }

/* RGB image number `file`, 3 wide and 2 high. */
static void fx_rgb(const char *rel, int file)
{
    uint8_t px[2 * 3 * 3];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int ch = 0; ch < 3; ch++)
                px[(y * 3 + x) * 3 + ch] = img_value(file, y, x, ch);
    fx_png(rel, 3, 2, 3, px);
}

static void images_plugin(struct ph_plugin *p, const char *sub)
{
    ph_open(p, "datasets", "images");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, sub);
    ph_set(p, "path", dir);
}

Test(datasets, images_rgb_sorted_classes_and_files)
{
    // Labels follow sorted class names; files follow byte order ("10.png" before "2.png").
    fx_rgb("png/train/b_cat/2.png", 0);
    fx_rgb("png/train/b_cat/10.png", 1);
    fx_rgb("png/train/a_dog/x.png", 2);
    fx_write("png/train/a_dog/notes.txt", "not an image", 12); // ignored: not .png
    fx_rgb("png/test/b_cat/y.png", 3); // test lacks a_dog: b_cat must still be label 1
    struct ph_plugin p;
    images_plugin(&p, "png");
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(&p, "train", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, 3);
    cr_assert_eq(info.shape[0], 3);
    cr_assert_eq(info.shape[1], 2);
    cr_assert_eq(info.shape[2], 3);
    cr_assert_eq(info.num_classes, 2);
    const int want_file[3] = {2, 1, 0}, want_label[3] = {0, 1, 1};
    for (int i = 0; i < 3; i++) {
        float out[18];
        int32_t label;
        cr_assert_eq(p.desc->ops.dataset->read(h, i, out, &label, &err), INVAR_OK);
        cr_assert_eq(label, want_label[i], "sample %d", i);
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 2; y++)
                for (int x = 0; x < 3; x++)
                    cr_assert_eq(out[(ch * 2 + y) * 3 + x],
                                 (float)img_value(want_file[i], y, x, ch) / 255.0f,
                                 "sample %d (c %d, y %d, x %d)", i, ch, y, x);
    }
    p.desc->ops.dataset->close(h);
    cr_assert_eq(ds_open(&p, "test", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, 1);
    cr_assert_eq(info.num_classes, 2);
    float out[18];
    int32_t label;
    cr_assert_eq(p.desc->ops.dataset->read(h, 0, out, &label, &err), INVAR_OK);
    cr_assert_eq(label, 1);
    cr_assert_eq(out[5], (float)img_value(3, 1, 2, 0) / 255.0f);
    p.desc->ops.dataset->close(h);
    ph_close(&p);
}

Test(datasets, images_gray_and_channel_conversion)
{
    uint8_t g[4] = {0, 17, 200, 255};
    fx_png("gray/k0/a.png", 2, 2, 1, g);
    struct ph_plugin p;
    images_plugin(&p, "gray");
    ph_set(&p, "split_dirs", "false");
    ph_set(&p, "channels", "1");
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    float out[12];
    int32_t label;
    cr_assert_eq(ds_open(&p, "test", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.shape[0], 1);
    cr_assert_eq(p.desc->ops.dataset->read(h, 0, out, &label, &err), INVAR_OK);
    cr_assert_eq(label, 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(out[i], (float)g[i] / 255.0f);
    p.desc->ops.dataset->close(h);
    // Gray read as RGB: the value repeated in every channel plane.
    ph_set(&p, "channels", "3");
    cr_assert_eq(ds_open(&p, "train", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.shape[0], 3);
    cr_assert_eq(p.desc->ops.dataset->read(h, 0, out, &label, &err), INVAR_OK);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 4; i++)
            cr_assert_eq(out[ch * 4 + i], (float)g[i] / 255.0f);
    p.desc->ops.dataset->close(h);
    ph_set(&p, "channels", "2");
    expect_open_error(&p, "train", INVAR_ERR_CONFIG, "channels", NULL);
    ph_close(&p);
}

Test(datasets, images_wrong_size_bad_png_and_missing)
{
    fx_rgb("sz/train/a/1.png", 0);
    uint8_t big[4 * 4 * 3] = {0};
    fx_png("sz/train/b/2.png", 4, 4, 3, big);
    struct ph_plugin p;
    images_plugin(&p, "sz");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "sz/train/b/2.png", "4x4");
    // With size given, the first image is checked too.
    ph_set(&p, "size", "4");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "sz/train/a/1.png", "size requires 4x4");
    ph_close(&p);

    fx_write("bad/train/a/broken.png", "\x89PNG\r\n\x1a\nthis is no chunk", 24);
    images_plugin(&p, "bad");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "bad/train/a/broken.png", NULL);
    expect_open_error(&p, "test", INVAR_ERR_NOT_FOUND, "bad/test", NULL);
    ph_close(&p);

    fx_rgb("cls/train/a/1.png", 0);
    fx_rgb("cls/test/zebra/1.png", 0);
    images_plugin(&p, "cls");
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "cls/test/zebra", "training split");
    ph_close(&p);

    // A PNG cut short after its header: libpng must report it, not crash.
    fx_rgb("cut/train/a/1.png", 0);
    FILE *f = fopen(fx_path("cut/train/a/1.png"), "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 40), 0);
    fclose(f);
    images_plugin(&p, "cut");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "cut/train/a/1.png", NULL);
    ph_close(&p);
}
