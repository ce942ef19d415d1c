"""The NumPy reference: the same layers as the compiled engine, written straight from the equations.

It is the oracle for tests and the baseline for benchmarks, so it favours plain, readable NumPy over
speed. Gate order and formulas are torch's (DESIGN.md section 2):

    RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM  [i, f, g, o] = [s, s, tanh, s](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   (s = sigmoid)
          c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)   (with proj_size: h_t = W_hr (o * tanh(c_t)))
    GRU   r, z = s(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
          n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}

The variants (layer_norm, peephole, recurrent_dropout, zoneout, reset_after=False; equations in
fastrnn._layer.VARIANTS_DOC) are a separate step, _variant_forward / _variant_backward below.

Variable lengths: row b is processed at steps s = 0 .. len_b - 1, at time s (forward direction) or
len_b - 1 - s (reverse direction); outside that range its state is held and its output is zero.
"""
import numpy as np

from ._layer import LAYER_NORM_EPS, RecurrentLayer, make_layer_classes

__all__ = ["RNN", "LSTM", "GRU", "JordanRNN"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _step_times(step, lengths, reverse, steps, batch):
    """For processing step ``step``: which rows are active and the time index each reads."""
    if lengths is None:
        lengths = np.full(batch, steps)
    active = step < lengths
    times = np.where(reverse, lengths - 1 - step, step)
    return active, np.clip(times, 0, steps - 1)


def _cell_forward(mode, x_t, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
    """One time step for all rows. Returns (h_new, c_new, saved) where saved is what backward needs."""
    H = w_hh.shape[0] // {"lstm": 4, "gru": 3}.get(mode, 1)
    gx = x_t @ w_ih.T + (b_ih if b_ih is not None else 0)
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0)
    if mode in ("rnn_tanh", "rnn_relu"):
        pre = gx + gh
        h_new = np.tanh(pre) if mode == "rnn_tanh" else np.maximum(pre, 0)
        return h_new, None, {"h": h_new}
    if mode == "lstm":
        pre = gx + gh
        i, f = sigmoid(pre[:, :H]), sigmoid(pre[:, H:2 * H])
        g, o = np.tanh(pre[:, 2 * H:3 * H]), sigmoid(pre[:, 3 * H:])
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_raw = o * tanh_c
        h_new = h_raw if w_hr is None else h_raw @ w_hr.T
        return h_new, c_new, {"i": i, "f": f, "g": g, "o": o, "c_prev": c, "tanh_c": tanh_c, "h_raw": h_raw}
    # gru
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    hn_lin = gh[:, 2 * H:]  # W_hn h + b_hn, kept for the reset gate's gradient
    n = np.tanh(gx[:, 2 * H:] + r * hn_lin)
    return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n, "hn_lin": hn_lin}


def _cell_backward(mode, saved, h_prev, dh, dc, w_hr):
    """Gradients of one step. Returns (d_gx, d_gh, dh_prev_direct, dc_prev): d_gx and d_gh are the
    gradients with respect to the input and recurrent pre-activations (gx, gh above). For a projected
    LSTM, dh is first taken back through h_t = h_raw W_hr^T."""
    if mode == "rnn_tanh":
        d_pre = dh * (1 - saved["h"] ** 2)
        return d_pre, d_pre, 0, None
    if mode == "rnn_relu":
        d_pre = dh * (saved["h"] > 0)
        return d_pre, d_pre, 0, None
    if mode == "lstm":
        i, f, g, o, tanh_c = saved["i"], saved["f"], saved["g"], saved["o"], saved["tanh_c"]
        if w_hr is not None:
            dh = dh @ w_hr
        d_o = dh * tanh_c
        dc = dc + dh * o * (1 - tanh_c ** 2)
        d_i, d_f, d_g = dc * g, dc * saved["c_prev"], dc * i
        d_pre = np.concatenate([d_i * i * (1 - i), d_f * f * (1 - f), d_g * (1 - g ** 2), d_o * o * (1 - o)], axis=1)
        return d_pre, d_pre, 0, dc * f
    r, z, n, hn_lin = saved["r"], saved["z"], saved["n"], saved["hn_lin"]
    d_n = dh * (1 - z) * (1 - n ** 2)
    d_z = dh * (h_prev - n) * z * (1 - z)
    d_r = d_n * hn_lin * r * (1 - r)
    d_gx = np.concatenate([d_r, d_z, d_n], axis=1)
    d_gh = np.concatenate([d_r, d_z, d_n * r], axis=1)
    return d_gx, d_gh, dh * z, None


