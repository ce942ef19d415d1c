// GRU cell, forward and backward side by side. Gates [r, z, n] (torch's order, reset after the matmul):
//   r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h_t = (1 - z) * n + z * h_{t-1}
// One vector of hidden units at a time; included inside kernels_isa.cpp's per-ISA namespace.
//
// forward  IN  x_part[3] = W_ih x_t + b_ih (+ b_hh for r and z only), h_part[3] = W_hh h_{t-1}, b_hn, h_prev
//          OUT h_new; act[3] = r, z, n; aux[0] = W_hn h_{t-1} + b_hn
// backward IN  dh (w.r.t. h_t), act, aux, h_prev
//          OUT act[3] = gradients w.r.t. the recurrent pre-activations [r, z, W_hn h + b_hn] (the rows of
//              W_hh); aux[0] = gradient w.r.t. the input-side n pre-activation (W_in x + b_in);
//              dh_direct = dh * z, the part of dh_{t-1} that does not pass through W_hh

template <typename T> struct GruCell {
    typedef vec_t<T> V;
    static constexpr int G = 3;
    static constexpr int AUX = 1;
    static constexpr bool has_cell_state = false;
    static constexpr bool has_direct_path = true;

    static inline void forward(const V *x_part, const V *h_part, V b_hn, V h_prev, V & /*c*/,
                               V &h_new, V *act, V *aux) {
        V r = vsigmoid(x_part[0] + h_part[0]);
        V z = vsigmoid(x_part[1] + h_part[1]);
        V hn_lin = h_part[2] + b_hn;
        V n = vtanh(x_part[2] + r * hn_lin);
        h_new = n + z * (h_prev - n);
        act[0] = r; act[1] = z; act[2] = n;
        aux[0] = hn_lin;
    }

    static inline void backward(V dh, V & /*dc*/, V *act, V *aux, V h_prev, V &dh_direct) {
        V r = act[0], z = act[1], n = act[2], hn_lin = aux[0];
        V d_n = dh * (1 - z) * (1 - n * n);
        V d_z = dh * (h_prev - n) * z * (1 - z);
        V d_r = d_n * hn_lin * r * (1 - r);
        act[0] = d_r; act[1] = d_z; act[2] = d_n * r;
        aux[0] = d_n;
        dh_direct = dh * z;
    }
};
