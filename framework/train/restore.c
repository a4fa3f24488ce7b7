/* Trained encoders back from checkpoints: `invar embed` and `invar eval`. */
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "train/checkpoint.h"
#include "train/train_internal.h"

enum invar_status invar_checkpoint_next_epoch(const char *path, int64_t *next_epoch,
                                              struct invar_error *err)
{
    struct ckpt_reader r;
    enum invar_status st = ckpt_reader_open(&r, path, err);
    if (st != INVAR_OK)
        return st;
    st = ckpt_get(&r, "next_epoch", next_epoch, sizeof *next_epoch);
    ckpt_reader_close(&r);
    return st;
}

static enum invar_status load_online(struct invar_encoder *e, const char *path,
                                     struct invar_error *err)
{
    struct ckpt_reader r;
    enum invar_status st = ckpt_reader_open(&r, path, err);
    if (st != INVAR_OK)
        return st;
    struct invar_params *p = invar_encoder_params(e);
    st =
        ckpt_get(&r, "online.weights", invar_params_data(p), invar_params_numel(p) * sizeof(float));
    if (st == INVAR_OK)
        st = ckpt_get(&r, "online.buffers", invar_params_buffers(p),
                      invar_params_buffer_numel(p) * sizeof(float));
    ckpt_reader_close(&r);
    return st;
}

enum invar_status invar_checkpoint_encoder(const struct invar_job *job, const char *path,
                                          const int64_t data_shape[3],
                                          struct invar_encoder **out, struct invar_error *err)
{
    /* The trainer builds the encoder for the first view's output shape. */
    int64_t in_shape[3];
    invar_view_out_shape(&job->views[0], data_shape, in_shape);
    enum invar_status st = encoder_create(out, &job->encoder, in_shape, job->seed, err);
    if (st == INVAR_OK && (st = load_online(*out, path, err)) != INVAR_OK) {
        encoder_destroy(*out);
        *out = NULL;
    }
    return st;
}

enum invar_status invar_checkpoint_embed(const struct invar_job *job, const char *path,
                                         const char *split, enum invar_eval_features which,
                                         int64_t size,
                                         struct invar_embedding *out, struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
        return invar_error_set(err, INVAR_ERR_INVALID, "split `%s`: train or test", split);
    struct invar_dataset *train = NULL, *data = NULL;
    struct invar_encoder *enc = NULL;
    struct invar_graph *g = NULL;
    float mean[4], std[4];
    int is_train = !strcmp(split, "train");
    enum invar_status st = invar_job_open_splits(job, &train, is_train ? NULL : &data, err);
    if (st != INVAR_OK)
        goto done;
    const struct invar_dataset *d = is_train ? train : data;
    const int64_t *shape = invar_dataset_shape(train);
    if (job->normalize) {
        if (shape[0] > 4) {
            st = invar_error_set(err, INVAR_ERR_CONFIG, "normalize: at most 4 channels");
            goto done;
        }
        invar_dataset_stats(train, mean, std);
    }
    int64_t eval_shape[3];
    eval_image_shape(shape, size, eval_shape);
    st = invar_checkpoint_encoder(job, path, shape, &enc, err);
    if (st == INVAR_OK)
        st = encoder_check_input(enc, eval_shape, "size", err);
    if (st != INVAR_OK)
        goto done;
    g = invar_graph_create(64u << 20);
    out->n = invar_dataset_count(d);
    out->dim = encoder_out_dim(enc, (int)which);
    out->classes = invar_dataset_num_classes(d);
    out->features = malloc((size_t)(out->n * out->dim) * sizeof *out->features);
    out->labels = malloc((size_t)out->n * sizeof *out->labels);
    if (!g || !out->features || !out->labels) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "embed: out of memory");
        goto done;
    }
    memcpy(out->labels, invar_dataset_labels(d), (size_t)out->n * sizeof *out->labels);
    st = encoder_embed(enc, d, job->normalize ? mean : NULL, job->normalize ? std : NULL,
                       out->features, (int)which, size, g, err);
done:
    if (st != INVAR_OK)
        invar_embedding_deinit(out);
    invar_graph_destroy(g);
    encoder_destroy(enc);
    invar_dataset_destroy(data);
    invar_dataset_destroy(train);
    return st;
}

void invar_embedding_deinit(struct invar_embedding *e)
{
    free(e->features);
    free(e->labels);
    memset(e, 0, sizeof *e);
}
