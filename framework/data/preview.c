/* invar_preview_write: a PNG grid of original samples and their augmented views (libpng). */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/data.h"

static unsigned char to_byte(float v)
{
    if (!(v > 0.0f)) /* NaN too */
        return 0;
    if (v >= 1.0f)
        return 255;
    return (unsigned char)(v * 255.0f + 0.5f);
}

/* Copies one (C, H, W) image into the RGB canvas at (y0, x0); one channel is gray. */
static void blit(unsigned char *canvas, int64_t stride, int64_t y0, int64_t x0, const float *img,
                 const int64_t shape[3])
{
    int64_t c = shape[0], h = shape[1], w = shape[2], hw = h * w;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            unsigned char *px = canvas + (y0 + y) * stride + (x0 + x) * 3;
            for (int k = 0; k < 3; k++)
                px[k] = to_byte(img[(c >= 3 ? k : 0) * hw + y * w + x]);
        }
}

static enum invar_status png_save(const char *path, const unsigned char *rgb, int64_t width,
                                  int64_t height, struct invar_error *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return invar_error_set(err, INVAR_ERR_IO, "%s: %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    enum invar_status st = INVAR_OK;
    if (!png || !info) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        st = invar_error_set(err, INVAR_ERR_IO, "%s: writing the PNG failed", path);
        goto done;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(rgb + y * width * 3));
    png_write_end(png, NULL);
done:
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (fclose(f) != 0 && st == INVAR_OK)
        st = invar_error_set(err, INVAR_ERR_IO, "%s: %s", path, strerror(errno));
    return st;
}

enum invar_status invar_preview_write(const char *path, const struct invar_dataset *d,
                                      const struct invar_view *views, int n_views, uint64_t seed,
                                      int64_t n, struct invar_error *err)
{
    if (n_views < 0 || n_views > INVAR_MAX_VIEWS)
        return invar_error_set(err, INVAR_ERR_INVALID, "preview: %d views", n_views);
    if (n > invar_dataset_count(d))
        n = invar_dataset_count(d);
    if (n < 1)
        return invar_error_set(err, INVAR_ERR_INVALID, "preview: no samples to show");
    const int64_t *in = invar_dataset_shape(d);
    int64_t cell_h = in[1], cell_w = in[2], scratch_n = 0, out_n = 0;
    int64_t shapes[INVAR_MAX_VIEWS][3];
    for (int v = 0; v < n_views; v++) {
        invar_view_out_shape(&views[v], in, shapes[v]);
        cell_h = shapes[v][1] > cell_h ? shapes[v][1] : cell_h;
        cell_w = shapes[v][2] > cell_w ? shapes[v][2] : cell_w;
        int64_t s = invar_view_scratch_numel(&views[v], in);
        int64_t o = shapes[v][0] * shapes[v][1] * shapes[v][2];
        scratch_n = s > scratch_n ? s : scratch_n;
        out_n = o > out_n ? o : out_n;
    }
    int64_t cols = 1 + n_views;
    int64_t width = cols * cell_w + (cols + 1), height = n * cell_h + (n + 1);
    if (width > 65535 || height > 65535)
        return invar_error_set(err, INVAR_ERR_INVALID, "preview: %lld x %lld pixels is too large",
                               (long long)width, (long long)height);
    unsigned char *rgb = malloc((size_t)(width * height * 3));
    float *out = malloc((size_t)(out_n > 0 ? out_n : 1) * sizeof *out);
    float *scratch = malloc((size_t)(scratch_n > 0 ? scratch_n : 1) * sizeof *scratch);
    enum invar_status st = INVAR_OK;
    if (!rgb || !out || !scratch) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "preview: out of memory");
        goto done;
    }
    memset(rgb, 255, (size_t)(width * height * 3)); /* the gaps stay white */
    for (int64_t i = 0; i < n; i++) {
        int64_t y0 = 1 + i * (cell_h + 1);
        const float *x = invar_dataset_sample(d, i);
        blit(rgb, width * 3, y0, 1, x, in);
        for (int v = 0; v < n_views; v++) {
            invar_view_apply(&views[v], seed, 0, i, v, x, in, out, scratch, scratch_n);
            blit(rgb, width * 3, y0, 1 + (1 + v) * (cell_w + 1), out, shapes[v]);
        }
    }
    st = png_save(path, rgb, width, height, err);
done:
    free(rgb);
    free(out);
    free(scratch);
    return st;
}
