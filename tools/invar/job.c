/* A loaded experiment -> struct invar_job. The experiment's plugin uses and views are the
 * trainer's types, so the job points at them instead of copying. */
#include <string.h>

#include <invar/config.h>

#include "job.h"

int cli_job_init(struct cli_job *j, const struct cli_experiment *x)
{
    memset(j, 0, sizeof *j);
    const struct invar_experiment *e = x->handle;
    size_t nv = invar_experiment_n_views(e);
    if (nv < 1 || nv > INVAR_MAX_VIEWS) {
        cli_error("%s: %zu views; the trainer takes 1 to %d", x->name, nv, INVAR_MAX_VIEWS);
        return 1;
    }
    for (size_t v = 0; v < nv; v++) {
        const struct invar_view *view = invar_experiment_view(e, v);
        /* The job takes the views as one array: the experiment keeps them so. */
        INVAR_ASSERT(view == invar_experiment_view(e, 0) + v);
        if (view->n_augs > INVAR_MAX_AUGMENTS) {
            cli_error("%s: view %zu has %zu augmentations; at most %d", x->name, v, view->n_augs,
                      INVAR_MAX_AUGMENTS);
            return 1;
        }
    }
    const struct invar_data_section *d = invar_experiment_data(e);
    const struct invar_train_section *t = invar_experiment_train(e);
    const struct invar_optim_section *o = invar_experiment_optim(e);
    const struct invar_eval_section *ev = invar_experiment_eval(e);
    struct invar_job *job = &j->job;
    job->seed = (uint64_t)invar_experiment_seed(e);
    job->dataset = d->use;
    job->limit = d->limit;
    job->test_limit = 0; /* evaluation always uses the whole test split */
    job->holdout = d->holdout;
    job->normalize = d->normalize;
    job->views = invar_experiment_view(e, 0);
    job->n_views = (int)nv;
    job->encoder = *invar_experiment_encoder(e);
    job->objective = *invar_experiment_objective(e);
    /* Steps per epoch are known only to the trainer: it derives warmup_steps and step_every
     * from the epochs below. */
    invar_experiment_optim_config(e, 1, &job->optim);
    job->warmup_epochs = (double)o->warmup_epochs;
    job->step_epochs = (double)o->step_epochs;
    job->epochs = t->epochs;
    job->batch_size = t->batch_size;
    job->threads = (int)t->threads;
    job->checkpoint_every = t->checkpoint_every;
    job->log_every = t->log_every;
    job->eval = (struct invar_eval_config){.knn_k = ev->knn.k,
                                           .knn_t = ev->knn.t,
                                           .knn_every = ev->knn.every,
                                           .linear_epochs = ev->linear.epochs,
                                           .linear_lr = ev->linear.lr,
                                           .linear_batch = ev->linear.batch_size,
                                           .linear_wd = ev->linear.weight_decay,
                                           .knn_features = ev->knn.features,
                                           .linear_features = ev->linear.features,
                                           .knn_size = ev->knn.size,
                                           .linear_size = ev->linear.size,
                                           .knn_precise_bn = ev->knn.precise_bn,
                                           .linear_precise_bn = ev->linear.precise_bn};
    return 0;
}
