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
#include "row_dot.h"
#include "weight_gradient.h"
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

// A (G*H, K) weight of the cell packed as the forward's panels (fastrnn.h: fastrnn_pack_weight).
template <typename T, class Cell> int64_t packed_size(int64_t H, int64_t K) {
    constexpr int U = ForwardBlocking<Cell>::U;
    return row_panel_count<T, U>(H) * row_panel_size<T, U>(Cell::G, K);
}

template <typename T> int64_t packed_size_typed(int cell, int64_t H, int64_t K) {
    switch (cell) {
        case FASTRNN_RNN_TANH: return packed_size<T, RnnCell<T, false>>(H, K);
        case FASTRNN_RNN_RELU: return packed_size<T, RnnCell<T, true>>(H, K);
        case FASTRNN_LSTM: return packed_size<T, LstmCell<T>>(H, K);
    }
    return packed_size<T, GruCell<T>>(H, K);
}

template <typename T> void pack_typed(int cell, int64_t H, int64_t K, const void *w, void *out) {
    const int G = cell == FASTRNN_LSTM ? 4 : cell == FASTRNN_GRU ? 3 : 1;
    if (G == 1) pack_row_panels<T, ForwardBlocking<RnnCell<T, false>>::U>((T *)out, (const T *)w, G, H, K);
    else pack_row_panels<T, ForwardBlocking<LstmCell<T>>::U>((T *)out, (const T *)w, G, H, K);
    static_assert(ForwardBlocking<LstmCell<T>>::U == ForwardBlocking<GruCell<T>>::U, "LSTM and GRU panels alike");
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

extern "C" int64_t FASTRNN_ENTRY(fastrnn_packed_weight_size)(int cell, int dtype, int64_t hidden_size, int64_t k) {
    return dtype == FASTRNN_FLOAT64 ? packed_size_typed<double>(cell, hidden_size, k)
                                    : packed_size_typed<float>(cell, hidden_size, k);
}

extern "C" void FASTRNN_ENTRY(fastrnn_pack_weight)(int cell, int dtype, int64_t hidden_size, int64_t k, const void *w,
                                                   void *out) {
    if (dtype == FASTRNN_FLOAT64) pack_typed<double>(cell, hidden_size, k, w, out);
    else pack_typed<float>(cell, hidden_size, k, w, out);
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
