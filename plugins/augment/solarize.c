/* solarize — colour invariance to tone inversion of the highlights: every value at or above
 * `threshold` becomes 1 - x (as torchvision's solarize). A threshold above 1 changes nothing. */
#include <invar/plugin.h>

#include "warp.h"

struct solarize_config {
    double threshold;
};

static const struct invar_param_spec solarize_params[] = {
    INVAR_PARAM_FLOAT(struct solarize_config, threshold, "0.5", 0, 2,
                      "values >= threshold are inverted; > 1 leaves the image unchanged"),
    INVAR_PARAM_END
};

static void solarize_apply(const void *config, struct invar_rng *rng,
                           const struct invar_image *in, struct invar_image *out)
{
    const struct solarize_config *cf = config;
    (void)rng;
    float t = (float)cf->threshold;
    out->c = in->c, out->h = in->h, out->w = in->w;
    for (int64_t i = 0; i < invar_image_numel(in); i++)
        out->data[i] = in->data[i] >= t ? 1.0f - in->data[i] : in->data[i];
}

static const struct invar_augment_ops solarize_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = solarize_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "solarize", "1.0.0",
                    "colour: invert every value above a threshold",
                    struct solarize_config, solarize_params, solarize_ops)
