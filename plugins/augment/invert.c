/* invert — colour invariance to polarity: x -> max - x (max = 1 for images in [0, 1]). */
#include <invar/plugin.h>

#include "warp.h"

struct invert_config {
    double max;
};

static const struct invar_param_spec invert_params[] = {
    INVAR_PARAM_FLOAT(struct invert_config, max, "1.0", 0, 1e9, "value that maps to 0"),
    INVAR_PARAM_END
};

static void invert_apply(const void *config, struct invar_rng *rng,
                         const struct invar_image *in, struct invar_image *out)
{
    const struct invert_config *cf = config;
    (void)rng;
    float mx = (float)cf->max;
    out->c = in->c, out->h = in->h, out->w = in->w;
    for (int64_t i = 0; i < invar_image_numel(in); i++)
        out->data[i] = mx - in->data[i];
}

static const struct invar_augment_ops invert_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = invert_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "invert", "1.0.0", "colour: x -> max - x",
                    struct invert_config, invert_params, invert_ops)
