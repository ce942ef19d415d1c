// LSTM cell, forward and backward side by side. Gates [i, f, g, o] (torch's order):
//   i, f, o = sigmoid(.), g = tanh(.), c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t)
// One vector of hidden units at a time; included inside kernels_isa.cpp's per-ISA namespace.
//
// forward  IN  x_part[4] = W_ih x_t + b_ih + b_hh, h_part[4] = W_hh h_{t-1}; c = c_{t-1} (updated to c_t)
//          OUT h_new; act[4] = i, f, g, o; aux[0] = c_{t-1}, aux[1] = tanh(c_t)
// backward IN  dh (w.r.t. h_t), dc (w.r.t. c_t from step t+1), act, aux
//          OUT act[4] = gradients w.r.t. the four pre-activations; dc = gradient w.r.t. c_{t-1}

template <typename T> struct LstmCell {
    typedef vec_t<T> V;
    static constexpr int G = 4;
    static constexpr int AUX = 2;
    static constexpr bool has_cell_state = true;
    static constexpr bool has_direct_path = false;

    static inline void forward(const V *x_part, const V *h_part, V /*b_hn*/, V /*h_prev*/, V &c,
                               V &h_new, V *act, V *aux) {
        V i = vsigmoid(x_part[0] + h_part[0]);
        V f = vsigmoid(x_part[1] + h_part[1]);
        V g = vtanh(x_part[2] + h_part[2]);
        V o = vsigmoid(x_part[3] + h_part[3]);
        aux[0] = c;
        c = f * c + i * g;
        V tanh_c = vtanh(c);
        h_new = o * tanh_c;
        act[0] = i; act[1] = f; act[2] = g; act[3] = o;
        aux[1] = tanh_c;
    }

    static inline void backward(V dh, V &dc, V *act, V *aux, V /*h_prev*/, V & /*dh_direct*/) {
        V i = act[0], f = act[1], g = act[2], o = act[3];
        V c_prev = aux[0], tanh_c = aux[1];
        V d_o = dh * tanh_c;
        V dc_t = dc + dh * o * (1 - tanh_c * tanh_c);
        act[0] = dc_t * g * i * (1 - i);
        act[1] = dc_t * c_prev * f * (1 - f);
        act[2] = dc_t * i * (1 - g * g);
        act[3] = d_o * o * (1 - o);
        dc = dc_t * f;
    }
};
