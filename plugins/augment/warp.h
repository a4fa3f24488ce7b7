/* warp.h — pixel helpers shared by the augmentation plugins (internal, never installed).
 *
 *     // rotate every channel of in about its centre into out, bilinear, zeros outside
 *     double m[6];
 *     warp_affine_about_centre(m, a, in->h, in->w);   // a: 2x2 output -> input
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
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = h, out->w = w;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double xs = warp_snap(m[0] * (double)x + m[1] * (double)y + m[2]);
            double ys = warp_snap(m[3] * (double)x + m[4] * (double)y + m[5]);
            for (int64_t k = 0; k < c; k++)
                out->data[(k * h + y) * w + x] =
                    warp_bilinear(in->data + k * h * w, h, w, ys, xs, mode, fill);
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
            xs = warp_snap(xs), ys = warp_snap(ys);
            for (int64_t k = 0; k < c; k++)
                out->data[(k * h + y) * w + x] =
                    warp_bilinear(in->data + k * h * w, h, w, ys, xs, mode, fill);
        }
}

/* out (C, OH, OW) <- the box (top, left, bh, bw) of in, resized bilinearly with half-pixel
 * centres (align_corners = false, as torchvision): samples outside the box are clamped to its
 * edge, so nothing outside the crop leaks in. A box of the output's size copies exactly. */
static inline void warp_resize_box(struct invar_image *out, int64_t oh, int64_t ow,
                                   const struct invar_image *in, double top, double left,
                                   double bh, double bw)
{
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = oh, out->w = ow;
    double sy = bh / (double)oh, sx = bw / (double)ow;
    double ylo = top, yhi = top + bh - 1.0, xlo = left, xhi = left + bw - 1.0;
    if (yhi < ylo)
        yhi = ylo;
    if (xhi < xlo)
        xhi = xlo;
    for (int64_t y = 0; y < oh; y++) {
        double ys = warp_snap(top + ((double)y + 0.5) * sy - 0.5);
        ys = ys < ylo ? ylo : (ys > yhi ? yhi : ys);
        for (int64_t x = 0; x < ow; x++) {
            double xs = warp_snap(left + ((double)x + 0.5) * sx - 0.5);
            xs = xs < xlo ? xlo : (xs > xhi ? xhi : xs);
            for (int64_t k = 0; k < c; k++)
                out->data[(k * oh + y) * ow + x] =
                    warp_bilinear(in->data + k * h * w, h, w, ys, xs, WARP_FILL_EDGE, 0.0f);
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

/* Convolves n values p[0], p[stride], ... in place with the kernel k of radius r, reflecting
 * at both ends. Only r + 1 originals are ever needed behind the write position (reflection
 * is 1-Lipschitz, so every tap of position x reads an index within r of x): they wait in a
 * small ring, which keeps the blur allocation-free at any image size. */
static inline void warp_blur_line(float *p, int64_t n, int64_t stride, const float *k, int r)
{
    if (r == 0)
        return;
    float ring[WARP_BLUR_MAX_RADIUS + 1];
    const int64_t nr = r + 1;
    for (int64_t x = 0; x < n; x++) {
        float acc = 0.0f;
        for (int t = -r; t <= r; t++) {
            int64_t i = warp_index(x + t, n, WARP_FILL_REFLECT);
            float v = i < x ? ring[i % nr] : p[i * stride];
            acc += k[t + r] * v;
        }
        ring[x % nr] = p[x * stride];
        p[x * stride] = acc;
    }
}

/* Separable Gaussian blur of one (H, W) plane in place. */
static inline void warp_blur_plane(float *plane, int64_t h, int64_t w, const float *k, int r)
{
    for (int64_t y = 0; y < h; y++)
        warp_blur_line(plane + y * w, w, 1, k, r);
    for (int64_t x = 0; x < w; x++)
        warp_blur_line(plane + x, h, w, k, r);
}

#endif
