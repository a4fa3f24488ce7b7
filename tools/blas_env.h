/* OpenBLAS settings for invar's executables (see blas_env.c). */
#ifndef INVAR_TOOLS_BLAS_ENV_H
#define INVAR_TOOLS_BLAS_ENV_H

/* Re-executes the program once with OPENBLAS_THREAD_TIMEOUT=4 unless it is already set. Call
 * first thing in main, before any thread starts. */
void blas_env_apply(char **argv);

#endif
