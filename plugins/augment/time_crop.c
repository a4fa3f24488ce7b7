/* time_crop — temporal scale invariance: a window of L = round(s T) steps (s drawn uniformly
 * from `scale`, L at least 2 and at most T) starting at a uniform position (draws: range,
 * then below) is resampled linearly back to T steps with half-step centres, like a 1-D
 * resized crop. The full window copies the sequence exactly. */
#include <invar/plugin.h>

#include "warp.h"

struct time_crop_config {
    double scale[2];
};

static const struct invar_param_spec time_crop_params[] = {
    INVAR_PARAM_RANGE(struct time_crop_config, scale, "[0.8, 1.0]", 0, 1,
                      "range of the window's length as a fraction of T"),
    INVAR_PARAM_END
};

static void time_crop_apply(const void *config, struct invar_rng *rng,
                            const struct invar_image *in, struct invar_image *out)
{
    const struct time_crop_config *cf = config;
    int64_t t = in->w;
    double s = invar_rng_range(rng, (float)cf->scale[0], (float)cf->scale[1]);
    int64_t len = (int64_t)nearbyint(s * (double)t);
    len = len < 2 ? 2 : len;
    len = len > t ? t : len;
    int64_t start = (int64_t)invar_rng_below(rng, (uint32_t)(t - len + 1));
    /* Rows of a (C, H, T) input are resampled alike: the box spans every row. */
    warp_resize_box(out, in->h, t, in, 0.0, (double)start, (double)in->h, (double)len);
}

static const struct invar_augment_ops time_crop_ops = {
    .flags = INVAR_AUG_SEQUENCES,
    .apply = time_crop_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "time_crop", "1.0.0",
                    "temporal: crop a random window and resample it to the full length",
                    struct time_crop_config, time_crop_params, time_crop_ops)
