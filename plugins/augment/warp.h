/* warp.h — pixel helpers shared by the augmentation plugins (internal, never installed).
 *
 *     // turn every channel of in by t about its centre into out, bilinear, zeros outside
 *     double a[4] = {cos(t), -sin(t), sin(t), cos(t)};  // output offset -> input offset
 *     double m[6];
 *     warp_affine_about_centre(m, a, in->h, in->w, 0.0, 0.0);
 *     warp_affine(out, in, m, WARP_FILL_CONSTANT, 0.0f);
 *
 * Conventions: pixel centres sit on integer coordinates (x to the right, y down), so the
 * centre of an H x W image is ((W-1)/2, (H-1)/2). Every warp maps an OUTPUT pixel to the
 * INPUT position it samples (inverse mapping). Coordinates are computed in double and snapped
 * to the nearest integer when within WARP_SNAP of one, so an identity transform samples exact
 * pixels and gives the input back bit for bit. All functions are pure and allocation-free.
 */
#ifndef INVAR_PLUGINS_AUGMENT_WARP_H
#define INVAR_PLUGINS_AUGMENT_WARP_H

#include <math.h>
#include <string.h>

#include <invar/plugin.h>

/* How a sample outside the image is filled; the order matches WARP_FILL_ALLOWED. */
enum warp_fill {
    WARP_FILL_CONSTANT = 0, /* the fill value */
    WARP_FILL_EDGE,         /* the nearest edge pixel */
    WARP_FILL_REFLECT,      /* mirrored about the edge pixel: -1 -> 1 (numpy "reflect") */
    WARP_FILL_WRAP,         /* periodic */
};
#define WARP_FILL_ALLOWED "constant|edge|reflect|wrap"
#define WARP_SNAP 1e-6
#define WARP_PI 3.14159265358979323846
#define WARP_FAR 1e7 /* coordinates are clamped here: far outside, still a safe int64 */

