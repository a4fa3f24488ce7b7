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
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
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

static uint8_t idx_pixel(int i, int p)
{
    return (uint8_t)(i * 97 + p * 41 + (p == 0 ? 255 : 0));
}

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
    // A gzip stream itself cut short (no trailer): zlib reports it, we name the file.
    fx_write_gz("mnist/t10k-images-idx3-ubyte.gz", img, ni);
    FILE *f = fopen(fx_path("mnist/t10k-images-idx3-ubyte.gz"), "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long gz_size = ftell(f);
    cr_assert_eq(ftruncate(fileno(f), gz_size - 6), 0); // inside the CRC/size trailer
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "t10k-images-idx3-ubyte.gz", "cut short");
    cr_assert_eq(ftruncate(fileno(f), gz_size / 2), 0); // inside the compressed data
    fclose(f);
    expect_open_error(&p, "test", INVAR_ERR_FORMAT, "t10k-images-idx3-ubyte.gz", "cut short");
    ph_close(&p);
}

Test(datasets, idx_extra_bytes_and_corrupt_gzip)
{
    uint8_t img[4096] = {0}, lab[64];
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

static uint8_t cifar_pixel(int rec, int p)
{
    return (uint8_t)(rec * 31 + p * 7 + p / 1024);
}

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

static uint8_t img_value(int file, int y, int x, int ch)
{
    return (uint8_t)(file * 50 + y * 20 + x * 7 + ch * 90);
}

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

    // RGBA: an opaque pixel keeps its colour, a transparent one becomes black.
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 2, im.height = 1, im.format = PNG_FORMAT_RGBA;
    const uint8_t rgba[8] = {10, 20, 30, 255, 200, 210, 220, 0};
    cr_assert(png_image_write_to_file(&im, fx_path("alpha/k/a.png"), 0, rgba, 0, NULL));
    images_plugin(&p, "alpha");
    ph_set(&p, "split_dirs", "false");
    cr_assert_eq(ds_open(&p, "train", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(p.desc->ops.dataset->read(h, 0, out, &label, &err), INVAR_OK);
    const float want[6] = {10 / 255.0f, 0, 20 / 255.0f, 0, 30 / 255.0f, 0}; // (3, 1, 2)
    for (int i = 0; i < 6; i++)
        cr_assert_eq(out[i], want[i], "value %d: %g", i, out[i]);
    p.desc->ops.dataset->close(h);
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

/* ---- sequences ---------------------------------------------------------------------------- */

/* A version-1 .npy file: magic, header dict padded with spaces to a multiple of 64, payload. */
static void fx_npy(const char *rel, const char *dict, const void *data, size_t n)
{
    size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64;
    uint8_t *buf = malloc(total + n);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)((total - 10) & 0xff), buf[9] = (uint8_t)((total - 10) >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, ' ', total - 10 - dl - 1);
    buf[total - 1] = '\n';
    if (n)
        memcpy(buf + total, data, n);
    fx_write(rel, buf, total + n);
    free(buf);
}

#define SQ_N 5
#define SQ_C 2
#define SQ_T 3

static float sq_value(int i, int c, int t)
{
    return (float)(i * 100 + c * 10 + t) * 0.5f - 7.25f;
}

static const int64_t sq_labels[SQ_N] = {2, 0, 1, 2, 0};

/* Samples as float32 or float64 and labels as int64 or int32. */
static void sq_fixture(const char *xrel, const char *yrel, int f8, int i4)
{
    double xd[SQ_N * SQ_C * SQ_T];
    float xf[SQ_N * SQ_C * SQ_T];
    for (int i = 0; i < SQ_N; i++)
        for (int c = 0; c < SQ_C; c++)
            for (int t = 0; t < SQ_T; t++)
                xd[(i * SQ_C + c) * SQ_T + t] = xf[(i * SQ_C + c) * SQ_T + t] = sq_value(i, c, t);
    char dict[128];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d, %d), }",
             f8 ? "<f8" : "<f4", SQ_N, SQ_C, SQ_T);
    fx_npy(xrel, dict, f8 ? (void *)xd : (void *)xf, f8 ? sizeof xd : sizeof xf);
    int32_t y4[SQ_N];
    for (int i = 0; i < SQ_N; i++)
        y4[i] = (int32_t)sq_labels[i];
    // Keys in another order and double quotes: still a valid Python dict.
    snprintf(dict, sizeof dict, "{\"shape\": (%d,), \"fortran_order\": False, \"descr\": \"%s\"}",
             SQ_N, i4 ? "<i4" : "<i8");
    fx_npy(yrel, dict, i4 ? (void *)y4 : (void *)sq_labels, i4 ? sizeof y4 : sizeof sq_labels);
}

