/* hflip — mirror symmetry: reverse every row (left <-> right). The framework's `p` decides
 * whether it happens, so apply always flips. */
#include <invar/plugin.h>

struct hflip_config {
    int unused;
};

static const struct invar_param_spec hflip_params[] = {INVAR_PARAM_END};

static void hflip_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                        struct invar_image *out)
{
    (void)config, (void)rng;
    int64_t rows = in->c * in->h, w = in->w;
    out->c = in->c, out->h = in->h, out->w = w;
    for (int64_t r = 0; r < rows; r++) {
        const float *src = in->data + r * w;
        float *dst = out->data + r * w;
        for (int64_t x = 0; x < w; x++)
            dst[x] = src[w - 1 - x];
    }
}

static const struct invar_augment_ops hflip_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = hflip_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "hflip", "1.0.0", "common: horizontal flip",
                    struct hflip_config, hflip_params, hflip_ops)
