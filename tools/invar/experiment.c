/* Loading an experiment into struct cli_experiment: the one file of the command that includes
 * invar/config.h. The other files see a flat struct of what a run needs (plugins, their
 * configs, the train and eval numbers), so a change in the experiment API touches this file
 * only. */
#include <string.h>

#include <invar/config.h>

#include "cli.h"

static struct cli_use use_of(const struct invar_plugin_use *u)
{
    return (struct cli_use){u->plugin, u->config, u->p};
}

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
    const struct invar_data_section *d = invar_experiment_data(e);
    x->data = use_of(&d->use);
    x->limit = d->limit;
    x->normalize = d->normalize;
    size_t nv = invar_experiment_n_views(e);
    if (nv > sizeof x->n_augs / sizeof x->n_augs[0]) {
        cli_error("%s: %zu views; at most %zu", path, nv, sizeof x->n_augs / sizeof x->n_augs[0]);
        cli_experiment_unload(x);
        return 1;
    }
    x->n_views = (int)nv;
    for (size_t v = 0; v < nv; v++) {
        const struct invar_view *view = invar_experiment_view(e, v);
        if (view->n_augs > sizeof x->augs[0] / sizeof x->augs[0][0]) {
            cli_error("%s: view %zu has %zu augmentations; at most %zu", path, v, view->n_augs,
                      sizeof x->augs[0] / sizeof x->augs[0][0]);
            cli_experiment_unload(x);
            return 1;
        }
        x->n_augs[v] = (int)view->n_augs;
        for (size_t i = 0; i < view->n_augs; i++)
            x->augs[v][i] = use_of(&view->augs[i]);
    }
    x->encoder = use_of(invar_experiment_encoder(e));
    x->objective = use_of(invar_experiment_objective(e));
    const struct invar_train_section *t = invar_experiment_train(e);
    x->epochs = t->epochs;
    x->batch_size = t->batch_size;
    x->threads = t->threads;
    x->checkpoint_every = t->checkpoint_every;
    const struct invar_optim_section *o = invar_experiment_optim(e);
    x->warmup_epochs = (double)o->warmup_epochs;
    x->step_epochs = (double)o->step_epochs;
    const struct invar_eval_section *ev = invar_experiment_eval(e);
    x->knn_k = ev->knn.k;
    x->knn_t = ev->knn.t;
    x->knn_every = ev->knn.every;
    x->linear_epochs = ev->linear.epochs;
    x->linear_lr = ev->linear.lr;
    x->linear_batch = ev->linear.batch_size;
    x->linear_wd = ev->linear.weight_decay;
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

void cli_experiment_optim(const struct cli_experiment *x, void *optim_config)
{
    /* Steps are derived by the trainer from warmup_epochs/step_epochs; 1 keeps them in epochs
     * here and the trainer overwrites them. */
    invar_experiment_optim_config(x->handle, 1, optim_config);
}