static void sq_plugin(struct ph_plugin *p, const char *x, const char *y)
{
    ph_open(p, "datasets", "sequences");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, x);
    ph_set(p, "path", path);
    snprintf(path, sizeof path, "%s/%s", tmp, y);
    ph_set(p, "labels", path);
}

/* Reads every sample of a split and checks it against fixture samples want[0..n). */
static void sq_expect(struct ph_plugin *p, const char *split, int n, const int *want, int classes)
{
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(p, split, &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.count, n);
    cr_assert_eq(info.shape[0], SQ_C);
    cr_assert_eq(info.shape[1], 1);
    cr_assert_eq(info.shape[2], SQ_T);
    cr_assert_eq(info.is_sequence, 1);
    cr_assert_eq(info.num_classes, classes);
    for (int k = 0; k < n; k++) {
        float out[SQ_C * SQ_T];
        int32_t label;
        cr_assert_eq(p->desc->ops.dataset->read(h, k, out, &label, &err), INVAR_OK);
        cr_assert_eq(label, sq_labels[want[k]]);
        for (int c = 0; c < SQ_C; c++)
            for (int t = 0; t < SQ_T; t++)
                cr_assert_eq(out[c * SQ_T + t], sq_value(want[k], c, t));
    }
    p->desc->ops.dataset->close(h);
}

Test(datasets, sequences_fraction_split_f4_i8)
{
    sq_fixture("sq/x.npy", "sq/y.npy", 0, 0);
    struct ph_plugin p;
    sq_plugin(&p, "sq/x.npy", "sq/y.npy");
    // f = 0.4 over 5 samples: floor((i+1)*0.4) steps up at i = 2 and i = 4.
    ph_set(&p, "test_fraction", "0.4");
    sq_expect(&p, "train", 3, (int[]){0, 1, 3}, 3);
    sq_expect(&p, "test", 2, (int[]){2, 4}, 3);
    ph_set(&p, "classes", "7");
    sq_expect(&p, "test", 2, (int[]){2, 4}, 7);
    ph_set(&p, "classes", "2"); // sample 0 has label 2
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "sq/y.npy",
                      "label 2 of sample 0 is not below classes (2)");
    ph_close(&p);
}

