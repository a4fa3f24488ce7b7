/* Loads one plugin from the build tree for a unit test and gives it a config struct.
 *
 *     struct ph_plugin p;
 *     ph_open(&p, "augment", "rotate");            // build/plugins/augment/rotate.so
 *     ph_set(&p, "degrees", "30");                 // as if from YAML
 *     p.desc->ops.augment->apply(p.config, &rng, &in, &out);
 *     ph_close(&p);
 *
 * Defaults and values are written into the config struct through the plugin's own parameter
 * table, by type, with a deliberately small parser: the framework's real one (with range checks
 * and error messages) has suites of its own. */
#ifndef INVAR_TESTS_PLUGIN_HARNESS_H
#define INVAR_TESTS_PLUGIN_HARNESS_H

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/plugin.h"

struct ph_plugin {
    void *so;
    const struct invar_plugin *desc;
    void *config;
};

static inline void ph_write(const struct invar_param_spec *s, void *config, const char *text)
{
    char *base = (char *)config + s->offset;
    switch (s->type) {
    case INVAR_TYPE_BOOL:
        *(int *)base = strcmp(text, "true") == 0 || strcmp(text, "1") == 0;
        break;
    case INVAR_TYPE_INT:
        *(int64_t *)base = strtoll(text, NULL, 10);
        break;
    case INVAR_TYPE_FLOAT:
        *(double *)base = strtod(text, NULL);
        break;
    case INVAR_TYPE_STRING:
        snprintf(base, INVAR_STR_MAX, "%s", text);
        break;
    case INVAR_TYPE_ENUM: {
        int idx = 0;
        const char *a = s->allowed;
        size_t n = strlen(text);
        while (a && *a) {
            const char *bar = strchr(a, '|');
            size_t len = bar ? (size_t)(bar - a) : strlen(a);
            if (len == n && strncmp(a, text, n) == 0)
                break;
            idx++;
            a = bar ? bar + 1 : a + len;
        }
        cr_assert(a && *a, "ph: %s is not one of %s", text, s->allowed);
        *(int *)base = idx;
        break;
    }
    case INVAR_TYPE_RANGE: {
        double *r = (double *)base;
        const char *p = text;
        while (*p == '[' || *p == ' ')
            p++;
        char *end;
        r[0] = strtod(p, &end);
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
        r[1] = strtod(p, NULL);
        break;
    }
    }
}

static inline void ph_set(struct ph_plugin *p, const char *key, const char *text)
{
    for (const struct invar_param_spec *s = p->desc->params; s && s->key; s++)
        if (strcmp(s->key, key) == 0) {
            ph_write(s, p->config, text);
            return;
        }
    cr_assert_fail("ph: plugin %s has no parameter %s", p->desc->name, key);
}

static inline void ph_open(struct ph_plugin *p, const char *kind_dir, const char *name)
{
    const char *root = getenv("INVAR_BUILD_ROOT");
    cr_assert_not_null(root, "INVAR_BUILD_ROOT is not set (run through meson test)");
    char path[4096];
    snprintf(path, sizeof path, "%s/plugins/%s/%s.so", root, kind_dir, name);
    p->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(p->so, "dlopen %s: %s", path, dlerror());
    invar_plugin_entry_fn entry;
    void *sym = dlsym(p->so, INVAR_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry); /* POSIX: dlsym's result is callable */
    cr_assert_not_null(entry, "%s has no entry symbol", path);
    const struct invar_plugin *const *table = entry();
    p->desc = NULL;
    for (int i = 0; table[i]; i++)
        if (strcmp(table[i]->name, name) == 0)
            p->desc = table[i];
    cr_assert_not_null(p->desc, "%s does not define plugin %s", path, name);
    cr_assert_eq(p->desc->abi_version, INVAR_ABI_VERSION);
    p->config = calloc(1, p->desc->config_size ? p->desc->config_size : 1);
    for (const struct invar_param_spec *s = p->desc->params; s && s->key; s++)
        if (s->def)
            ph_write(s, p->config, s->def);
}

static inline void ph_close(struct ph_plugin *p)
{
    free(p->config);
    if (p->so)
        dlclose(p->so);
    memset(p, 0, sizeof *p);
}

#endif
