/* time_mask — temporal occlusion: set one contiguous span of L = round(f T) steps (f drawn
 * uniformly from `width`) to `value` on every channel, at a uniform start (draws: range, then
 * below). */
#include <invar/plugin.h>

#include "warp.h"

struct time_mask_config {
    double width[2];
    double value;
};

static const struct invar_param_spec time_mask_params[] = {
    INVAR_PARAM_RANGE(struct time_mask_config, width, "[0.0, 0.2]", 0, 1,
                      "range of the span's length as a fraction of T"),
    INVAR_PARAM_FLOAT(struct time_mask_config, value, "0", -1e9, 1e9,
                      "value written over the span"),
    INVAR_PARAM_END
};

static void time_mask_apply(const void *config, struct invar_rng *rng,
                            const struct invar_image *in, struct invar_image *out)
{
    const struct time_mask_config *cf = config;
    int64_t t = in->w, rows = in->c * in->h;
    double f = invar_rng_range(rng, (float)cf->width[0], (float)cf->width[1]);
    int64_t len = (int64_t)nearbyint(f * (double)t);
    len = len > t ? t : len;
    int64_t start = (int64_t)invar_rng_below(rng, (uint32_t)(t - len + 1));
    out->c = in->c, out->h = in->h, out->w = t;
    memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = start; i < start + len; i++)
            out->data[r * t + i] = (float)cf->value;
}

static const struct invar_augment_ops time_mask_ops = {
    .flags = INVAR_AUG_SEQUENCES,
    .apply = time_mask_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "time_mask", "1.0.0",
                    "temporal: set a random contiguous span to a value (zero by default)",
                    struct time_mask_config, time_mask_params, time_mask_ops)
