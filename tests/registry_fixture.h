/* A suite's plugin registry, scanned from the build tree once per suite, and plugin uses with
 * their defaults and chosen values, as an experiment would give them:
 *
 *     TestSuite(encoders, .init = rf_init, .fini = rf_fini);
 *     struct invar_plugin_use use = rf_use(INVAR_KIND_ENCODER, "mlp",
 *                                          (const char *[]){"dim", "3", NULL});
 *
 * Values go through the framework's own parameter parser (invar_param_set); the configs live
 * until the suite ends. */
#ifndef INVAR_TESTS_REGISTRY_FIXTURE_H
#define INVAR_TESTS_REGISTRY_FIXTURE_H

#include <criterion/criterion.h>

#include "invar/registry.h"

#define RF_MAX_CONFIGS 32

static struct invar_registry *rf_reg;
static void *rf_configs[RF_MAX_CONFIGS];
static int rf_n_configs;

static void rf_init(void)
{
    struct invar_error err = {0};
    cr_assert_eq(invar_registry_create(&rf_reg), INVAR_OK);
    cr_assert_eq(invar_registry_scan(rf_reg, NULL, &err), INVAR_OK, "%s", err.msg);
}

static void rf_fini(void)
{
    for (int i = 0; i < rf_n_configs; i++)
        invar_plugin_config_destroy(rf_configs[i]);
    rf_n_configs = 0;
    invar_registry_destroy(rf_reg);
    rf_reg = NULL;
}

/* Plugin NAME of KIND with its defaults and the given KEY, VALUE pairs (NULL-terminated). */
static inline struct invar_plugin_use rf_use(uint32_t kind, const char *name,
                                             const char *const *kv)
{
    const struct invar_registry_entry *e = invar_registry_find(rf_reg, kind, name);
    cr_assert_not_null(e, "plugin %s is not in the build tree", name);
    struct invar_error err = {0};
    void *cfg = NULL;
    cr_assert_eq(invar_plugin_config_create(e->desc, &cfg, &err), INVAR_OK, "%s", err.msg);
    cr_assert_lt(rf_n_configs, RF_MAX_CONFIGS);
    rf_configs[rf_n_configs++] = cfg;
    for (; kv && kv[0]; kv += 2) {
        const struct invar_param_spec *s = invar_param_find(e->desc->params, kv[0]);
        cr_assert_not_null(s, "%s has no parameter %s", name, kv[0]);
        cr_assert_eq(invar_param_set(s, cfg, kv[1], 0, &err), INVAR_OK, "%s", err.msg);
    }
    return (struct invar_plugin_use){e->desc, cfg, 1};
}

#endif
