/* grayscale — colour invariance by removing colour: every channel becomes the luma
 * 0.299 R + 0.587 G + 0.114 B (C = 3) or the mean of the channels (any other C), so the
 * channel count is kept and the encoder's input shape does not change. */
#include <invar/plugin.h>

#include "warp.h"

struct grayscale_config {
    int unused;
};

static const struct invar_param_spec grayscale_params[] = {INVAR_PARAM_END};

static void grayscale_apply(const void *config, struct invar_rng *rng,
                            const struct invar_image *in, struct invar_image *out)
{
    (void)config, (void)rng;
    int64_t c = in->c, hw = in->h * in->w;
    out->c = c, out->h = in->h, out->w = in->w;
    for (int64_t i = 0; i < hw; i++) {
        float g;
        if (c == 3) {
            g = 0.299f * in->data[i] + 0.587f * in->data[hw + i] + 0.114f * in->data[2 * hw + i];
        } else {
            float s = 0.0f;
            for (int64_t k = 0; k < c; k++)
                s += in->data[k * hw + i];
            g = s / (float)c;
        }
        g = c == 1 ? in->data[i] : warp_clamp01(g);
        for (int64_t k = 0; k < c; k++)
            out->data[k * hw + i] = g;
    }
}

static const struct invar_augment_ops grayscale_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = grayscale_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "grayscale", "1.0.0",
                    "colour: luma into every channel (keeps the channel count)",
                    struct grayscale_config, grayscale_params, grayscale_ops)