Test(datasets, sequences_separate_files_f8_i4)
{
    sq_fixture("sq/x.npy", "sq/y.npy", 1, 1);
    sq_fixture("sq/tx.npy", "sq/ty.npy", 0, 1);
    struct ph_plugin p;
    sq_plugin(&p, "sq/x.npy", "sq/y.npy");
    char path[512];
    snprintf(path, sizeof path, "%s/sq/tx.npy", tmp);
    ph_set(&p, "test_path", path);
    snprintf(path, sizeof path, "%s/sq/ty.npy", tmp);
    ph_set(&p, "test_labels", path);
    const int all[SQ_N] = {0, 1, 2, 3, 4};
    sq_expect(&p, "train", SQ_N, all, 3);
    sq_expect(&p, "test", SQ_N, all, 3);
    // Train's class count covers a class (5) that only the test labels hold, and vice versa.
    const int64_t y5[SQ_N] = {2, 0, 1, 5, 0}, y1[SQ_N] = {0, 1, 0, 1, 0};
    fx_npy("sq/ty.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", y5, sizeof y5);
    void *h;
    struct invar_dataset_info info;
    struct invar_error err;
    cr_assert_eq(ds_open(&p, "train", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.num_classes, 6);
    p.desc->ops.dataset->close(h);
    fx_npy("sq/ty.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", y1, sizeof y1);
    cr_assert_eq(ds_open(&p, "test", &h, &info, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(info.num_classes, 3);
    p.desc->ops.dataset->close(h);
    ph_set(&p, "test_labels", "");
    expect_open_error(&p, "train", INVAR_ERR_CONFIG, "test_labels", NULL);
    ph_close(&p);
}

Test(datasets, sequences_bad_files)
{
    sq_fixture("sq/x.npy", "sq/y.npy", 0, 0);
    float x[SQ_N * SQ_C * SQ_T] = {0};
    int64_t y[SQ_N] = {0, 1, 2, 3, -1};
    struct ph_plugin p;
    const struct {
        const char *dict; // NULL: the good fixture
        size_t bytes;
        const char *ydict;
        const char *piece;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (5, 2, 3), }", sizeof x, NULL,
         "fortran_order is True"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 3), ", sizeof x, NULL,
         "bad .npy header"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, x), }", sizeof x, NULL,
         "non-integer"},
        {"{'descr': '<f4', 'fortran_order': False}", sizeof x, NULL, "required"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (5, 2, 3), }", sizeof x, NULL,
         "dtype '>f4'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 3), 'x': 1}", sizeof x, NULL,
         "key 'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 3), }", sizeof x - 4, NULL,
         "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 6), }", sizeof x, NULL,
         "(N, C, T)"},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (5, 2, 3), }", sizeof x, NULL,
         "float array"},
        {NULL, 0, "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", "label -1"},
        {NULL, 0, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", "trailing bytes"},
        {NULL, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", "integer array"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *xf = cases[k].dict ? "bad/x.npy" : "sq/x.npy";
        const char *yf = cases[k].ydict ? "bad/y.npy" : "sq/y.npy";
        if (cases[k].dict)
            fx_npy(xf, cases[k].dict, x, cases[k].bytes);
        if (cases[k].ydict)
            fx_npy(yf, cases[k].ydict, y, sizeof y);
        sq_plugin(&p, xf, yf);
        expect_open_error(&p, "train", INVAR_ERR_FORMAT, cases[k].dict ? xf : yf, cases[k].piece);
        ph_close(&p);
    }
    // Not a .npy at all, a NaN sample, and a missing labels file.
    static const char zip[] = "PK\x03\x04 zip, not npy";
    fx_write("bad/x.npy", zip, sizeof zip - 1);
    sq_plugin(&p, "bad/x.npy", "sq/y.npy");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "bad/x.npy", "magic");
    ph_close(&p);
    x[7] = NAN; // sample 1, channel 0, step 1
    fx_npy("bad/x.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 3), }", x,
           sizeof x);
    sq_plugin(&p, "bad/x.npy", "sq/y.npy");
    ph_set(&p, "test_fraction", "0");
    expect_open_error(&p, "train", INVAR_ERR_FORMAT, "sample 1", "channel 0, step 1");
    ph_close(&p);
    sq_plugin(&p, "sq/x.npy", "sq/missing.npy");
    expect_open_error(&p, "test", INVAR_ERR_NOT_FOUND, "sq/missing.npy", NULL);
    ph_close(&p);
}

/* ---- synthetic ---------------------------------------------------------------------------- */

static void syn_open(struct ph_plugin *p, const char *split, void **h,
                     struct invar_dataset_info *info)
{
    struct invar_error err;
    cr_assert_eq(ds_open(p, split, h, info, &err), INVAR_OK, "%s", err.msg);
}

