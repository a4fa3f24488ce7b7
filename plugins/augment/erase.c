/* erase — occlusion invariance, as torchvision's RandomErasing: up to 10 attempts draw an
 * area fraction s ~ U(scale) and a log aspect ~ U(log ratio), giving h = round(sqrt(s A r)),
 * w = round(sqrt(s A / r)); the first box with h < H and w < W is placed uniformly (top, then
 * left) and set to `value` on every channel (or to U[0, 1) noise when random is set). When no
 * attempt fits, the image is left as it is. */
#include <invar/plugin.h>

#include "warp.h"

struct erase_config {
    double scale[2];
    double ratio[2];
    double value;
    int random;
};

static const struct invar_param_spec erase_params[] = {
    INVAR_PARAM_RANGE(struct erase_config, scale, "[0.02, 0.33]", 0, 1,
                      "range of the erased area as a fraction of the image"),
    INVAR_PARAM_RANGE(struct erase_config, ratio, "[0.3, 3.3]", 0.01, 100,
                      "range of the erased box's aspect ratio h/w, drawn log-uniformly"),
    INVAR_PARAM_FLOAT(struct erase_config, value, "0", 0, 1, "value written into the box"),
    INVAR_PARAM_BOOL(struct erase_config, random, "false",
                     "fill the box with uniform noise instead of value"),
    INVAR_PARAM_END
};

static void erase_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                        struct invar_image *out)
{
    const struct erase_config *cf = config;
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = h, out->w = w;
    memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
    double area = (double)h * (double)w;
    double lr0 = log(cf->ratio[0]), lr1 = log(cf->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * invar_rng_range(rng, (float)cf->scale[0], (float)cf->scale[1]);
        double aspect = exp(invar_rng_range(rng, (float)lr0, (float)lr1));
        int64_t bh = (int64_t)nearbyint(sqrt(target * aspect));
        int64_t bw = (int64_t)nearbyint(sqrt(target / aspect));
        if (!(bh < h && bw < w))
            continue;
        int64_t top = (int64_t)invar_rng_below(rng, (uint32_t)(h - bh + 1));
        int64_t left = (int64_t)invar_rng_below(rng, (uint32_t)(w - bw + 1));
        for (int64_t k = 0; k < c; k++)
            for (int64_t y = top; y < top + bh; y++)
                for (int64_t x = left; x < left + bw; x++)
                    out->data[(k * h + y) * w + x] =
                        cf->random ? invar_rng_uniform(rng) : (float)cf->value;
        return;
    }
}

static const struct invar_augment_ops erase_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = erase_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "erase", "1.0.0",
                    "common: random erasing of a box (RandomErasing)",
                    struct erase_config, erase_params, erase_ops)
