/* time_warp — temporal invariance to local speed changes: a smooth, monotone warp of the
 * time axis.
 *
 * The axis [0, T-1] is cut into `knots` equal segments; the warp's speed at each of the
 * knots + 1 boundaries is exp(sigma * n) with n ~ N(0, 1) (knots + 1 invar_rng_normal
 * draws), linear in between. Its integral, rescaled to end at T-1, is the source position of
 * each output step: positive speeds make it strictly increasing, a continuous speed makes it
 * continuously differentiable, and the two ends stay fixed. The sequence is read there by
 * linear interpolation. sigma = 0 is the identity. */
#include <invar/plugin.h>

#include "warp.h"

#define TIME_WARP_MAX_KNOTS 64

struct time_warp_config {
    int64_t knots;
    double sigma;
};

static const struct invar_param_spec time_warp_params[] = {
    INVAR_PARAM_INT(struct time_warp_config, knots, "4", 1, TIME_WARP_MAX_KNOTS,
                    "segments of the speed curve (more = wigglier warp)"),
    INVAR_PARAM_FLOAT(struct time_warp_config, sigma, "0.2", 0, 3,
                      "log-speed standard deviation (0 = no warp)"),
    INVAR_PARAM_END
};

static void time_warp_apply(const void *config, struct invar_rng *rng,
                            const struct invar_image *in, struct invar_image *out)
{
    const struct time_warp_config *cf = config;
    int64_t t = in->w, rows = in->c * in->h, nk = cf->knots;
    double v[TIME_WARP_MAX_KNOTS + 1];   // speed at each boundary
    double s[TIME_WARP_MAX_KNOTS + 1];   // integral of the speed up to each boundary
    for (int64_t k = 0; k <= nk; k++)
        v[k] = exp(cf->sigma * (double)invar_rng_normal(rng));
    double seg = t > 1 ? (double)(t - 1) / (double)nk : 1.0;
    s[0] = 0.0;
    for (int64_t k = 0; k < nk; k++)
        s[k + 1] = s[k] + seg * 0.5 * (v[k] + v[k + 1]);
    double norm = t > 1 ? (double)(t - 1) / s[nk] : 0.0;
    out->c = in->c, out->h = in->h, out->w = t;
    for (int64_t i = 0; i < t; i++) {
        double u = (double)i / seg;
        int64_t k = (int64_t)u;
        k = k >= nk ? nk - 1 : k;
        u -= (double)k;
        double pos = (s[k] + seg * (v[k] * u + 0.5 * (v[k + 1] - v[k]) * u * u)) * norm;
        pos = warp_snap(pos);
        for (int64_t r = 0; r < rows; r++)
            out->data[r * t + i] = warp_bilinear(in->data + r * t, 1, t, 0.0, pos,
                                                 WARP_FILL_EDGE, 0.0f);
    }
}

static const struct invar_augment_ops time_warp_ops = {
    .flags = INVAR_AUG_SEQUENCES,
    .apply = time_warp_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "time_warp", "1.0.0",
                    "temporal: smooth monotone random warp of the time axis",
                    struct time_warp_config, time_warp_params, time_warp_ops)
