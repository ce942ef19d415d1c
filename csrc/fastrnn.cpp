// The C ABI: pick the widest ISA build this CPU runs, and hold the thread settings.
#include "fastrnn.h"


#include <atomic>

#include <unistd.h>  // sysconf: the L2's size

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" {
void scipy_openblas_set_num_threads(int num_threads);

#define FASTRNN_DECLARE_ISA(isa)                                          \
    int fastrnn_forward_##isa(const fastrnn_forward_args *a);             \
    int fastrnn_backward_##isa(const fastrnn_backward_args *a);           \
    int fastrnn_variant_forward_##isa(const fastrnn_variant_args *a);     \
    int fastrnn_variant_backward_##isa(const fastrnn_variant_args *a);    \
    int64_t fastrnn_variant_tape_width_##isa(int cell, int64_t hidden_size, int layer_norm); \
    int64_t fastrnn_packed_weight_size_##isa(int cell, int dtype, int64_t hidden_size, int64_t k); \
    void fastrnn_pack_weight_##isa(int cell, int dtype, int64_t hidden_size, int64_t k, const void *w, void *out);
FASTRNN_DECLARE_ISA(baseline)
#ifdef FASTRNN_HAVE_X86_BUILDS
FASTRNN_DECLARE_ISA(avx2)
FASTRNN_DECLARE_ISA(avx512)
#endif
}

namespace {
#include "blas.h"

struct Kernels {
    int (*forward)(const fastrnn_forward_args *);
    int (*backward)(const fastrnn_backward_args *);
    const char *name;
    int (*variant_forward)(const fastrnn_variant_args *);
    int (*variant_backward)(const fastrnn_variant_args *);
    int64_t (*variant_tape_width)(int, int64_t, int);
    int64_t (*packed_weight_size)(int, int, int64_t, int64_t);
    void (*pack_weight)(int, int, int64_t, int64_t, const void *, void *);
};

Kernels choose_kernels() {
#ifdef FASTRNN_HAVE_X86_BUILDS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return {fastrnn_forward_avx512, fastrnn_backward_avx512, "avx512", fastrnn_variant_forward_avx512,
                fastrnn_variant_backward_avx512, fastrnn_variant_tape_width_avx512,
                fastrnn_packed_weight_size_avx512, fastrnn_pack_weight_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return {fastrnn_forward_avx2, fastrnn_backward_avx2, "avx2", fastrnn_variant_forward_avx2,
                fastrnn_variant_backward_avx2, fastrnn_variant_tape_width_avx2,
                fastrnn_packed_weight_size_avx2, fastrnn_pack_weight_avx2};
#endif
    return {fastrnn_forward_baseline, fastrnn_backward_baseline, "baseline", fastrnn_variant_forward_baseline,
                fastrnn_variant_backward_baseline, fastrnn_variant_tape_width_baseline,
                fastrnn_packed_weight_size_baseline, fastrnn_pack_weight_baseline};
}

const Kernels &kernels() {
    static const Kernels chosen = [] {
        scipy_openblas_set_num_threads(1);  // our OpenMP threads share the GEMM tiles out (blas.h)
        return choose_kernels();
    }();
    return chosen;
}
}  // namespace

extern "C" {

int fastrnn_forward(const fastrnn_forward_args *args) {
    if (args->cell < FASTRNN_RNN_TANH || args->cell > FASTRNN_GRU) return FASTRNN_ERR_ARGUMENT;
    if ((args->packed_w_ih == nullptr) != (args->packed_w_hh == nullptr) || (args->packed_w_hh && args->tokens))
        return FASTRNN_ERR_ARGUMENT;
    return kernels().forward(args);
}

int64_t fastrnn_packed_weight_size(int cell, int dtype, int64_t hidden_size, int64_t k) {
    if (cell < FASTRNN_RNN_TANH || cell > FASTRNN_GRU) return -1;
    return kernels().packed_weight_size(cell, dtype, hidden_size, k);
}

int fastrnn_pack_weight(int cell, int dtype, int64_t hidden_size, int64_t k, const void *w, void *out) {
    if (cell < FASTRNN_RNN_TANH || cell > FASTRNN_GRU) return FASTRNN_ERR_ARGUMENT;
    kernels().pack_weight(cell, dtype, hidden_size, k, w, out);
    return FASTRNN_OK;
}

int fastrnn_backward(const fastrnn_backward_args *args) {
    if (args->cell < FASTRNN_RNN_TANH || args->cell > FASTRNN_GRU) return FASTRNN_ERR_ARGUMENT;
    return kernels().backward(args);
}

int fastrnn_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc,
                 int num_threads) {
    kernels();  // OpenBLAS single-threaded before the first product
    if (dtype == FASTRNN_FLOAT64)
        parallel_gemm(trans_a != 0, trans_b != 0, m, n, k, alpha, (const double *)a, lda, (const double *)b, ldb,
                      beta, (double *)c, ldc, num_threads);
    else
        parallel_gemm(trans_a != 0, trans_b != 0, m, n, k, (float)alpha, (const float *)a, lda, (const float *)b,
                      ldb, (float)beta, (float *)c, ldc, num_threads);
    return FASTRNN_OK;
}

static bool variant_cell_ok(int cell) { return cell == FASTRNN_LSTM || cell == FASTRNN_GRU; }

int64_t fastrnn_variant_tape_width(int cell, int64_t hidden_size, int layer_norm) {
    return kernels().variant_tape_width(cell, hidden_size, layer_norm);
}

int fastrnn_variant_forward(const fastrnn_variant_args *args) {
    if (!variant_cell_ok(args->cell)) return FASTRNN_ERR_ARGUMENT;
    return kernels().variant_forward(args);
}

int fastrnn_variant_backward(const fastrnn_variant_args *args) {
    if (!variant_cell_ok(args->cell) || args->tape == nullptr) return FASTRNN_ERR_ARGUMENT;
    return kernels().variant_backward(args);
}

int fastrnn_default_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *fastrnn_isa(void) { return kernels().name; }

static std::atomic<int> fused_input_enabled{1};
void fastrnn_set_fused_input(int enabled) { fused_input_enabled.store(enabled != 0, std::memory_order_relaxed); }
int fastrnn_fused_input(void) { return fused_input_enabled.load(std::memory_order_relaxed); }
static std::atomic<int> panel_input_enabled{1};
void fastrnn_set_panel_input(int enabled) { panel_input_enabled.store(enabled != 0, std::memory_order_relaxed); }
int fastrnn_panel_input(void) { return panel_input_enabled.load(std::memory_order_relaxed); }
static std::atomic<int> panel_gradients_enabled{1};
void fastrnn_set_panel_gradients(int enabled) { panel_gradients_enabled.store(enabled != 0, std::memory_order_relaxed); }
int fastrnn_panel_gradients(void) { return panel_gradients_enabled.load(std::memory_order_relaxed); }

int64_t fastrnn_l2_cache_bytes(void) {
    static const int64_t bytes = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
        const long size = sysconf(_SC_LEVEL2_CACHE_SIZE);
        if (size > 0) return (int64_t)size;
#endif
        return (int64_t)1 << 20;
    }();
    return bytes;
}

int fastrnn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
}