/* Orientation in [0, pi) of the intensity's principal axis, from second moments. */
static double principal_angle(const float *im, int n)
{
    double m = 0, mx = 0, my = 0;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++)
            m += im[y * n + x], mx += x * im[y * n + x], my += y * im[y * n + x];
    mx /= m, my /= m;
    double u20 = 0, u02 = 0, u11 = 0;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            double w = im[y * n + x], dx = x - mx, dy = y - my;
            u20 += w * dx * dx, u02 += w * dy * dy, u11 += w * dx * dy;
        }
    double a = 0.5 * atan2(2 * u11, u20 - u02);
    return a < 0 ? a + M_PI : a;
}

Test(datasets, synthetic_images_bars_follow_their_class)
{
    struct ph_plugin p;
    ph_open(&p, "datasets", "synthetic");
    ph_set(&p, "noise", "0");
    ph_set(&p, "train_count", "64");
    void *h;
    struct invar_dataset_info info;
    syn_open(&p, "train", &h, &info);
    cr_assert_eq(info.count, 64);
    cr_assert_eq(info.shape[0], 1);
    cr_assert_eq(info.shape[1], 28);
    cr_assert_eq(info.shape[2], 28);
    cr_assert_eq(info.num_classes, 4);
    cr_assert_eq(info.is_sequence, 0);
    float im[28 * 28];
    struct invar_error err;
    for (int i = 0; i < 64; i++) {
        int32_t label;
        cr_assert_eq(p.desc->ops.dataset->read(h, i, im, &label, &err), INVAR_OK);
        cr_assert_eq(label, i % 4);
        float hi = 0;
        for (int k = 0; k < 28 * 28; k++) {
            cr_assert(im[k] >= 0.0f && im[k] <= 1.0f);
            hi = fmaxf(hi, im[k]);
        }
        cr_assert(hi >= 0.6f, "sample %d has no bar (max %g)", i, hi);
        // Class k is a bar at k * 45 degrees, jittered by at most 11.25 degrees.
        double want = label * M_PI / 4, got = principal_angle(im, 28);
        double diff = fabs(got - want);
        diff = fmin(diff, M_PI - diff);
        cr_assert(diff < M_PI / 16 + 0.08, "sample %d: angle %.3f, class angle %.3f", i, got, want);
    }
    p.desc->ops.dataset->close(h);
    ph_close(&p);
}

/* Dominant whole number of cycles in x (T) among 1..kmax, by a direct DFT. */
static int dominant_cycles(const float *x, int t_len, int kmax)
{
    int best = 0;
    double best_p = -1;
    for (int k = 1; k <= kmax; k++) {
        double re = 0, im = 0;
        for (int t = 0; t < t_len; t++)
            re += x[t] * cos(2 * M_PI * k * t / t_len), im -= x[t] * sin(2 * M_PI * k * t / t_len);
        if (re * re + im * im > best_p)
            best_p = re * re + im * im, best = k;
    }
    return best;
}

Test(datasets, synthetic_sequences_frequency_follows_class)
{
    struct ph_plugin p;
    ph_open(&p, "datasets", "synthetic");
    ph_set(&p, "kind", "sequences");
    ph_set(&p, "channels", "3");
    ph_set(&p, "classes", "5");
    ph_set(&p, "length", "64");
    ph_set(&p, "test_count", "40");
    void *h;
    struct invar_dataset_info info;
    syn_open(&p, "test", &h, &info);
    cr_assert_eq(info.count, 40);
    cr_assert_eq(info.shape[0], 3);
    cr_assert_eq(info.shape[1], 1);
    cr_assert_eq(info.shape[2], 64);
    cr_assert_eq(info.is_sequence, 1);
    cr_assert_eq(info.num_classes, 5);
    float x[3 * 64];
    struct invar_error err;
    for (int i = 0; i < 40; i++) {
        int32_t label;
        cr_assert_eq(p.desc->ops.dataset->read(h, i, x, &label, &err), INVAR_OK);
        cr_assert_eq(label, i % 5);
        for (int ch = 0; ch < 3; ch++)
            cr_assert_eq(dominant_cycles(x + ch * 64, 64, 10), label + 1, "sample %d channel %d", i,
                         ch);
    }
    p.desc->ops.dataset->close(h);
    ph_set(&p, "length", "23"); // 5 classes need at least 24 steps
    expect_open_error(&p, "train", INVAR_ERR_CONFIG, "length 23", NULL);
    ph_set(&p, "kind", "images");
    ph_set(&p, "channels", "2");
    expect_open_error(&p, "train", INVAR_ERR_CONFIG, "channels", NULL);
    ph_close(&p);
}

