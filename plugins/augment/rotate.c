/* rotate — rotation invariance: rotate about the image centre by an angle drawn uniformly
 * from `degrees` (one invar_rng_range draw), bilinear. Positive angles turn the content
 * counter-clockwise as seen on screen (y pointing down), as torchvision's rotate. */
#include <invar/plugin.h>

#include "warp.h"

struct rotate_config {
    double degrees[2];
    int fill;
    double fill_value;
};

static const struct invar_param_spec rotate_params[] = {
    INVAR_PARAM_RANGE(struct rotate_config, degrees, "[-15, 15]", -360, 360,
                      "angle range in degrees, drawn uniformly"),
    INVAR_PARAM_ENUM(struct rotate_config, fill, "constant", WARP_FILL_ALLOWED,
                     "what the corners uncovered by the rotation show"),
    INVAR_PARAM_FLOAT(struct rotate_config, fill_value, "0", 0, 1,
                      "value of the corners when fill is constant"),
    INVAR_PARAM_END
};

static void rotate_apply(const void *config, struct invar_rng *rng,
                         const struct invar_image *in, struct invar_image *out)
{
    const struct rotate_config *cf = config;
    double deg = invar_rng_range(rng, (float)cf->degrees[0], (float)cf->degrees[1]);
    double t = deg * (WARP_PI / 180.0);
    /* The output is the input turned by +t, so each output offset samples the input offset
     * turned by -t. With y down, a counter-clockwise turn on screen is [[c, s], [-s, c]]. */
    double cs = cos(t), sn = sin(t);
    double a[4] = {cs, -sn, sn, cs};
    double m[6];
    warp_affine_about_centre(m, a, in->h, in->w, 0.0, 0.0);
    warp_affine(out, in, m, (enum warp_fill)cf->fill, (float)cf->fill_value);
}

static const struct invar_augment_ops rotate_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = rotate_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "rotate", "1.0.0",
                    "rotation: random angle about the centre, bilinear, with a fill",
                    struct rotate_config, rotate_params, rotate_ops)
