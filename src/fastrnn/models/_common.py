"""What the models share: building the recurrent stack by name, splitting seeds, and reading the final
hidden state of a stack (and sending a gradient back into it)."""
import numpy as np

from .. import layers

CELLS = ("lstm", "gru", "rnn", "rnn_tanh", "rnn_relu")


def make_recurrent(cell, input_size, hidden_size, num_layers=1, dropout=0.0, bidirectional=False,
                   dtype=np.float32, seed=None, batch_first=True):
    """fastrnn.LSTM / GRU / RNN by name ('rnn' is the tanh RNN); batch-first unless told otherwise."""
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    cell = cell.lower()
    kwargs = dict(num_layers=num_layers, dropout=dropout, bidirectional=bidirectional, batch_first=batch_first,
                  dtype=dtype, seed=seed)
    if cell == "lstm":
        return layers.LSTM(input_size, hidden_size, **kwargs)
    if cell == "gru":
        return layers.GRU(input_size, hidden_size, **kwargs)
    return layers.RNN(input_size, hidden_size, nonlinearity="relu" if cell == "rnn_relu" else "tanh", **kwargs)


def child_seeds(seed, n):
    """n independent integer seeds from one (None stays random)."""
    if seed is None:
        return [None] * n
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def final_hidden(rnn, hn):
    """(B, D*H): the last layer's final h, forward then reverse direction (hn from rnn.forward)."""
    h = hn[0] if isinstance(hn, tuple) else hn
    D = 2 if rnn.bidirectional else 1
    last = h[-D:]  # (D, B, H)
    return np.concatenate(list(last), axis=1) if D == 2 else last[0]


def final_hidden_grad(rnn, dfeatures, batch):
    """The dhn for rnn.backward that sends d(final_hidden) back: zeros except the last layer's h."""
    D = 2 if rnn.bidirectional else 1
    H = rnn.output_size
    dh = np.zeros((rnn.num_layers * D, batch, H), rnn.dtype)
    dh[-D:] = dfeatures.reshape(batch, D, H).transpose(1, 0, 2)
    return (dh, None) if type(rnn).__name__ == "LSTM" else dh


def check_tokens(tokens, name, vocab_size):
    """(B, T) integer array with values in 0..vocab_size-1."""
    arr = np.asarray(tokens)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must be 2-D (batch, seq_len) with at least one element, got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"{name} must lie in 0..{vocab_size - 1}, got values from {arr.min()} to {arr.max()}")
    return arr


def embed_and_run(embedding, rnn, tokens, hx=None, lengths=None):
    """rnn(embedding(tokens), hx, lengths) -> ((y, hn), fused). Fused (the layer's token input) when a table
    of each token's input projection is cheaper than the T*B x E x G*H products it replaces, that is when
    the vocabulary is smaller than the number of (t, b) positions: a character model's batch, not a
    streaming step or a large word vocabulary. Pass `fused` to backward_into_embedding."""
    if rnn._accepts_tokens and embedding.num_embeddings < tokens.size:
        return rnn._forward_embedded(tokens, embedding.params["weight"], hx, lengths), True
    return rnn(embedding(tokens), hx, lengths), False


def backward_into_embedding(embedding, rnn, fused, dy=None, dhn=None):
    """rnn.backward(dy, dhn), sending the input gradient on into the embedding's grads. Returns dhx."""
    d_input, dhx = rnn.backward(dy, dhn)
    if fused:  # already the gradient w.r.t. the embedding weight
        embedding.grads["weight"] += d_input
    else:
        embedding.backward(d_input)
    return dhx
