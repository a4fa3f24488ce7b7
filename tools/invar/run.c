/* invar run EXP.yaml [KEY=VALUE...] [--resume RUN] [--checkpoint-dir DIR] [--sweep NAME]
 *     [--sweep-axes K1,K2]   (set by `invar sweep`: logged as the param sweep.axes)
 *
 * One run's lifecycle: parse -> resolve plugins -> job -> run row (config, hash, seed,
 * command) -> params (flattened config + evaluation protocol) -> train (metrics into the
 * store, progress on stderr) -> finish as finished / failed / diverged / killed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t stop_signal;

/* The first signal stops training at the next step and the run is recorded as killed; a
 * second one (evaluation can take minutes) ends the process at once, and the store marks the
 * row killed the next time it is opened. */
static void on_signal(int sig)
{
    if (stop_flag) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    stop_flag = 1;
}

struct run_ctx {
    struct invar_store *db;
    int64_t run_id;
    int metric_failed;
    int tty, color;
    double last_draw_s;
};

static void on_metric(void *user, const char *key, int64_t step, int64_t epoch, double value)
{
    struct run_ctx *r = user;
    struct invar_error err = {{0}};
    if (invar_store_log_metric(r->db, r->run_id, key, step, epoch, value, &err) != INVAR_OK &&
        !r->metric_failed++)
        cli_warn("%s", err.msg);
}

static void format_eta(double s, char *buf, size_t n)
{
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

/* A `\r`-redrawn bar on a terminal; one plain line per epoch (and per evaluation) otherwise. */
static void on_progress(void *user, const struct invar_progress *p)
{
    struct run_ctx *r = user;
    char eta[32];
    format_eta(p->eta_s, eta, sizeof eta);
    if (strcmp(p->phase, "train") != 0) {
        if (r->tty)
            fprintf(stderr, "\r\033[K");
        fprintf(stderr, "epoch %lld/%lld %s evaluation...%s", (long long)p->epoch + 1,
                (long long)p->epochs, p->phase, r->tty ? "" : "\n");
        fflush(stderr);
        return;
    }
    if (!r->tty) {
        if (p->step == p->steps)
            fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f %.0f img/s ETA %s\n",
                    (long long)p->epoch + 1, (long long)p->epochs, (long long)p->step,
                    (long long)p->steps, p->loss, p->img_per_s, eta);
        return;
    }
    /* Ten redraws a second are plenty; the last step of an epoch always draws. */
    if (p->step != p->steps && p->elapsed_s - r->last_draw_s < 0.1)
        return;
    r->last_draw_s = p->elapsed_s;
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int fill = p->steps > 0 ? (int)(WIDTH * p->step / p->steps) : 0;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    fprintf(stderr, "\r\033[Kepoch %lld/%lld %s[%s]%s %lld/%lld loss %.4f %.0f img/s ETA %s",
            (long long)p->epoch + 1, (long long)p->epochs, r->color ? "\033[32m" : "", bar,
            r->color ? "\033[0m" : "", (long long)p->step, (long long)p->steps, p->loss,
            p->img_per_s, eta);
    if (p->step == p->steps)
        fputc('\n', stderr);
    fflush(stderr);
}

