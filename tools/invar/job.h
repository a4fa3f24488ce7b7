/* Mapping a loaded experiment onto the trainer's struct invar_job (run, eval, embed, preview). */
#ifndef INVAR_CLI_JOB_H
#define INVAR_CLI_JOB_H

#include <invar/data.h>
#include <invar/train.h>

#include "cli.h"

struct cli_job {
    struct invar_job job; /* points into the experiment: valid while it is loaded */
};

/* Fills j from x (which must outlive j); prints and returns nonzero when the experiment does
 * not fit the trainer's limits. */
int cli_job_init(struct cli_job *j, const struct cli_experiment *x);

#endif
