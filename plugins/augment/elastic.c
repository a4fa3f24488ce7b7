/* elastic — deformation invariance (Simard et al. 2003): a random displacement field, each
 * component uniform in [-1, 1] per pixel, smoothed by a Gaussian of standard deviation sigma
 * (reflecting at the edges) and scaled by alpha, moves every pixel; the image is read there
 * bilinearly. Displacements are in pixels; alpha = 0 is the identity.
 *
 * Scratch without allocation: the field lives in a fixed stack buffer of 2 x 64 x 64 floats
 * (32 KiB). Images up to 64 x 64 get a field per pixel. A larger image gets its field on a
 * grid of step s = ceil(max(H, W) / 64), smoothed by sigma / s and upsampled bilinearly: the
 * field is already smooth on the scale of sigma, so for sigma >= s little is lost, and the
 * field is divided by s because white noise smoothed by a Gaussian of sigma / s is s times
 * stronger than the same noise at full resolution smoothed by sigma. For such images, sigma
 * much smaller than s gives a smoother field than the per-pixel one would be. Kernel radii
 * stop at WARP_BLUR_MAX_RADIUS (sigma / s up to 21). Draws: H'W' uniforms for x, then for y,
 * with H' x W' the field's grid. */
#include <invar/plugin.h>

#include "warp.h"

#define ELASTIC_GRID 64

struct elastic_config {
    double alpha;
    double sigma;
    int fill;
    double fill_value;
};

static const struct invar_param_spec elastic_params[] = {
    INVAR_PARAM_FLOAT(struct elastic_config, alpha, "34", 0, 1e4,
                      "strength: displacement scale in pixels"),
    INVAR_PARAM_FLOAT(struct elastic_config, sigma, "4", 0.1, 1e3,
                      "smoothness: Gaussian standard deviation of the field in pixels"),
    INVAR_PARAM_ENUM(struct elastic_config, fill, "reflect", WARP_FILL_ALLOWED,
                     "what a pixel displaced from outside the image reads"),
    INVAR_PARAM_FLOAT(struct elastic_config, fill_value, "0", 0, 1,
                      "value read from outside when fill is constant"),
    INVAR_PARAM_END
};

static void elastic_apply(const void *config, struct invar_rng *rng,
                          const struct invar_image *in, struct invar_image *out)
{
    const struct elastic_config *cf = config;
    int64_t c = in->c, h = in->h, w = in->w;
    int64_t side = h > w ? h : w;
    int64_t s = (side + ELASTIC_GRID - 1) / ELASTIC_GRID;
    int64_t gh = (h + s - 1) / s, gw = (w + s - 1) / s;
    float field[2][ELASTIC_GRID * ELASTIC_GRID];  // (2, GH, GW): x then y displacement
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < gh * gw; i++)
            field[k][i] = 2.0f * invar_rng_uniform(rng) - 1.0f;
    float kern[2 * WARP_BLUR_MAX_RADIUS + 1];
    int r = warp_gaussian_kernel(kern, cf->sigma / (double)s);
    float scale = (float)(cf->alpha / (double)s);
    for (int k = 0; k < 2; k++) {
        warp_blur_plane(field[k], gh, gw, kern, r);
        for (int64_t i = 0; i < gh * gw; i++)
            field[k][i] *= scale;
    }
    out->c = c, out->h = h, out->w = w;
    double inv = 1.0 / (double)s;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double gy = (double)y * inv, gx = (double)x * inv;
            double dx = warp_bilinear(field[0], gh, gw, gy, gx, WARP_FILL_EDGE, 0.0f);
            double dy = warp_bilinear(field[1], gh, gw, gy, gx, WARP_FILL_EDGE, 0.0f);
            double ys = warp_snap((double)y + dy), xs = warp_snap((double)x + dx);
            for (int64_t k = 0; k < c; k++)
                out->data[(k * h + y) * w + x] = warp_bilinear(
                    in->data + k * h * w, h, w, ys, xs, (enum warp_fill)cf->fill,
                    (float)cf->fill_value);
        }
}

static const struct invar_augment_ops elastic_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = elastic_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "elastic", "1.0.0",
                    "deformation: smooth random displacement field (alpha, sigma), bilinear",
                    struct elastic_config, elastic_params, elastic_ops)