# ----------------------------------------------------------------------------- variants (issue 8)
def _layer_norm(a, gain, bias):
    """LN over the last axis; returns the output and (normalised a, 1/std) for the backward."""
    mean = a.mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(((a - mean) ** 2).mean(axis=1, keepdims=True) + LAYER_NORM_EPS)
    a_hat = (a - mean) * rstd
    return a_hat * gain + bias, (a_hat, rstd)


def _layer_norm_backward(d_out, gain, saved):
    """Gradient w.r.t. LN's input, gain and bias, given the gradient w.r.t. its output."""
    a_hat, rstd = saved
    d_hat = d_out * gain
    d_a = rstd * (d_hat - d_hat.mean(axis=1, keepdims=True) - a_hat * (d_hat * a_hat).mean(axis=1, keepdims=True))
    return d_a, (d_out * a_hat).sum(axis=0), d_out.sum(axis=0)


def _zone(keep, previous, candidate):
    """Zoneout: keep (mask, constant p, or None for none) of the previous value, the rest of the candidate."""
    return candidate if keep is None else keep * previous + (1 - keep) * candidate


def _variant_forward(mode, v, x_t, h, c, w_ih, w_hh, b_ih, b_hh, rd_mask, zh, zc):
    """One step of the variant cell for all rows; returns (h_new, c_new, saved)."""
    H = h.shape[1]
    p = v["params"]
    b_ih = 0 if b_ih is None else b_ih
    b_hh = np.zeros(w_hh.shape[0]) if b_hh is None else b_hh
    hd = h if rd_mask is None else h * rd_mask  # h' : what enters the recurrent product
    reset_before = mode == "gru" and not v["reset_after"]
    w_rec = w_hh[:2 * H] if reset_before else w_hh  # reset_after=False: W_hn acts on r * h' below
    a_x, a_h = x_t @ w_ih.T, hd @ w_rec.T
    saved = {"hd": hd, "h": h, "c": c}
    if v["layer_norm"]:
        a_x, saved["ln_x"] = _layer_norm(a_x, p["ln_gates_weight"][0], p["ln_gates_bias"][0])
        a_h, saved["ln_h"] = _layer_norm(a_h, p["ln_gates_weight"][1], p["ln_gates_bias"][1])
    a_x = a_x + b_ih
    a_h = a_h + b_hh[:a_h.shape[1]]
    if mode == "lstm":
        pre = a_x + a_h
        pre_i, pre_f, pre_g, pre_o = pre[:, :H], pre[:, H:2 * H], pre[:, 2 * H:3 * H], pre[:, 3 * H:]
        if v["peephole"]:
            pre_i, pre_f = pre_i + p["w_ci"] * c, pre_f + p["w_cf"] * c
        i, f, g = sigmoid(pre_i), sigmoid(pre_f), np.tanh(pre_g)
        c_cand = f * c + i * g
        o = sigmoid(pre_o + p["w_co"] * c_cand if v["peephole"] else pre_o)
        c_norm = c_cand
        if v["layer_norm"]:
            c_norm, saved["ln_c"] = _layer_norm(c_cand, p["ln_cell_weight"], p["ln_cell_bias"])
        tanh_c = np.tanh(c_norm)
        saved.update(i=i, f=f, g=g, o=o, c_cand=c_cand, tanh_c=tanh_c)
        return _zone(zh, h, o * tanh_c), _zone(zc, c, c_cand), saved
    r = sigmoid(a_x[:, :H] + a_h[:, :H])
    z = sigmoid(a_x[:, H:2 * H] + a_h[:, H:2 * H])
    if reset_before:
        rhd = r * hd
        hn_lin = rhd @ w_hh[2 * H:].T + b_hh[2 * H:]
        n = np.tanh(a_x[:, 2 * H:] + hn_lin)
        saved["rhd"] = rhd
    else:
        hn_lin = a_h[:, 2 * H:]
        n = np.tanh(a_x[:, 2 * H:] + r * hn_lin)
    saved.update(r=r, z=z, n=n, hn_lin=hn_lin)
    return _zone(zh, h, (1 - z) * n + z * h), None, saved


