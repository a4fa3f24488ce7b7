/* struct cli_experiment -> struct invar_job. */
#include <string.h>

#include "job.h"

static struct invar_plugin_use use_of(const struct cli_use *u)
{
    return (struct invar_plugin_use){u->plugin, u->config, u->p};
}

int cli_job_init(struct cli_job *j, const struct cli_experiment *x)
{
    memset(j, 0, sizeof *j);
    if (x->n_views < 1 || x->n_views > INVAR_MAX_VIEWS) {
        cli_error("%s: %d views; the trainer takes 1 to %d", x->name, x->n_views, INVAR_MAX_VIEWS);
        return 1;
    }
    for (int v = 0; v < x->n_views; v++) {
        if (x->n_augs[v] > INVAR_MAX_AUGMENTS) {
            cli_error("%s: view %d has %d augmentations; at most %d", x->name, v, x->n_augs[v],
                      INVAR_MAX_AUGMENTS);
            return 1;
        }
        for (int i = 0; i < x->n_augs[v]; i++)
            j->uses[v][i] = use_of(&x->augs[v][i]);
        j->views[v] = (struct invar_view){j->uses[v], x->n_augs[v]};
    }
    struct invar_job *job = &j->job;
    job->seed = (uint64_t)x->seed;
    job->dataset = use_of(&x->data);
    job->limit = x->limit;
    job->test_limit = 0; /* evaluation always uses the whole test split */
    job->normalize = x->normalize;
    job->views = j->views;
    job->n_views = x->n_views;
    job->encoder = use_of(&x->encoder);
    job->objective = use_of(&x->objective);
    cli_experiment_optim(x, &job->optim);
    job->warmup_epochs = x->warmup_epochs;
    job->step_epochs = x->step_epochs;
    job->epochs = x->epochs;
    job->batch_size = x->batch_size;
    job->threads = (int)x->threads;
    job->checkpoint_every = x->checkpoint_every;
    job->eval = (struct invar_eval_config){.knn_k = x->knn_k,
                                           .knn_t = x->knn_t,
                                           .knn_every = x->knn_every,
                                           .linear_epochs = x->linear_epochs,
                                           .linear_lr = x->linear_lr,
                                           .linear_batch = x->linear_batch,
                                           .linear_wd = x->linear_wd};
    return 0;
}
