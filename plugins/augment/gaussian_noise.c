/* gaussian_noise — invariance to sensor noise: adds independent N(mean, std^2) noise to every
 * value (one invar_rng_normal draw per value, in memory order), then clamps to [0, 1] when
 * `clamp` is set (images); sequences usually want clamp off. */
#include <invar/plugin.h>

#include "warp.h"

struct gaussian_noise_config {
    double mean;
    double std;
    int clamp;
};

static const struct invar_param_spec gaussian_noise_params[] = {
    INVAR_PARAM_FLOAT(struct gaussian_noise_config, mean, "0", -1, 1, "mean of the noise"),
    INVAR_PARAM_FLOAT(struct gaussian_noise_config, std, "0.05", 0, 10,
                      "standard deviation of the noise"),
    INVAR_PARAM_BOOL(struct gaussian_noise_config, clamp, "true",
                     "clamp the result to [0, 1]"),
    INVAR_PARAM_END
};

static void gaussian_noise_apply(const void *config, struct invar_rng *rng,
                                 const struct invar_image *in, struct invar_image *out)
{
    const struct gaussian_noise_config *cf = config;
    float mean = (float)cf->mean, std = (float)cf->std;
    out->c = in->c, out->h = in->h, out->w = in->w;
    for (int64_t i = 0; i < invar_image_numel(in); i++) {
        float v = in->data[i] + (mean + std * invar_rng_normal(rng));
        out->data[i] = cf->clamp ? warp_clamp01(v) : v;
    }
}

static const struct invar_augment_ops gaussian_noise_ops = {
    .flags = INVAR_AUG_IMAGES | INVAR_AUG_SEQUENCES,
    .apply = gaussian_noise_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "gaussian_noise", "1.0.0",
                    "common: additive Gaussian noise, optionally clamped",
                    struct gaussian_noise_config, gaussian_noise_params, gaussian_noise_ops)