static inline float warp_clamp01(float v)
{
    return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

static inline double warp_snap(double v)
{
    double r = nearbyint(v);
    return fabs(v - r) < WARP_SNAP ? r : v;
}

/* Maps an integer index into [0, n) by the fill mode; -1 for WARP_FILL_CONSTANT outside.
 * Reflection is 1-Lipschitz, which the in-place blur below relies on. */
static inline int64_t warp_index(int64_t i, int64_t n, enum warp_fill mode)
{
    if (i >= 0 && i < n)
        return i;
    switch (mode) {
    case WARP_FILL_CONSTANT:
        return -1;
    case WARP_FILL_EDGE:
        return i < 0 ? 0 : n - 1;
    case WARP_FILL_REFLECT: {
        if (n == 1)
            return 0;
        int64_t period = 2 * (n - 1);
        int64_t k = i % period;
        if (k < 0)
            k += period;
        return k < n ? k : period - k;
    }
    case WARP_FILL_WRAP: {
        int64_t k = i % n;
        return k < 0 ? k + n : k;
    }
    }
    return -1;
}

static inline float warp_pixel(const float *plane, int64_t h, int64_t w, int64_t y, int64_t x,
                               enum warp_fill mode, float fill)
{
    int64_t yy = warp_index(y, h, mode), xx = warp_index(x, w, mode);
    return (yy < 0 || xx < 0) ? fill : plane[yy * w + xx];
}

/* Bilinear sample of one (H, W) plane at (y, x). Integer coordinates read one pixel exactly. */
static inline float warp_bilinear(const float *plane, int64_t h, int64_t w, double y, double x,
                                  enum warp_fill mode, float fill)
{
    double fy0 = floor(y), fx0 = floor(x);
    int64_t y0 = (int64_t)fy0, x0 = (int64_t)fx0;
    float ty = (float)(y - fy0), tx = (float)(x - fx0);
    if (y0 >= 0 && x0 >= 0 && y0 + 1 < h && x0 + 1 < w) { /* the common interior case */
        const float *p = plane + y0 * w + x0;
        float top = p[0] + tx * (p[1] - p[0]);
        float bot = p[w] + tx * (p[w + 1] - p[w]);
        if (ty == 0.0f)
            return tx == 0.0f ? p[0] : top;
        return top + ty * (bot - top);
    }
    float a = warp_pixel(plane, h, w, y0, x0, mode, fill);
    float b = tx == 0.0f ? a : warp_pixel(plane, h, w, y0, x0 + 1, mode, fill);
    float top = tx == 0.0f ? a : a + tx * (b - a);
    if (ty == 0.0f)
        return top;
    float c = warp_pixel(plane, h, w, y0 + 1, x0, mode, fill);
    float d = tx == 0.0f ? c : warp_pixel(plane, h, w, y0 + 1, x0 + 1, mode, fill);
    float bot = tx == 0.0f ? c : c + tx * (d - c);
    return top + ty * (bot - top);
}

/* A 2x3 affine map m from output pixel (x, y) to input position:
 *     xs = m[0] x + m[1] y + m[2],   ys = m[3] x + m[4] y + m[5]
 * built from a 2x2 matrix a (output offsets from the centre -> input offsets) and an output
 * translation (tx, ty) in pixels: input = a (output - centre - t) + centre. */
static inline void warp_affine_about_centre(double m[6], const double a[4], int64_t h,
                                            int64_t w, double tx, double ty)
{
    double cx = 0.5 * (double)(w - 1), cy = 0.5 * (double)(h - 1);
    double ox = cx + tx, oy = cy + ty;
    m[0] = a[0], m[1] = a[1], m[2] = cx - a[0] * ox - a[1] * oy;
    m[3] = a[2], m[4] = a[3], m[5] = cy - a[2] * ox - a[3] * oy;
}

/* out (C, H, W) <- in (C, H, W) sampled through the affine map m. Sets out's shape. */
static inline void warp_affine(struct invar_image *out, const struct invar_image *in,
                               const double m[6], enum warp_fill mode, float fill)
{
    int64_t c = in->c, h = in->h, w = in->w, hw = h * w;
    out->c = c, out->h = h, out->w = w;
    for (int64_t y = 0; y < h; y++) {
        double bx = m[1] * (double)y + m[2], by = m[4] * (double)y + m[5];
        for (int64_t x = 0; x < w; x++) {
            double xs = warp_snap(bx + m[0] * (double)x);
            double ys = warp_snap(by + m[3] * (double)x);
            double fx = floor(xs), fy = floor(ys);
            if (fx >= 0.0 && fy >= 0.0 && fx < (double)(w - 1) && fy < (double)(h - 1)) {
                /* Interior: one set of weights for every channel. */
                const float tx = (float)(xs - fx), ty = (float)(ys - fy);
                const float *p = in->data + (int64_t)fy * w + (int64_t)fx;
                for (int64_t k = 0; k < c; k++, p += hw) {
                    float top = p[0] + tx * (p[1] - p[0]);
                    float bot = p[w] + tx * (p[w + 1] - p[w]);
                    out->data[k * hw + y * w + x] = top + ty * (bot - top);
                }
            } else {
                for (int64_t k = 0; k < c; k++)
                    out->data[k * hw + y * w + x] =
                        warp_bilinear(in->data + k * hw, h, w, ys, xs, mode, fill);
            }
        }
    }
}

/* out (C, H, W) <- in sampled through a homography g (row-major 3x3, output -> input). */
static inline void warp_homography(struct invar_image *out, const struct invar_image *in,
                                   const double g[9], enum warp_fill mode, float fill)
{
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = h, out->w = w;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double den = g[6] * (double)x + g[7] * (double)y + g[8];
            double xs = (g[0] * (double)x + g[1] * (double)y + g[2]) / den;
            double ys = (g[3] * (double)x + g[4] * (double)y + g[5]) / den;
            /* Pixels on the homography's line at infinity (den = 0) read from far outside,
             * i.e. the fill; far coordinates are clamped to stay safe integers. */
            if (!isfinite(xs) || !isfinite(ys))
                xs = ys = -WARP_FAR;
            xs = warp_snap(xs < -WARP_FAR ? -WARP_FAR : (xs > WARP_FAR ? WARP_FAR : xs));
            ys = warp_snap(ys < -WARP_FAR ? -WARP_FAR : (ys > WARP_FAR ? WARP_FAR : ys));
            for (int64_t k = 0; k < c; k++)
                out->data[(k * h + y) * w + x] =
                    warp_bilinear(in->data + k * h * w, h, w, ys, xs, mode, fill);
        }
}

/* One axis of a resize: output index i reads lo[i] and hi[i] with weight t[i] on hi. */
#define WARP_RESIZE_BLOCK 256
static inline void warp_resize_axis(int64_t *lo, int64_t *hi, float *t, int64_t first,
                                    int64_t count, double start, double step, double len)
{
    double vmin = start, vmax = start + len - 1.0;
    if (vmax < vmin)
        vmax = vmin;
    for (int64_t i = 0; i < count; i++) {
        double v = warp_snap(start + ((double)(first + i) + 0.5) * step - 0.5);
        v = v < vmin ? vmin : (v > vmax ? vmax : v);
        double f = floor(v);
        lo[i] = (int64_t)f;
        t[i] = (float)(v - f);
        hi[i] = t[i] > 0.0f ? lo[i] + 1 : lo[i]; /* v < vmax here, so lo + 1 is in the box */
    }
}

/* out (C, OH, OW) <- the box (top, left, bh, bw) of in, resized bilinearly with half-pixel
 * centres (align_corners = false, as torchvision): samples outside the box are clamped to its
 * edge, so nothing outside the crop leaks in. A box of the output's size copies exactly.
 * The box is whole pixels inside the image. Column weights are computed once per block of columns
 * and row weights once per row: this is the hot path of the default two-view stack. */