struct syn_job {
    const struct ph_plugin *p;
    void *h;
    int first;
    float *out; // (64, 3, 16, 16)
    int ok;
};

static void *syn_worker(void *arg)
{
    struct syn_job *j = arg;
    struct invar_error err;
    j->ok = 1;
    // Each worker reads every sample, starting at a different one, so reads overlap.
    for (int k = 0; k < 64; k++) {
        int i = (j->first + k) % 64;
        int32_t label;
        if (j->p->desc->ops.dataset->read(j->h, i, j->out + i * 768, &label, &err) != INVAR_OK ||
            label != i % 4)
            j->ok = 0;
    }
    return NULL;
}

Test(datasets, synthetic_deterministic_and_thread_safe)
{
    struct ph_plugin p;
    ph_open(&p, "datasets", "synthetic");
    ph_set(&p, "channels", "3");
    ph_set(&p, "size", "16");
    ph_set(&p, "train_count", "64");
    ph_set(&p, "test_count", "64");
    ph_set(&p, "seed", "7");
    void *h, *h2, *ht;
    struct invar_dataset_info info;
    syn_open(&p, "train", &h, &info);
    syn_open(&p, "train", &h2, &info);
    syn_open(&p, "test", &ht, &info);
    static float serial[64 * 768], other[64 * 768], test[768];
    struct invar_error err;
    int32_t label;
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(p.desc->ops.dataset->read(h, i, serial + i * 768, &label, &err), INVAR_OK);
        cr_assert_eq(p.desc->ops.dataset->read(h2, i, other + i * 768, &label, &err), INVAR_OK);
    }
    cr_assert_eq(memcmp(serial, other, sizeof serial), 0, "two handles disagree");
    cr_assert_neq(memcmp(serial, serial + 4 * 768, 768 * sizeof(float)), 0,
                  "samples 0 and 4 (same class) are identical");
    cr_assert_eq(p.desc->ops.dataset->read(ht, 0, test, &label, &err), INVAR_OK);
    cr_assert_neq(memcmp(serial, test, sizeof test), 0, "train and test share sample 0");
    // RGB: a tinted bar, so the three planes differ.
    cr_assert_neq(memcmp(serial, serial + 256, 256 * sizeof(float)), 0);

    static float par[4][64 * 768];
    pthread_t th[4];
    struct syn_job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct syn_job){&p, h, t * 16, par[t], 0};
        cr_assert_eq(pthread_create(&th[t], NULL, syn_worker, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        cr_assert(jobs[t].ok);
        cr_assert_eq(memcmp(par[t], serial, sizeof serial), 0, "thread %d differs", t);
    }
    // Another seed, other samples.
    ph_set(&p, "seed", "8");
    void *h8;
    syn_open(&p, "train", &h8, &info);
    cr_assert_eq(p.desc->ops.dataset->read(h8, 0, other, &label, &err), INVAR_OK);
    cr_assert_neq(memcmp(serial, other, 768 * sizeof(float)), 0);
    cr_assert_eq(p.desc->ops.dataset->read(h8, 64, other, &label, &err), INVAR_ERR_INVALID);
    p.desc->ops.dataset->close(h8);
    p.desc->ops.dataset->close(h);
    p.desc->ops.dataset->close(h2);
    p.desc->ops.dataset->close(ht);
    ph_close(&p);
}
