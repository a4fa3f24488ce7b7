/* Loading an experiment into struct cli_experiment: with job.c, the only files of the command
 * that include invar/config.h. */
#include <string.h>

#include <invar/config.h>

#include "cli.h"

int cli_experiment_load(struct cli_experiment *x, const char *path, const char *text,
                        const char *const *overrides, size_t n_overrides,
                        const struct invar_registry *reg)
{
    memset(x, 0, sizeof *x);
    struct invar_experiment *e = NULL;
    struct invar_error err = {{0}};
    enum invar_status st =
        text ? invar_experiment_load_string(&e, path, text, overrides, n_overrides, reg, &err)
             : invar_experiment_load(&e, path, overrides, n_overrides, reg, &err);
    if (st != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    x->handle = e;
    x->name = invar_experiment_name(e);
    x->canonical = invar_experiment_canonical(e);
    x->hash = invar_experiment_hash(e);
    x->seed = invar_experiment_seed(e);
    x->limit = invar_experiment_data(e)->limit;
    x->knn_k = invar_experiment_eval(e)->knn.k;
    x->knn_t = invar_experiment_eval(e)->knn.t;
    x->n_params = invar_experiment_n_params(e);
    return 0;
}

void cli_experiment_unload(struct cli_experiment *x)
{
    invar_experiment_destroy(x->handle);
    memset(x, 0, sizeof *x);
}

void cli_experiment_param(const struct cli_experiment *x, size_t i, const char **key,
                          const char **value)
{
    invar_experiment_param(x->handle, i, key, value);
}
