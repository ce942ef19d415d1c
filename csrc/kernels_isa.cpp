// One instruction-set build of the kernels. CMake compiles this file once per ISA (AVX-512, AVX2,
// baseline), each with its own FASTRNN_ISA name, vector width and compiler flags; fastrnn.cpp picks
// one at run time. Everything below lives in an anonymous namespace so the builds cannot share (and
// silently swap) inline code; only the two entry points carry the ISA's name.
#include "isa_build.h"

namespace {
#include "simd.h"
#include "rnn_cell.h"
#include "lstm_cell.h"
#include "gru_cell.h"
#include "recurrent_gemm.h"
#include "blas.h"
#include "loop_support.h"
#include "layer_forward.h"
#include "layer_backward.h"
#include "variant_layer.h"

template <typename T> int forward_typed(const fastrnn_forward_args &a) {
    switch (a.cell) {
        case FASTRNN_RNN_TANH: return layer_forward<T, RnnCell<T, false>>(a);
        case FASTRNN_RNN_RELU: return layer_forward<T, RnnCell<T, true>>(a);
        case FASTRNN_LSTM: return layer_forward<T, LstmCell<T>>(a);
        case FASTRNN_GRU: return layer_forward<T, GruCell<T>>(a);
    }
    return FASTRNN_ERR_ARGUMENT;
}

template <typename T> int backward_typed(const fastrnn_backward_args &a) {
    switch (a.cell) {
        case FASTRNN_RNN_TANH: return layer_backward<T, RnnCell<T, false>>(a);
        case FASTRNN_RNN_RELU: return layer_backward<T, RnnCell<T, true>>(a);
        case FASTRNN_LSTM: return layer_backward<T, LstmCell<T>>(a);
        case FASTRNN_GRU: return layer_backward<T, GruCell<T>>(a);
    }
    return FASTRNN_ERR_ARGUMENT;
}
}  // namespace

extern "C" int FASTRNN_ENTRY(fastrnn_forward)(const fastrnn_forward_args *a) {
    return a->dtype == FASTRNN_FLOAT64 ? forward_typed<double>(*a) : forward_typed<float>(*a);
}

extern "C" int FASTRNN_ENTRY(fastrnn_backward)(const fastrnn_backward_args *a) {
    return a->dtype == FASTRNN_FLOAT64 ? backward_typed<double>(*a) : backward_typed<float>(*a);
}

extern "C" int FASTRNN_ENTRY(fastrnn_variant_forward)(const fastrnn_variant_args *a) {
    return a->dtype == FASTRNN_FLOAT64 ? variant_forward<double>(*a) : variant_forward<float>(*a);
}

extern "C" int FASTRNN_ENTRY(fastrnn_variant_backward)(const fastrnn_variant_args *a) {
    return a->dtype == FASTRNN_FLOAT64 ? variant_backward<double>(*a) : variant_backward<float>(*a);
}

extern "C" int64_t FASTRNN_ENTRY(fastrnn_variant_tape_width)(int cell, int64_t hidden_size, int layer_norm) {
    return VariantLayout(hidden_size, cell == FASTRNN_LSTM ? 4 : 3, layer_norm != 0).width;
}
