/* zoom — scale invariance about the centre: a factor z drawn uniformly from `factor` (one
 * invar_rng_range draw) magnifies the content by z (z > 1 zooms in, z < 1 zooms out and
 * shows the fill around it), bilinear, keeping the image size. */
#include <invar/plugin.h>

#include "warp.h"

struct zoom_config {
    double factor[2];
    int fill;
    double fill_value;
};

static const struct invar_param_spec zoom_params[] = {
    INVAR_PARAM_RANGE(struct zoom_config, factor, "[0.8, 1.2]", 0.01, 100,
                      "magnification range, drawn uniformly"),
    INVAR_PARAM_ENUM(struct zoom_config, fill, "constant", WARP_FILL_ALLOWED,
                     "what a zoomed-out image shows around it"),
    INVAR_PARAM_FLOAT(struct zoom_config, fill_value, "0", 0, 1,
                      "value around the image when fill is constant"),
    INVAR_PARAM_END
};

static void zoom_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                       struct invar_image *out)
{
    const struct zoom_config *cf = config;
    double z = invar_rng_range(rng, (float)cf->factor[0], (float)cf->factor[1]);
    double a[4] = {1.0 / z, 0.0, 0.0, 1.0 / z};
    double m[6];
    warp_affine_about_centre(m, a, in->h, in->w, 0.0, 0.0);
    warp_affine(out, in, m, (enum warp_fill)cf->fill, (float)cf->fill_value);
}

static const struct invar_augment_ops zoom_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = zoom_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "zoom", "1.0.0",
                    "scale: random magnification about the centre, bilinear",
                    struct zoom_config, zoom_params, zoom_ops)
