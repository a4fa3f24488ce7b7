/* perspective — deformation invariance to viewpoint, as torchvision's RandomPerspective.
 *
 * Each corner moves inward by up to distortion * (side / 2) pixels per axis (whole pixels,
 * drawn with invar_rng_below: top-left x, y, top-right x, y, bottom-right x, y, bottom-left
 * x, y). The homography that takes the moved corners back to the original ones is solved per
 * sample (an 8 x 8 linear system, Gaussian elimination with partial pivoting in double) and
 * every output pixel samples the input through it, bilinear. distortion = 0 is the identity. */
#include <invar/plugin.h>

#include "warp.h"

struct perspective_config {
    double distortion;
    int fill;
    double fill_value;
};

static const struct invar_param_spec perspective_params[] = {
    INVAR_PARAM_FLOAT(struct perspective_config, distortion, "0.5", 0, 1,
                      "how far corners may move, as a fraction of half the side"),
    INVAR_PARAM_ENUM(struct perspective_config, fill, "constant", WARP_FILL_ALLOWED,
                     "what pixels mapped from outside the image show"),
    INVAR_PARAM_FLOAT(struct perspective_config, fill_value, "0", 0, 1,
                      "value outside when fill is constant"),
    INVAR_PARAM_END
};

/* Solves for g (3x3, g[8] = 1) with g(dst[i]) = src[i] for four point pairs (x, y).
 * Returns 0 when the points are degenerate (three of them collinear). */
static int perspective_solve(double g[9], double dst[4][2], double src[4][2])
{
    double a[8][9];
    for (int i = 0; i < 4; i++) {
        double u = dst[i][0], v = dst[i][1], x = src[i][0], y = src[i][1];
        double r0[9] = {u, v, 1, 0, 0, 0, -u * x, -v * x, x};
        double r1[9] = {0, 0, 0, u, v, 1, -u * y, -v * y, y};
        memcpy(a[2 * i], r0, sizeof r0);
        memcpy(a[2 * i + 1], r1, sizeof r1);
    }
    for (int col = 0; col < 8; col++) {
        int piv = col;
        for (int r = col + 1; r < 8; r++)
            if (fabs(a[r][col]) > fabs(a[piv][col]))
                piv = r;
        if (fabs(a[piv][col]) < 1e-12)
            return 0;
        if (piv != col)
            for (int k = 0; k < 9; k++) {
                double t = a[col][k];
                a[col][k] = a[piv][k], a[piv][k] = t;
            }
        for (int r = 0; r < 8; r++) {
            if (r == col)
                continue;
            double f = a[r][col] / a[col][col];
            for (int k = col; k < 9; k++)
                a[r][k] -= f * a[col][k];
        }
    }
    for (int i = 0; i < 8; i++)
        g[i] = a[i][8] / a[i][i];
    g[8] = 1.0;
    return 1;
}

static void perspective_apply(const void *config, struct invar_rng *rng,
                              const struct invar_image *in, struct invar_image *out)
{
    const struct perspective_config *cf = config;
    int64_t h = in->h, w = in->w;
    int64_t dw = (int64_t)(cf->distortion * (double)(w / 2));
    int64_t dh = (int64_t)(cf->distortion * (double)(h / 2));
    double W1 = (double)(w - 1), H1 = (double)(h - 1);
    double src[4][2] = {{0, 0}, {W1, 0}, {W1, H1}, {0, H1}};
    /* Inward direction of each corner per axis: +1 moves right/down, -1 left/up. */
    static const int dir[4][2] = {{1, 1}, {-1, 1}, {-1, -1}, {1, -1}};
    double dst[4][2];
    for (int i = 0; i < 4; i++) {
        dst[i][0] = src[i][0] + dir[i][0] * (double)invar_rng_below(rng, (uint32_t)(dw + 1));
        dst[i][1] = src[i][1] + dir[i][1] * (double)invar_rng_below(rng, (uint32_t)(dh + 1));
    }
    double g[9];
    if (w < 2 || h < 2 || !perspective_solve(g, dst, src)) {
        out->c = in->c, out->h = h, out->w = w;
        memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
        return;
    }
    warp_homography(out, in, g, (enum warp_fill)cf->fill, (float)cf->fill_value);
}

static const struct invar_augment_ops perspective_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = perspective_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "perspective", "1.0.0",
                    "deformation: random corner displacement through a homography",
                    struct perspective_config, perspective_params, perspective_ops)