static inline void warp_resize_box(struct invar_image *out, int64_t oh, int64_t ow,
                                   const struct invar_image *in, double top, double left,
                                   double bh, double bw)
{
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = oh, out->w = ow;
    double sy = bh / (double)oh, sx = bw / (double)ow;
    int64_t x0[WARP_RESIZE_BLOCK], x1[WARP_RESIZE_BLOCK];
    float tx[WARP_RESIZE_BLOCK];
    for (int64_t xb = 0; xb < ow; xb += WARP_RESIZE_BLOCK) {
        int64_t nb = ow - xb < WARP_RESIZE_BLOCK ? ow - xb : WARP_RESIZE_BLOCK;
        warp_resize_axis(x0, x1, tx, xb, nb, left, sx, bw);
        for (int64_t y = 0; y < oh; y++) {
            int64_t y0, y1;
            float ty;
            warp_resize_axis(&y0, &y1, &ty, y, 1, top, sy, bh);
            for (int64_t k = 0; k < c; k++) {
                const float *r0 = in->data + (k * h + y0) * w;
                const float *r1 = in->data + (k * h + y1) * w;
                float *dst = out->data + (k * oh + y) * ow + xb;
                for (int64_t i = 0; i < nb; i++) {
                    float a = r0[x0[i]], b = r0[x1[i]], cc = r1[x0[i]], d = r1[x1[i]];
                    float tp = a + tx[i] * (b - a), bt = cc + tx[i] * (d - cc);
                    dst[i] = tp + ty * (bt - tp);
                }
            }
        }
    }
}

/* ---- Gaussian smoothing --------------------------------------------------------------- */

#define WARP_BLUR_MAX_RADIUS 63

/* Normalised 1-D Gaussian of standard deviation sigma into k[0..2r], radius r = ceil(3 sigma)
 * capped at WARP_BLUR_MAX_RADIUS (3 sigma holds 99.7% of the mass). Returns r. */
static inline int warp_gaussian_kernel(float k[2 * WARP_BLUR_MAX_RADIUS + 1], double sigma)
{
    if (!(sigma > 0.0)) {
        k[0] = 1.0f;
        return 0;
    }
    int r = (int)ceil(3.0 * sigma);
    if (r > WARP_BLUR_MAX_RADIUS)
        r = WARP_BLUR_MAX_RADIUS;
    double e[2 * WARP_BLUR_MAX_RADIUS + 1], sum = 0.0;
    for (int i = -r; i <= r; i++) {
        e[i + r] = exp(-0.5 * (double)i * (double)i / (sigma * sigma));
        sum += e[i + r];
    }
    for (int i = 0; i <= 2 * r; i++)
        k[i] = (float)(e[i] / sum);
    return r;
}

/* Convolves `count` lines in place with the kernel k of radius r, reflecting at both ends:
 * line j holds n values p[j * lstride + i * stride], i < n. Only the r originals behind the
 * write position are ever needed again (reflection is 1-Lipschitz, so every tap of position
 * x reads an index within r of x): they wait in a small ring, which keeps the blur
 * allocation-free at any image size. Lines go in bundles of WARP_BLUR_BUNDLE so that the
 * inner loop runs over independent sums (contiguous when lstride is 1, which vectorizes),
 * rather than one serial chain of 2r + 1 additions per value. */
#define WARP_BLUR_BUNDLE 16
static inline void warp_blur_lines(float *p, int64_t n, int64_t stride, int64_t count,
                                   int64_t lstride, const float *k, int r)
{
    if (r == 0)
        return;
    enum { RING = 64 }; /* a power of two > WARP_BLUR_MAX_RADIUS */
    _Static_assert(RING > WARP_BLUR_MAX_RADIUS, "the ring holds r originals");
    float ring[RING][WARP_BLUR_BUNDLE];
    for (int64_t j0 = 0; j0 < count; j0 += WARP_BLUR_BUNDLE) {
        int64_t nb = count - j0 < WARP_BLUR_BUNDLE ? count - j0 : WARP_BLUR_BUNDLE;
        float *base = p + j0 * lstride;
        for (int64_t x = 0; x < n; x++) {
            float acc[WARP_BLUR_BUNDLE] = {0};
            for (int t = -r; t <= r; t++) {
                int64_t i = x + t; /* one reflection covers every tap when n > r */
                i = i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
                if (i < 0 || i >= n)
                    i = warp_index(x + t, n, WARP_FILL_REFLECT);
                const float kt = k[t + r];
                if (i < x) {
                    const float *v = ring[i & (RING - 1)];
                    for (int64_t j = 0; j < nb; j++)
                        acc[j] += kt * v[j];
                } else {
                    const float *v = base + i * stride;
                    for (int64_t j = 0; j < nb; j++)
                        acc[j] += kt * v[j * lstride];
                }
            }
            float *keep = ring[x & (RING - 1)], *v = base + x * stride;
            for (int64_t j = 0; j < nb; j++) {
                keep[j] = v[j * lstride];
                v[j * lstride] = acc[j];
            }
        }
    }
}

/* Separable Gaussian blur of one (H, W) plane in place: rows, then columns. */
static inline void warp_blur_plane(float *plane, int64_t h, int64_t w, const float *k, int r)
{
    warp_blur_lines(plane, w, 1, h, w, k, r);
    warp_blur_lines(plane, h, w, w, 1, k, r);
}

#endif
