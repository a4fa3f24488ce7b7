/* invar preview EXP.yaml --out grid.png [-n N] [KEY=VALUE...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

int cmd_preview(const struct cli_globals *g, int argc, char **argv)
{
    const char *exp = NULL, *out = NULL, *count = "8";
    const char *overrides[CLI_MAX_ARGS];
    size_t n_over = 0;
    for (int i = 0; i < argc; i++) {
        const char **opt = !strcmp(argv[i], "--out") || !strcmp(argv[i], "-o") ? &out
                           : !strcmp(argv[i], "-n")                            ? &count
                                                                               : NULL;
        if (opt && i + 1 < argc)
            *opt = argv[++i];
        else if (argv[i][0] != '-' && strchr(argv[i], '=') && n_over < CLI_MAX_ARGS)
            overrides[n_over++] = argv[i];
        else if (argv[i][0] != '-' && !exp)
            exp = argv[i];
        else {
            cli_error("preview: unexpected argument `%s` (see `invar preview --help`)", argv[i]);
            return 2;
        }
    }
    char *end;
    long long n = strtoll(count, &end, 10);
    if (!exp || !out || *end || n < 1 || n > 1000) {
        cli_error("preview: usage: invar preview EXP.yaml --out grid.png [-n N] (1 <= N <= 1000)");
        return 2;
    }
    struct invar_registry *reg = cli_registry_open(g, 0);
    if (!reg)
        return 1;
    struct cli_experiment x;
    struct cli_job j;
    struct invar_dataset *d = NULL;
    struct invar_error err = {{0}};
    int rc = 1;
    if (cli_experiment_load(&x, exp, NULL, overrides, n_over, reg))
        goto out;
    if (cli_job_init(&j, &x))
        goto unload;
    /* Only the first n samples are shown, so only they are read. */
    int64_t limit = x.limit > 0 && x.limit < n ? x.limit : n;
    if (invar_dataset_open(&d, &j.job.dataset, "train", limit, &err) != INVAR_OK ||
        invar_preview_write(out, d, j.job.views, j.job.n_views, j.job.seed, n, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto unload;
    }
    fprintf(stderr, "%s: %lld samples, original + %d views each\n", out,
            (long long)invar_dataset_count(d), j.job.n_views);
    rc = 0;
unload:
    invar_dataset_destroy(d);
    cli_experiment_unload(&x);
out:
    invar_registry_destroy(reg);
    return rc;
}
