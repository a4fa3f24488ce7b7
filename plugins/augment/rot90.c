/* rot90 — rotation invariance by quarter turns, exact (no interpolation).
 *
 * `k` fixes the number of counter-clockwise quarter turns; k = -1 draws it (one
 * invar_rng_below draw) from {0, 1, 2, 3} for square images and from {0, 2} otherwise, since
 * an odd turn of a non-square image would change the output shape from draw to draw. A fixed
 * odd k on a non-square image swaps H and W (see out_shape). */
#include <invar/plugin.h>

#include "warp.h"

struct rot90_config {
    int64_t k;
};

static const struct invar_param_spec rot90_params[] = {
    INVAR_PARAM_INT(struct rot90_config, k, "-1", -1, 3,
                    "quarter turns counter-clockwise; -1 draws one at random"),
    INVAR_PARAM_END
};

static void rot90_out_shape(const void *config, const int64_t in[3], int64_t out[3])
{
    const struct rot90_config *cf = config;
    int odd = cf->k == 1 || cf->k == 3;
    out[0] = in[0];
    out[1] = odd ? in[2] : in[1];
    out[2] = odd ? in[1] : in[2];
}

static void rot90_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                        struct invar_image *out)
{
    const struct rot90_config *cf = config;
    int64_t c = in->c, h = in->h, w = in->w;
    int64_t k = cf->k;
    if (k < 0)
        k = h == w ? (int64_t)invar_rng_below(rng, 4) : 2 * (int64_t)invar_rng_below(rng, 2);
    int64_t oh = (k & 1) ? w : h, ow = (k & 1) ? h : w;
    out->c = c, out->h = oh, out->w = ow;
    for (int64_t ch = 0; ch < c; ch++) {
        const float *src = in->data + ch * h * w;  // (H, W)
        float *dst = out->data + ch * oh * ow;     // (OH, OW)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                /* Source of output (y, x) for a counter-clockwise turn, y down. */
                int64_t sy, sx;
                switch (k) {
                case 0: sy = y, sx = x; break;
                case 1: sy = x, sx = w - 1 - y; break;
                case 2: sy = h - 1 - y, sx = w - 1 - x; break;
                default: sy = h - 1 - x, sx = y; break;
                }
                dst[y * ow + x] = src[sy * w + sx];
            }
    }
}

static const struct invar_augment_ops rot90_ops = {
    .flags = INVAR_AUG_IMAGES,
    .out_shape = rot90_out_shape,
    .apply = rot90_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "rot90", "1.0.0",
                    "rotation: random multiple of 90 degrees, exact",
                    struct rot90_config, rot90_params, rot90_ops)