def _variant_backward(mode, v, saved, dh, dc, x_t, w_ih, w_hh, rd_mask, zh, zc, grads, vgrads):
    """Gradients of one step (rows whose dh, dc are zero contribute nothing). Adds parameter gradients
    into grads (g_ih, g_hh, g_bih, g_bhh) and vgrads; returns (dx_t, dh_prev, dc_prev)."""
    g_ih, g_hh, g_bih, g_bhh, _ = grads
    H = dh.shape[1]
    p = v["params"]
    hd = saved["hd"]
    keep_h = 0 if zh is None else zh
    dh_cand, dh_prev = dh * (1 - keep_h), dh * keep_h
    reset_before = mode == "gru" and not v["reset_after"]
    if mode == "lstm":
        keep_c = 0 if zc is None else zc
        dc_cand, dc_prev = dc * (1 - keep_c), dc * keep_c
        i, f, g, o, tanh_c, c, c_cand = (saved[k] for k in ("i", "f", "g", "o", "tanh_c", "c", "c_cand"))
        d_c_norm = dh_cand * o * (1 - tanh_c ** 2)
        if v["layer_norm"]:
            d_c_ln, d_gain, d_bias = _layer_norm_backward(d_c_norm, p["ln_cell_weight"], saved["ln_c"])
            vgrads["ln_cell_weight"] += d_gain
            vgrads["ln_cell_bias"] += d_bias
            dc_cand = dc_cand + d_c_ln
        else:
            dc_cand = dc_cand + d_c_norm
        da_o = dh_cand * tanh_c * o * (1 - o)
        if v["peephole"]:
            dc_cand = dc_cand + da_o * p["w_co"]
            vgrads["w_co"] += (da_o * c_cand).sum(axis=0)
        da_i = dc_cand * g * i * (1 - i)
        da_f = dc_cand * c * f * (1 - f)
        da_g = dc_cand * i * (1 - g ** 2)
        dc_prev = dc_prev + dc_cand * f
        if v["peephole"]:
            dc_prev = dc_prev + da_i * p["w_ci"] + da_f * p["w_cf"]
            vgrads["w_ci"] += (da_i * c).sum(axis=0)
            vgrads["w_cf"] += (da_f * c).sum(axis=0)
        d_px = d_ph = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
        d_hd = 0
    else:
        r, z, n, hn_lin, h = saved["r"], saved["z"], saved["n"], saved["hn_lin"], saved["h"]
        dh_prev = dh_prev + dh_cand * z
        da_n = dh_cand * (1 - z) * (1 - n ** 2)
        da_z = dh_cand * (h - n) * z * (1 - z)
        if reset_before:  # hn_lin = (r * h') W_hn^T + b_hn
            g_hh[2 * H:] += da_n.T @ saved["rhd"]
            if g_bhh is not None:
                g_bhh[2 * H:] += da_n.sum(axis=0)
            d_rhd = da_n @ w_hh[2 * H:]
            da_r = d_rhd * hd * r * (1 - r)
            d_hd = d_rhd * r
            d_ph = np.concatenate([da_r, da_z], axis=1)
        else:
            da_r = da_n * hn_lin * r * (1 - r)
            d_hd = 0
            d_ph = np.concatenate([da_r, da_z, da_n * r], axis=1)
        d_px = np.concatenate([da_r, da_z, da_n], axis=1)
    if g_bih is not None:
        g_bih += d_px.sum(axis=0)
        g_bhh[:d_ph.shape[1]] += d_ph.sum(axis=0)
    d_ax, d_ah = d_px, d_ph
    if v["layer_norm"]:
        d_ax, dgx, dbx = _layer_norm_backward(d_px, p["ln_gates_weight"][0], saved["ln_x"])
        d_ah, dgh, dbh = _layer_norm_backward(d_ph, p["ln_gates_weight"][1], saved["ln_h"])
        vgrads["ln_gates_weight"] += np.stack([dgx, dgh])
        vgrads["ln_gates_bias"] += np.stack([dbx, dbh])
    rows = d_ah.shape[1]
    g_ih += d_ax.T @ x_t
    g_hh[:rows] += d_ah.T @ hd
    d_hd = d_hd + d_ah @ w_hh[:rows]
    dh_prev = dh_prev + (d_hd if rd_mask is None else d_hd * rd_mask)
    return d_ax @ w_ih, dh_prev, (dc_prev if mode == "lstm" else None)


