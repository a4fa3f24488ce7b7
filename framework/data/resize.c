/* Whole images resized bilinearly: the evaluation's inputs at eval.size. */
#include <math.h>

#include "invar/data.h"

/* Output index i of an axis of n samples over len inputs reads lo and hi with weight t on hi:
 * half-pixel centres, clamped to the edge, positions within 1e-6 of a whole pixel snapped to
 * it (resized_crop's rule, so both give the same bits on a box of the whole image). */
static void resize_axis(int64_t i, int64_t n, int64_t len, int64_t *lo, int64_t *hi, float *t)
{
    double v = ((double)i + 0.5) * ((double)len / (double)n) - 0.5;
    double r = nearbyint(v);
    if (fabs(v - r) < 1e-6)
        v = r;
    v = v < 0.0 ? 0.0 : (v > (double)(len - 1) ? (double)(len - 1) : v);
    double f = floor(v);
    *lo = (int64_t)f;
    *t = (float)(v - f);
    *hi = *t > 0.0f ? *lo + 1 : *lo;
}

void invar_image_resize(const float *in, const int64_t in_shape[3], float *out, int64_t oh,
                        int64_t ow)
{
    const int64_t c = in_shape[0], h = in_shape[1], w = in_shape[2];
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1;
        float ty;
        resize_axis(y, oh, h, &y0, &y1, &ty);
        for (int64_t x = 0; x < ow; x++) {
            int64_t x0, x1;
            float tx;
            resize_axis(x, ow, w, &x0, &x1, &tx);
            for (int64_t k = 0; k < c; k++) {
                const float *r0 = in + (k * h + y0) * w, *r1 = in + (k * h + y1) * w;
                float a = r0[x0], b = r0[x1], cc = r1[x0], d = r1[x1];
                float tp = a + tx * (b - a), bt = cc + tx * (d - cc);
                out[(k * oh + y) * ow + x] = tp + ty * (bt - tp);
            }
        }
    }
}
