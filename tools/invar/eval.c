/* invar eval RUN [--knn] [--linear]  and  invar embed RUN --out F.npy [--split train|test] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

/* A run, its stored experiment and its checkpoint, ready to rebuild the encoder. */
struct loaded_run {
    struct invar_registry *reg;
    struct invar_store *db;
    struct invar_store_run row;
    struct cli_experiment x;
    struct cli_job j;
};

static void loaded_run_deinit(struct loaded_run *l)
{
    cli_experiment_unload(&l->x);
    invar_store_run_deinit(&l->row);
    invar_store_close(l->db);
    invar_registry_destroy(l->reg);
}

static int loaded_run_init(struct loaded_run *l, const struct cli_globals *g, const char *ref)
{
    struct invar_error err = {{0}};
    int64_t id;
    l->reg = cli_registry_open(g, 0);
    if (!l->reg || !(l->db = cli_store_open(g)))
        return 1;
    if (invar_store_find_run(l->db, ref, &id, &err) != INVAR_OK ||
        invar_store_get_run(l->db, id, &l->row, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    if (!l->row.checkpoint) {
        cli_error("%s: run %lld has no checkpoint", g->db, (long long)id);
        return 1;
    }
    char name[128];
    snprintf(name, sizeof name, "run %lld (%s)", (long long)id, l->row.uuid);
    if (cli_experiment_load(&l->x, name, l->row.config, NULL, 0, l->reg) ||
        cli_job_init(&l->j, &l->x))
        return 1;
    return 0;
}

struct eval_ctx {
    struct invar_store *db;
    int64_t run_id;
    int failed;
};

static void eval_metric(void *user, const char *key, int64_t step, int64_t epoch, double value)
{
    struct eval_ctx *c = user;
    struct invar_error err = {{0}};
    if (invar_store_log_metric(c->db, c->run_id, key, step, epoch, value, &err) != INVAR_OK &&
        !c->failed++)
        cli_warn("%s", err.msg);
}

int cmd_eval(const struct cli_globals *g, int argc, char **argv)
{
    const char *ref = NULL;
    int knn = 0, linear = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--knn"))
            knn = 1;
        else if (!strcmp(argv[i], "--linear"))
            linear = 1;
        else if (argv[i][0] != '-' && !ref)
            ref = argv[i];
        else {
            cli_error("eval: unexpected argument `%s` (see `invar eval --help`)", argv[i]);
            return 2;
        }
    }
    if (!ref) {
        cli_error("eval: which run? (an id, a uuid prefix or `latest`)");
        return 2;
    }
    if (!knn && !linear)
        knn = linear = 1;
    static struct loaded_run l;
    memset(&l, 0, sizeof l);
    int rc = 1;
    if (loaded_run_init(&l, g, ref))
        goto out;
    struct invar_error err = {{0}};
    int64_t next_epoch = 0;
    if (invar_checkpoint_next_epoch(l.row.checkpoint, &next_epoch, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    /* Resuming at the checkpoint's own epoch trains nothing and evaluates: the trainer's
     * evaluation, with its protocol, on the restored encoder. */
    struct invar_job *job = &l.j.job;
    job->epochs = next_epoch;
    job->resume = 1;
    job->checkpoint_path = l.row.checkpoint;
    job->eval.knn_every = 0;
    if (!linear)
        job->eval.linear_epochs = 0;
    else if (job->eval.linear_epochs == 0)
        job->eval.linear_epochs = 10;
    struct eval_ctx c = {l.db, l.row.id, 0};
    job->on_metric = eval_metric;
    job->user = &c;
    struct invar_result res;
    if (invar_train(job, &res, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    printf("run %lld epoch %lld knn_top1 %.2f knn_top5 %.2f", (long long)l.row.id,
           (long long)next_epoch, res.knn_top1, res.knn_top5);
    if (res.linear_top1 >= 0)
        printf(" linear_top1 %.2f", res.linear_top1);
    printf("\n");
    rc = 0;
out:
    loaded_run_deinit(&l);
    return rc;
}

/* NumPy .npy version 1.0: magic, a little-endian u16 header length, a Python dict literal
 * padded with spaces so the data starts on a 64-byte boundary, then the raw array. */
static int npy_write(const char *path, const char *descr, int64_t rows, int64_t cols,
                     const void *data, size_t elem)
{
    char dict[256];
    int n = cols > 0 ? snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                                descr, (long long)rows, (long long)cols)
                     : snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                                descr, (long long)rows);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    size_t count = (size_t)(rows * (cols > 0 ? cols : 1));
    int ok =
        fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, elem, count, f) == count;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        cli_error("%s: write failed: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

int cmd_embed(const struct cli_globals *g, int argc, char **argv)
{
    const char *ref = NULL, *out = NULL, *split = "test";
    for (int i = 0; i < argc; i++) {
        const char **opt = !strcmp(argv[i], "--out")     ? &out
                           : !strcmp(argv[i], "-o")      ? &out
                           : !strcmp(argv[i], "--split") ? &split
                                                         : NULL;
        if (opt && i + 1 < argc)
            *opt = argv[++i];
        else if (argv[i][0] != '-' && !ref)
            ref = argv[i];
        else {
            cli_error("embed: unexpected argument `%s` (see `invar embed --help`)", argv[i]);
            return 2;
        }
    }
    if (!ref || !out) {
        cli_error("embed: usage: invar embed RUN --out F.npy [--split train|test]");
        return 2;
    }
    size_t len = strlen(out);
    if (len < 4 || strcmp(out + len - 4, ".npy") != 0 || len > 4000) {
        cli_error("embed: %s: the output name must end in .npy", out);
        return 2;
    }
    static struct loaded_run l;
    memset(&l, 0, sizeof l);
    struct invar_embedding e = {0};
    int rc = 1;
    if (loaded_run_init(&l, g, ref))
        goto done;
    struct invar_error err = {{0}};
    if (invar_checkpoint_embed(&l.j.job, l.row.checkpoint, split, &e, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    char labels[4200];
    snprintf(labels, sizeof labels, "%.*s.labels.npy", (int)(len - 4), out);
    if (npy_write(out, "<f4", e.n, e.dim, e.features, sizeof(float)) ||
        npy_write(labels, "<i4", e.n, 0, e.labels, sizeof(int32_t)))
        goto done;
    fprintf(stderr, "%s: %lld x %lld float32 (%s split); labels in %s\n", out, (long long)e.n,
            (long long)e.dim, split, labels);
    rc = 0;
done:
    invar_embedding_deinit(&e);
    loaded_run_deinit(&l);
    return rc;
}
