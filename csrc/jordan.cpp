// The Jordan network's C entry points: run the ISA build that fastrnn.cpp chose for the other kernels
// (one decision, made once, in one place).
#include <string.h>

#include "fastrnn.h"

extern "C" {
#define FASTRNN_DECLARE_JORDAN_ISA(isa)                                                 \
    int fastrnn_jordan_forward_##isa(const fastrnn_jordan_forward_args *a);             \
    int fastrnn_jordan_backward_##isa(const fastrnn_jordan_backward_args *a);
FASTRNN_DECLARE_JORDAN_ISA(baseline)
#ifdef FASTRNN_HAVE_X86_BUILDS
FASTRNN_DECLARE_JORDAN_ISA(avx2)
FASTRNN_DECLARE_JORDAN_ISA(avx512)
#endif
}

namespace {
struct JordanKernels {
    int (*forward)(const fastrnn_jordan_forward_args *);
    int (*backward)(const fastrnn_jordan_backward_args *);
};

const JordanKernels &jordan_kernels() {
    static const JordanKernels chosen = [] {
        const char *isa = fastrnn_isa();  // also sets OpenBLAS to one thread (fastrnn.cpp)
#ifdef FASTRNN_HAVE_X86_BUILDS
        if (strcmp(isa, "avx512") == 0) return JordanKernels{fastrnn_jordan_forward_avx512, fastrnn_jordan_backward_avx512};
        if (strcmp(isa, "avx2") == 0) return JordanKernels{fastrnn_jordan_forward_avx2, fastrnn_jordan_backward_avx2};
#endif
        (void)isa;
        return JordanKernels{fastrnn_jordan_forward_baseline, fastrnn_jordan_backward_baseline};
    }();
    return chosen;
}

bool valid_sizes(int64_t steps, int64_t batch, int64_t input_size, int64_t hidden_size, int64_t output_size) {
    return steps > 0 && batch > 0 && input_size > 0 && hidden_size > 0 && output_size > 0;
}
}  // namespace

extern "C" {

int fastrnn_jordan_forward(const fastrnn_jordan_forward_args *a) {
    if (!valid_sizes(a->steps, a->batch, a->input_size, a->hidden_size, a->output_size) ||
        a->output < FASTRNN_JORDAN_LINEAR || a->output > FASTRNN_JORDAN_SOFTMAX ||
        a->feedback < FASTRNN_JORDAN_SOFT || a->feedback > FASTRNN_JORDAN_ARGMAX)
        return FASTRNN_ERR_ARGUMENT;
    return jordan_kernels().forward(a);
}

int fastrnn_jordan_backward(const fastrnn_jordan_backward_args *a) {
    if (!valid_sizes(a->steps, a->batch, a->input_size, a->hidden_size, a->output_size)) return FASTRNN_ERR_ARGUMENT;
    return jordan_kernels().backward(a);
}
}
