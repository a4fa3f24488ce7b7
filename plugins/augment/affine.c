/* affine — deformation invariance by shear, with an optional small scale and translation,
 * about the image centre, bilinear. The forward map of centred coordinates is
 *     [x']   = z [1        tan(sx)] [x] + [tx]
 *     [y']       [tan(sy)  1      ] [y]   [ty]
 * with the shear angles sx, sy (degrees), the scale z and the translation (fractions of W, H)
 * drawn uniformly in that order (five invar_rng_range draws); each output pixel samples its
 * preimage. All ranges at zero (scale [1, 1]) give the identity. */
#include <invar/plugin.h>

#include "warp.h"

struct affine_config {
    double shear_x[2], shear_y[2];
    double scale[2];
    double translate;
    int fill;
    double fill_value;
};

static const struct invar_param_spec affine_params[] = {
    INVAR_PARAM_RANGE(struct affine_config, shear_x, "[-10, 10]", -60, 60,
                      "horizontal shear angle range in degrees"),
    INVAR_PARAM_RANGE(struct affine_config, shear_y, "[0, 0]", -60, 60,
                      "vertical shear angle range in degrees"),
    INVAR_PARAM_RANGE(struct affine_config, scale, "[1, 1]", 0.1, 10,
                      "scale range (1 = none)"),
    INVAR_PARAM_FLOAT(struct affine_config, translate, "0", 0, 0.5,
                      "largest translation per axis as a fraction of the side"),
    INVAR_PARAM_ENUM(struct affine_config, fill, "constant", WARP_FILL_ALLOWED,
                     "what pixels mapped from outside the image show"),
    INVAR_PARAM_FLOAT(struct affine_config, fill_value, "0", 0, 1,
                      "value outside when fill is constant"),
    INVAR_PARAM_END
};

static void affine_apply(const void *config, struct invar_rng *rng,
                         const struct invar_image *in, struct invar_image *out)
{
    const struct affine_config *cf = config;
    const double rad = WARP_PI / 180.0;
    double sx = invar_rng_range(rng, (float)cf->shear_x[0], (float)cf->shear_x[1]) * rad;
    double sy = invar_rng_range(rng, (float)cf->shear_y[0], (float)cf->shear_y[1]) * rad;
    double z = invar_rng_range(rng, (float)cf->scale[0], (float)cf->scale[1]);
    float t = (float)cf->translate;
    double tx = invar_rng_range(rng, -t, t) * (double)in->w;
    double ty = invar_rng_range(rng, -t, t) * (double)in->h;
    double f[4] = {z, z * tan(sx), z * tan(sy), z};
    double det = f[0] * f[3] - f[1] * f[2];
    if (fabs(det) < 1e-12) { /* shears of +-45 degrees together fold the plane: keep it */
        out->c = in->c, out->h = in->h, out->w = in->w;
        memcpy(out->data, in->data, (size_t)invar_image_numel(in) * sizeof(float));
        return;
    }
    double a[4] = {f[3] / det, -f[1] / det, -f[2] / det, f[0] / det};
    double m[6];
    warp_affine_about_centre(m, a, in->h, in->w, tx, ty);
    warp_affine(out, in, m, (enum warp_fill)cf->fill, (float)cf->fill_value);
}

static const struct invar_augment_ops affine_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = affine_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "affine", "1.0.0",
                    "deformation: random shear with optional scale and translation",
                    struct affine_config, affine_params, affine_ops)