def _mask_at(mask, times, batch):
    """Row b's zoneout mask at its time index, a constant, or None."""
    return mask[times, np.arange(batch)] if isinstance(mask, np.ndarray) else mask


def _zoneout_masks(variant):
    if variant["zh"] is not None:
        return variant["zh"], variant["zc"]
    p = variant["zoneout"]
    return (p, p) if p > 0 else (None, None)


class _ReferenceLayer(RecurrentLayer):
    def _forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape,
                           variant=None):
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        T, B, _ = x.shape
        h, c = h0.copy(), (c0.copy() if c0 is not None else None)
        y_out[...] = 0
        steps = []
        if variant is not None:
            zh_all, zc_all = _zoneout_masks(variant)
        for s in range(T):
            active, times = _step_times(s, lengths, reverse, T, B)
            x_t = x[times, np.arange(B)]
            if variant is None:
                h_new, c_new, saved = _cell_forward(self._mode, x_t, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
            else:
                h_new, c_new, saved = _variant_forward(
                    self._mode, variant, x_t, h, c, w_ih, w_hh, b_ih, b_hh, variant["rd_mask"],
                    _mask_at(zh_all, times, B), _mask_at(zc_all, times, B))
            steps.append((active, times, x_t, h, saved))
            h = np.where(active[:, None], h_new, h)
            if c is not None:
                c = np.where(active[:, None], c_new, c)
            y_out[times[active], np.arange(B)[active]] = h[active]
        tape = {"steps": steps, "w_ih": w_ih.copy(), "w_hh": w_hh.copy(), "x_shape": x.shape,
                "w_hr": None if w_hr is None else w_hr.copy()} if keep_tape else None
        if keep_tape and variant is not None:
            tape["variant"] = dict(variant, params={k: a.copy() for k, a in variant["params"].items()})
        hn_out[...] = h
        if cn_out is not None:
            cn_out[...] = c
        return tape

    def _backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                            variant_grads=None):
        g_ih, g_hh, g_bih, g_bhh, g_hr = grads
        w_ih, w_hh, w_hr = tape["w_ih"], tape["w_hh"], tape["w_hr"]
        T, B, _ = tape["x_shape"]
        dx = np.zeros(tape["x_shape"], dx_out.dtype)
        dh = dhn.copy()
        dc = dcn.copy() if dcn is not None else None
        variant = tape.get("variant")
        if variant is not None:
            zh_all, zc_all = _zoneout_masks(variant)
        for active, times, x_t, h_prev, saved in reversed(tape["steps"]):
            rows = active[:, None]
            dh_step = dh + np.where(rows, dy[times, np.arange(B)], 0)
            if variant is not None:  # inactive rows get zero gradients in, so they add nothing anywhere
                dx_t, dh_prev, dc_prev = _variant_backward(
                    self._mode, variant, saved, dh_step * rows, None if dc is None else dc * rows, x_t, w_ih, w_hh,
                    variant["rd_mask"], _mask_at(zh_all, times, B), _mask_at(zc_all, times, B), grads, variant_grads)
                dx[times[active], np.arange(B)[active]] = dx_t[active]
                dh = np.where(rows, dh_prev, dh)
                if dc is not None:
                    dc = np.where(rows, dc_prev, dc)
                continue
            d_gx, d_gh, dh_direct, dc_prev = _cell_backward(self._mode, saved, h_prev, dh_step, dc, w_hr)
            d_gx, d_gh = d_gx * rows, d_gh * rows  # inactive rows contribute nothing
            if w_hr is not None:
                g_hr += (dh_step * rows).T @ saved["h_raw"]
            g_ih += d_gx.T @ x_t
            g_hh += d_gh.T @ h_prev
            if g_bih is not None:
                g_bih += d_gx.sum(axis=0)
                g_bhh += d_gh.sum(axis=0)
            dx[times[active], np.arange(B)[active]] = (d_gx @ w_ih)[active]
            dh = np.where(rows, d_gh @ w_hh + dh_direct, dh)
            if dc is not None:
                dc = np.where(rows, dc_prev, dc)
        if accumulate:
            dx_out += dx
        else:
            dx_out[...] = dx
        dh0_out[...] = dh
        if dc0_out is not None:
            dc0_out[...] = dc


RNN, LSTM, GRU = make_layer_classes(_ReferenceLayer, "fastrnn.reference")

from .reference_jordan import JordanRNN  # noqa: E402  (the output-recurrent network, its own file)
