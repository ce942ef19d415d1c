// Elman RNN cell, forward and backward side by side: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).
// One vector of hidden units at a time; included inside kernels_isa.cpp's per-ISA namespace.
//
// forward  IN  x_part[0] = W_ih x_t + b_ih + b_hh, h_part[0] = W_hh h_{t-1}
//          OUT h_new, act[0] = h_t (saved: both derivatives are taken from the output)
// backward IN  dh (gradient w.r.t. h_t), act[0] = h_t
//          OUT act[0] = gradient w.r.t. the pre-activation; no direct path to h_{t-1}

template <typename T, bool Relu> struct RnnCell {
    typedef vec_t<T> V;
    static constexpr int G = 1;    // gates
    static constexpr int AUX = 0;  // extra tape columns, in units of H
    static constexpr bool has_cell_state = false;
    static constexpr bool has_direct_path = false;

    static inline void forward(const V *x_part, const V *h_part, V /*b_hn*/, V /*h_prev*/, V & /*c*/,
                               V &h_new, V *act, V * /*aux*/) {
        V pre = x_part[0] + h_part[0];
        h_new = Relu ? vrelu(pre) : vtanh(pre);
        act[0] = h_new;
    }

    static inline void backward(V dh, V & /*dc*/, V *act, V * /*aux*/, V /*h_prev*/, V & /*dh_direct*/) {
        V h = act[0];
        act[0] = Relu ? (h > 0 ? dh : V{}) : dh * (1 - h * h);
    }
};
