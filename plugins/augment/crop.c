/* crop — translation invariance as CIFAR's RandomCrop: pad by `padding` on every side, then
 * cut a random window of the input's size out of the padded image. The window's top and left
 * are drawn (top first) uniformly from 0..2*padding, so the content moves by up to `padding`
 * pixels per axis. The padding is never materialised: each output pixel reads its source. */
#include <invar/plugin.h>

#include "warp.h"

struct crop_config {
    int64_t padding;
    int fill;
    double fill_value;
};

static const struct invar_param_spec crop_params[] = {
    INVAR_PARAM_INT(struct crop_config, padding, "4", 0, 4096, "pixels of padding per side"),
    INVAR_PARAM_ENUM(struct crop_config, fill, "constant", WARP_FILL_ALLOWED,
                     "how the padding is filled"),
    INVAR_PARAM_FLOAT(struct crop_config, fill_value, "0", 0, 1,
                      "value of the padding when fill is constant"),
    INVAR_PARAM_END
};

static void crop_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                       struct invar_image *out)
{
    const struct crop_config *cf = config;
    int64_t c = in->c, h = in->h, w = in->w, p = cf->padding;
    int64_t top = p > 0 ? (int64_t)invar_rng_below(rng, (uint32_t)(2 * p + 1)) : 0;
    int64_t left = p > 0 ? (int64_t)invar_rng_below(rng, (uint32_t)(2 * p + 1)) : 0;
    out->c = c, out->h = h, out->w = w;
    for (int64_t k = 0; k < c; k++) {
        const float *src = in->data + k * h * w;  // (H, W)
        float *dst = out->data + k * h * w;       // (H, W)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                dst[y * w + x] = warp_pixel(src, h, w, y + top - p, x + left - p,
                                            (enum warp_fill)cf->fill, (float)cf->fill_value);
    }
}

static const struct invar_augment_ops crop_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = crop_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "crop", "1.0.0",
                    "translation: pad then random crop back to the input size (RandomCrop)",
                    struct crop_config, crop_params, crop_ops)