/* The evaluation protocol beside the results (DESIGN §6). */
static int log_params(struct invar_store *db, int64_t run_id, const struct cli_experiment *x,
                      const char *sweep_axes)
{
    size_t n = x->n_params;
    struct invar_store_param *ps = calloc(n + 5, sizeof *ps);
    if (!ps) {
        cli_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        cli_experiment_param(x, i, &ps[i].key, &ps[i].value);
    char k[32], t[64];
    snprintf(k, sizeof k, "%lld", (long long)x->knn_k);
    snprintf(t, sizeof t, "%.17g", x->knn_t);
    /* The resolved config already holds eval.knn.k and eval.knn.t; repeating them replaces
     * the same rows, and the features row says what was classified. */
    ps[n++] = (struct invar_store_param){"eval.knn.k", k};
    ps[n++] = (struct invar_store_param){"eval.knn.t", t};
    ps[n++] = (struct invar_store_param){
        "eval.features", "online encoder, un-augmented normalised images; kNN on "
                         "eval.knn.features, linear probe on eval.linear.features (head: the "
                         "encoder's output, backbone: the representation under its head)"};
    ps[n++] = (struct invar_store_param){"eval.split", "train (memory) -> test"};
    /* What `invar report` groups this sweep's runs by (set by `invar sweep`). */
    if (sweep_axes)
        ps[n++] = (struct invar_store_param){"sweep.axes", sweep_axes};
    struct invar_error err = {{0}};
    int rc = 0;
    if (invar_store_log_params(db, run_id, ps, n, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        rc = 1;
    }
    free(ps);
    return rc;
}

static void install_handlers(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

struct run_args {
    const char *exp, *resume, *ckpt_dir, *sweep, *sweep_axes;
    const char *overrides[CLI_MAX_ARGS];
    size_t n_overrides;
};

static int parse_args(struct run_args *a, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **opt = !strcmp(s, "--resume")           ? &a->resume
                           : !strcmp(s, "--checkpoint-dir") ? &a->ckpt_dir
                           : !strcmp(s, "--sweep")          ? &a->sweep
                           : !strcmp(s, "--sweep-axes")     ? &a->sweep_axes
                                                            : NULL;
        if (opt) {
            if (i + 1 == argc) {
                cli_error("run: %s needs a value", s);
                return 1;
            }
            *opt = argv[++i];
        } else if (s[0] == '-') {
            cli_error("run: unknown option `%s` (see `invar run --help`)", s);
            return 1;
        } else if (strchr(s, '=')) {
            if (a->n_overrides == CLI_MAX_ARGS) {
                cli_error("run: more than %d overrides", CLI_MAX_ARGS);
                return 1;
            }
            a->overrides[a->n_overrides++] = s;
        } else if (!a->exp) {
            a->exp = s;
        } else {
            cli_error("run: unexpected argument `%s` (overrides are KEY=VALUE)", s);
            return 1;
        }
    }
    if (!a->exp == !a->resume) {
        cli_error("run: give an experiment file or --resume RUN (see `invar run --help`)");
        return 1;
    }
    if (a->resume && a->n_overrides) {
        cli_error("run: --resume continues the stored config; overrides are not allowed");
        return 1;
    }
    return 0;
}

/* Creates the run row, or takes over the stored one for --resume; fills x from the config. */
static int open_run(const struct cli_globals *g, const struct run_args *a,
                    struct invar_registry *reg, struct run_ctx *r, struct cli_experiment *x,
                    char *ckpt, size_t ckpt_n, int *resume)
{
    struct invar_error err = {{0}};
    struct invar_store_run row = {0};
    int rc = 1;
    if (a->resume) {
        if (!(r->db = cli_store_open(g)))
            goto done;
        if (invar_store_find_run(r->db, a->resume, &r->run_id, &err) != INVAR_OK ||
            invar_store_get_run(r->db, r->run_id, &row, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
        char name[128];
        snprintf(name, sizeof name, "run %lld (%s)", (long long)r->run_id, row.uuid);
        if (cli_experiment_load(x, name, row.config, NULL, 0, reg))
            goto done;
        if (invar_store_resume_run(r->db, r->run_id, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
        if (row.checkpoint)
            snprintf(ckpt, ckpt_n, "%s", row.checkpoint);
        else if (cli_checkpoint_path(g, a->ckpt_dir, row.uuid, ckpt, ckpt_n))
            goto done;
        /* A run killed before its first checkpoint starts again: same seed, same numbers. */
        *resume = access(ckpt, R_OK) == 0;
        if (!*resume)
            cli_warn("%s: no checkpoint yet, run %lld starts from epoch 1", ckpt,
                     (long long)r->run_id);
        rc = 0;
        goto done;
    }
    /* A bad experiment leaves no trace: the database is opened only once it has parsed. */
    if (cli_experiment_load(x, a->exp, NULL, a->overrides, a->n_overrides, reg) ||
        !(r->db = cli_store_open(g)))
        goto done;
    struct invar_store_new_run nr = {.experiment = x->name,
                                     .sweep = a->sweep,
                                     .config = x->canonical,
                                     .config_hash = x->hash,
                                     .seed = x->seed,
                                     .command = g->command_line};
    if (invar_store_create_run(r->db, &nr, &r->run_id, &err) != INVAR_OK ||
        invar_store_get_run(r->db, r->run_id, &row, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (log_params(r->db, r->run_id, x, a->sweep_axes) ||
        cli_checkpoint_path(g, a->ckpt_dir, row.uuid, ckpt, ckpt_n))
        goto fail_row;
    if (invar_store_set_checkpoint(r->db, r->run_id, ckpt, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto fail_row;
    }
    *resume = 0;
    rc = 0;
    goto done;
fail_row:
    invar_store_finish_run(r->db, r->run_id, INVAR_RUN_FAILED, 0, "could not set up the run", &err);
done:
    invar_store_run_deinit(&row);
    return rc;
}

int cmd_run(const struct cli_globals *g, int argc, char **argv)
{
    struct run_args a = {0};
    if (parse_args(&a, argc, argv))
        return 2;
    install_handlers();
    struct invar_registry *reg = cli_registry_open(g, 1);
    if (!reg)
        return 1;
    struct run_ctx r = {.tty = isatty(2)};
    const char *nc = getenv("NO_COLOR");
    r.color = r.tty && !(nc && *nc);
    struct cli_experiment x = {0};
    struct cli_job j;
    char ckpt[4096];
    int resume = 0, rc = 1;
    if (open_run(g, &a, reg, &r, &x, ckpt, sizeof ckpt, &resume))
        goto out;
    struct invar_error err = {{0}};
    if (cli_job_init(&j, &x)) {
        invar_store_finish_run(r.db, r.run_id, INVAR_RUN_FAILED, 0, "experiment does not fit",
                               &err);
        goto out;
    }
    j.job.checkpoint_path = ckpt;
    j.job.resume = resume;
    j.job.on_metric = on_metric;
    j.job.on_progress = on_progress;
    j.job.user = &r;
    j.job.stop = &stop_flag;

    struct invar_result res;
    enum invar_status st = invar_train(&j.job, &res, &err);
    if (r.tty)
        fprintf(stderr, "\r\033[K");
    enum invar_run_status end = st == INVAR_OK                ? INVAR_RUN_FINISHED
                                : st == INVAR_ERR_DIVERGED    ? INVAR_RUN_DIVERGED
                                : st == INVAR_ERR_INTERRUPTED ? INVAR_RUN_KILLED
                                                              : INVAR_RUN_FAILED;
    int sig = end == INVAR_RUN_KILLED ? (int)stop_signal : 0;
    struct invar_error ferr = {{0}};
    if (invar_store_finish_run(r.db, r.run_id, end, sig, st == INVAR_OK ? NULL : err.msg, &ferr) !=
        INVAR_OK)
        cli_error("%s", ferr.msg);
    printf("%lld\n", (long long)r.run_id);
    fflush(stdout);
    switch (end) {
    case INVAR_RUN_FINISHED:
        fprintf(stderr, "run %lld finished: knn top-1 %.2f%% top-5 %.2f%%", (long long)r.run_id,
                res.knn_top1, res.knn_top5);
        if (res.linear_top1 >= 0)
            fprintf(stderr, ", linear top-1 %.2f%%", res.linear_top1);
        fprintf(stderr, "\n");
        rc = 0;
        break;
    case INVAR_RUN_KILLED:
        cli_error("run %lld killed by signal %d: %s", (long long)r.run_id, sig, err.msg);
        rc = 128 + (sig ? sig : SIGINT);
        break;
    case INVAR_RUN_DIVERGED:
        cli_error("run %lld diverged: %s", (long long)r.run_id, err.msg);
        rc = 3;
        break;
    default:
        cli_error("run %lld failed: %s", (long long)r.run_id, err.msg);
        rc = 1;
        break;
    }
out:
    cli_experiment_unload(&x);
    invar_store_close(r.db);
    invar_registry_destroy(reg);
    return rc;
}
