/* vflip — vertical mirror symmetry: reverse the row order (top <-> bottom). */
#include <string.h>

#include <invar/plugin.h>

struct vflip_config {
    int unused;
};

static const struct invar_param_spec vflip_params[] = {INVAR_PARAM_END};

static void vflip_apply(const void *config, struct invar_rng *rng, const struct invar_image *in,
                        struct invar_image *out)
{
    (void)config, (void)rng;
    int64_t c = in->c, h = in->h, w = in->w;
    out->c = c, out->h = h, out->w = w;
    for (int64_t k = 0; k < c; k++)
        for (int64_t y = 0; y < h; y++)
            memcpy(out->data + (k * h + y) * w, in->data + (k * h + h - 1 - y) * w,
                   (size_t)w * sizeof(float));
}

static const struct invar_augment_ops vflip_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = vflip_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "vflip", "1.0.0", "common: vertical flip",
                    struct vflip_config, vflip_params, vflip_ops)
