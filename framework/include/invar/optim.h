/* invar/optim.h — optimizers and learning-rate schedules over an invar_params block.
 *
 *     struct invar_optim_config oc = { .kind = INVAR_OPTIM_SGD, .lr = 0.06, .momentum = 0.9,
 *                                      .weight_decay = 5e-4, .schedule = INVAR_SCHED_COSINE,
 *                                      .warmup_steps = 100 };
 *     struct invar_params *groups[] = { encoder_params, head_params };
 *     struct invar_optim *opt;
 *     invar_optim_create(&opt, &oc, groups, 2, &err);
 *     for (step = 0; step < total; step++) {
 *         ... backward ...
 *         double lr = invar_optim_lr(&oc, step, total);
 *         invar_optim_step(opt, lr);
 *     }
 *
 * The optimizer keeps its state (momentum buffers, Adam moments) in flat blocks parallel to
 * each params block, so a step is a flat loop per tensor; tensors flagged INVAR_P_NO_DECAY get
 * no weight decay (and, under LARS, no trust-ratio adaptation). Buffers are never touched.
 */
#ifndef INVAR_OPTIM_H
#define INVAR_OPTIM_H

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

enum invar_optim_kind { INVAR_OPTIM_SGD, INVAR_OPTIM_LARS, INVAR_OPTIM_ADAMW };
enum invar_schedule { INVAR_SCHED_CONSTANT, INVAR_SCHED_STEP, INVAR_SCHED_COSINE };

struct invar_optim_config {
    enum invar_optim_kind kind;
    double lr;            /* base learning rate */
    double momentum;      /* SGD/LARS */
    int nesterov;         /* SGD */
    double weight_decay;  /* SGD/LARS: L2 added to the gradient; AdamW: decoupled */
    double lars_eta;      /* LARS trust coefficient */
    double beta1, beta2, eps; /* AdamW */
    enum invar_schedule schedule;
    int64_t warmup_steps; /* linear warm-up from 0 to lr over these steps, then the schedule */
    int64_t step_every;   /* STEP: multiply by step_gamma every step_every steps */
    double step_gamma;
    double final_lr;      /* COSINE: value reached at the last step */
};

struct invar_optim;

INVAR_API enum invar_status invar_optim_create(struct invar_optim **out,
                                               const struct invar_optim_config *cfg,
                                               struct invar_params *const *groups,
                                               int n_groups, struct invar_error *err);
INVAR_API void invar_optim_destroy(struct invar_optim *o);
/* One update of every group with learning rate lr (from invar_optim_lr). */
INVAR_API void invar_optim_step(struct invar_optim *o, double lr);
/* The learning rate at 0-based step of total_steps under cfg's warm-up and schedule. */
INVAR_API double invar_optim_lr(const struct invar_optim_config *cfg, int64_t step,
                                int64_t total_steps);
/* The optimizer's state as one flat block (for checkpoints): floats, then the step count. */
INVAR_API size_t invar_optim_state_numel(const struct invar_optim *o);
INVAR_API float *invar_optim_state(struct invar_optim *o);
INVAR_API int64_t invar_optim_steps_taken(const struct invar_optim *o);
INVAR_API void invar_optim_set_steps_taken(struct invar_optim *o, int64_t steps);

#ifdef __cplusplus
}
#endif
#endif
