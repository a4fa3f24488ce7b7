/* gaussian_blur — invariance to focus: a separable Gaussian blur whose sigma is drawn
 * uniformly from `sigma` (one invar_rng_range draw), kernel radius ceil(3 sigma) (at most
 * WARP_BLUR_MAX_RADIUS), reflecting at the edges. The two passes run in place in `out` with a
 * small ring buffer, so any image size needs no scratch. sigma [0, 0] is the identity. */
#include <invar/plugin.h>

#include "warp.h"

struct gaussian_blur_config {
    double sigma[2];
};

static const struct invar_param_spec gaussian_blur_params[] = {
    INVAR_PARAM_RANGE(struct gaussian_blur_config, sigma, "[0.1, 2.0]", 0, 20,
                      "standard deviation range in pixels"),
    INVAR_PARAM_END
};

static void gaussian_blur_apply(const void *config, struct invar_rng *rng,
                                const struct invar_image *in, struct invar_image *out)
{
    const struct gaussian_blur_config *cf = config;
    double sigma = invar_rng_range(rng, (float)cf->sigma[0], (float)cf->sigma[1]);
    float kern[2 * WARP_BLUR_MAX_RADIUS + 1];
    int r = warp_gaussian_kernel(kern, sigma);
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = h, out->w = w;
    memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
    for (int64_t k = 0; k < c; k++)
        warp_blur_plane(out->data + k * h * w, h, w, kern, r);
}

static const struct invar_augment_ops gaussian_blur_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = gaussian_blur_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "gaussian_blur", "1.0.0",
                    "common: separable Gaussian blur with a random sigma",
                    struct gaussian_blur_config, gaussian_blur_params, gaussian_blur_ops)
