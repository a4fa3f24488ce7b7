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
 * The groups must be finalized and must outlive the optimizer; a step allocates nothing.
 *
 * Updates, per tensor, with g its gradient and wd = 0 for NO_DECAY tensors:
 *   SGD    g += wd w;  v = momentum v + g;  w -= lr (nesterov ? g + momentum v : v)
 *          (PyTorch's torch.optim.SGD with dampening 0; no v when momentum is 0)
 *   LARS   trust = lars_eta ||w|| / (||g|| + wd ||w||)  (1 if a norm is 0 or NO_DECAY)
 *          v = momentum v + lr trust (g + wd w);  w -= v
 *          (You et al. 2017; lr inside the momentum as in the SimCLR and BYOL code)
 *   AdamW  w *= 1 - lr wd;  m, v moments of g;  t = steps taken + 1
 *          w -= lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 * nesterov is for SGD only; other kinds refuse it.
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
    int64_t warmup_steps; /* linear warm-up: lr (step + 1) / warmup_steps for the first
                             warmup_steps steps (PyTorch-style: step 0 already gets
                             lr / warmup_steps, the last warm-up step gets lr), then the
                             schedule over the remaining steps */
    int64_t step_every;   /* STEP: multiply by step_gamma every step_every steps, counted
                             from the end of warm-up */
    double step_gamma;
    double final_lr;      /* COSINE: from lr at the end of warm-up to final_lr at the last
                             step (total_steps - 1), half a cosine; stays there after */
    double clip_norm;     /* > 0: a step whose gradients' global L2 norm n (over every
                             group) exceeds it first scales them by clip_norm / (n + 1e-6),
                             as PyTorch's clip_grad_norm_; 0 = never */
};

struct invar_optim;

INVAR_API enum invar_status invar_optim_create(struct invar_optim **out,
                                               const struct invar_optim_config *cfg,
                                               struct invar_params *const *groups,
                                               int n_groups, struct invar_error *err);
INVAR_API void invar_optim_destroy(struct invar_optim *o);
/* One update of every group with learning rate lr (from invar_optim_lr), tensors flagged
 * INVAR_P_FIXED_LR with the config's lr instead; reads the groups' gradients (scaling them
 * first under clip_norm), writes their weights. Allocates nothing. */
INVAR_API void invar_optim_step(struct invar_optim *o, double lr);
/* The global L2 norm of the groups' gradients, buffers aside (summed in double). */
INVAR_API double invar_optim_grad_norm(const struct invar_optim *o);
/* The learning rate at 0-based step of total_steps under cfg's warm-up and schedule. */
INVAR_API double invar_optim_lr(const struct invar_optim_config *cfg, int64_t step,
                                int64_t total_steps);
/* The optimizer's state as one flat block of state_numel floats (NULL when there is none:
 * SGD or LARS without momentum); a checkpoint saves it and steps_taken, a resume creates an
 * optimizer over the same groups, copies the floats back and sets the step count. Layout, per
 * group in order: SGD/LARS a momentum buffer parallel to the weights block; AdamW the first
 * moments, then the second moments, each parallel to the weights block. */
INVAR_API size_t invar_optim_state_numel(const struct invar_optim *o);
INVAR_API float *invar_optim_state(struct invar_optim *o);
INVAR_API int64_t invar_optim_steps_taken(const struct invar_optim *o);
INVAR_API void invar_optim_set_steps_taken(struct invar_optim *o, int64_t steps);

#ifdef __cplusplus
}
#endif
#endif
