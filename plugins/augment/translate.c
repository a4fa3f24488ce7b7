/* translate — translation invariance: shift the image by a whole number of pixels.
 *
 * Shifts are drawn per axis uniformly from the integers in [-m, m], dx first then dy (each
 * one invar_rng_below draw), where m is max_shift pixels or max_shift * W (resp. H) rounded
 * down when unit is fraction. Whole-pixel shifts move content exactly, with no blur. */
#include <invar/plugin.h>

#include "warp.h"

struct translate_config {
    double max_shift;
    int unit;  /* 0 fraction, 1 pixels */
    int fill;  /* enum warp_fill */
    double fill_value;
};

static const struct invar_param_spec translate_params[] = {
    INVAR_PARAM_FLOAT(struct translate_config, max_shift, "0.125", 0, 4096,
                      "largest shift per axis, in the unit below"),
    INVAR_PARAM_ENUM(struct translate_config, unit, "fraction", "fraction|pixels",
                     "max_shift as a fraction of the side or in pixels"),
    INVAR_PARAM_ENUM(struct translate_config, fill, "constant", WARP_FILL_ALLOWED,
                     "what the uncovered border shows"),
    INVAR_PARAM_FLOAT(struct translate_config, fill_value, "0", 0, 1,
                      "value of the border when fill is constant"),
    INVAR_PARAM_END
};

static int64_t translate_draw(struct invar_rng *rng, double max_shift, int unit, int64_t side)
{
    int64_t m = (int64_t)floor(unit == 0 ? max_shift * (double)side : max_shift);
    if (m > side - 1)
        m = side - 1;
    if (m <= 0)
        return 0;
    return (int64_t)invar_rng_below(rng, (uint32_t)(2 * m + 1)) - m;
}

static void translate_apply(const void *config, struct invar_rng *rng,
                            const struct invar_image *in, struct invar_image *out)
{
    const struct translate_config *cf = config;
    int64_t c = in->c, h = in->h, w = in->w;
    int64_t dx = translate_draw(rng, cf->max_shift, cf->unit, w);
    int64_t dy = translate_draw(rng, cf->max_shift, cf->unit, h);
    out->c = c, out->h = h, out->w = w;
    for (int64_t k = 0; k < c; k++) {
        const float *src = in->data + k * h * w;  // (H, W)
        float *dst = out->data + k * h * w;       // (H, W)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                dst[y * w + x] = warp_pixel(src, h, w, y - dy, x - dx, (enum warp_fill)cf->fill,
                                            (float)cf->fill_value);
    }
}

static const struct invar_augment_ops translate_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = translate_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "translate", "1.0.0",
                    "translation: random whole-pixel shift with a fill mode",
                    struct translate_config, translate_params, translate_ops)
