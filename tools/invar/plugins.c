/* invar plugins [describe NAME] */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int plugins_list(const struct cli_globals *g, int argc, char **argv);
static int plugins_describe(const struct cli_globals *g, int argc, char **argv);

static const struct cli_command plugins_commands[] = {
    {"list", plugins_list, "list every plugin found (the default)", "invar plugins [list]"},
    {"describe", plugins_describe, "one plugin's parameters: key, type, default, range, doc",
     "invar plugins describe NAME   (or KIND/NAME when two kinds share a name)"},
    {NULL, NULL, NULL, NULL},
};

static int plugins_list(const struct cli_globals *g, int argc, char **argv)
{
    (void)argv;
    if (argc > 0) {
        cli_error("plugins: unexpected argument `%s`", argv[0]);
        return 2;
    }
    struct invar_registry *reg = cli_registry_open(g, 1);
    if (!reg)
        return 1;
    printf("%-10s %-16s %-9s %s\n", "kind", "name", "version", "file");
    /* Grouped by kind, in load order within a kind. */
    for (uint32_t kind = INVAR_KIND_DATASET; kind <= INVAR_KIND_OBJECTIVE; kind++)
        for (size_t i = 0; i < invar_registry_count(reg); i++) {
            const struct invar_registry_entry *e = invar_registry_at(reg, i);
            if (e->desc->kind == kind)
                printf("%-10s %-16s %-9s %s\n", invar_plugin_kind_name(kind), e->desc->name,
                       e->desc->version, e->path);
        }
    for (size_t i = 0; i < invar_registry_shadowed_count(reg); i++) {
        const struct invar_registry_shadowed *s = invar_registry_shadowed_at(reg, i);
        printf("%-10s %-16s %-9s %s (shadowed by %s)\n", invar_plugin_kind_name(s->kind), s->name,
               s->version, s->path, s->by_path);
    }
    invar_registry_destroy(reg);
    return 0;
}

static int plugins_describe(const struct cli_globals *g, int argc, char **argv)
{
    if (argc != 1) {
        cli_error("plugins describe: give one plugin name (see `invar plugins describe --help`)");
        return 2;
    }
    struct invar_registry *reg = cli_registry_open(g, 0);
    if (!reg)
        return 1;
    const char *name = argv[0], *slash = strchr(name, '/');
    uint32_t kind = 0;
    if (slash) {
        char k[32];
        snprintf(k, sizeof k, "%.*s", (int)(slash - name), name);
        kind = invar_plugin_kind_parse(k);
        if (!kind) {
            cli_error("plugins describe: unknown kind `%s`", k);
            invar_registry_destroy(reg);
            return 1;
        }
        name = slash + 1;
    }
    const struct invar_registry_entry *e = invar_registry_find(reg, kind, name);
    int rc = 0;
    if (!e) {
        const char *near = invar_registry_suggest(reg, kind, name);
        if (near)
            cli_error("no plugin `%s`, did you mean `%s`?", name, near);
        else
            cli_error("no plugin `%s` (see `invar plugins`)", name);
        rc = 1;
    } else {
        printf("file: %s\n", e->path);
        if (invar_plugin_describe(e->desc, stdout) != INVAR_OK) {
            cli_error("%s: cannot describe", e->path);
            rc = 1;
        }
    }
    invar_registry_destroy(reg);
    return rc;
}

int cmd_plugins(const struct cli_globals *g, int argc, char **argv)
{
    if (argc == 0)
        return plugins_list(g, 0, argv);
    return cli_dispatch(plugins_commands, "plugins subcommand", g, argc, argv);
}
