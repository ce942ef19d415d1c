"""Character-level language model: embedding -> stacked LSTM/GRU/RNN -> linear over the vocabulary."""
import numpy as np

from .._grad_mode import no_grad
from ..nn import Embedding, Linear, Module
from ._common import backward_into_embedding, check_tokens, child_seeds, embed_and_run, make_recurrent


class CharLM(Module):
    """Predicts the next character at every position.

    vocab: the characters (a string of distinct characters); token id i is vocab[i].
    forward(tokens (B, T), state=None) -> (logits (B, T, V), state); the state goes into the next
    call to continue the text (truncated BPTT, sampling). backward(dlogits) runs BPTT down to the
    embedding; no gradient flows into the state that was passed in.
    """

    def __init__(self, vocab, embed_dim=64, hidden_size=256, num_layers=1, cell="lstm", dropout=0.0,
                 dtype=np.float32, seed=None):
        super().__init__(dtype)
        if isinstance(vocab, (list, tuple)) and all(isinstance(c, str) for c in vocab):
            vocab = "".join(vocab)
        if not isinstance(vocab, str) or not vocab:
            raise TypeError(f"vocab must be a non-empty string of distinct characters, got {type(vocab).__name__}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab must not repeat a character")
        self.vocab = vocab
        self._index = {c: i for i, c in enumerate(vocab)}
        self.config = dict(vocab=vocab, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                           cell=cell, dropout=dropout, dtype=self.dtype.name)
        s_emb, s_rnn, s_head = child_seeds(seed, 3)
        self._add("embedding", Embedding(len(vocab), embed_dim, dtype, s_emb))
        # time-major inside (tokens.T is free): the layer's input and output, and the head's, stay contiguous
        self._add("rnn", make_recurrent(cell, embed_dim, hidden_size, num_layers, dropout, dtype=dtype, seed=s_rnn,
                                        batch_first=False))
        self._add("head", Linear(hidden_size, len(vocab), dtype=dtype, seed=s_head))

    @property
    def vocab_size(self):
        return len(self.vocab)

    def encode(self, text):
        """str -> int64 ids; a character outside the vocabulary raises ValueError naming it."""
        try:
            return np.fromiter((self._index[c] for c in text), np.int64, len(text))
        except KeyError as exc:
            raise ValueError(f"text contains {exc.args[0]!r}, which is not in the model's vocabulary") from None

    def decode(self, ids):
        return "".join(self.vocab[i] for i in np.asarray(ids).reshape(-1))

    def forward(self, tokens, state=None):
        tokens = check_tokens(tokens, "tokens", self.vocab_size)
        (y, state), self._fused = embed_and_run(self.embedding, self.rnn, tokens.T, state)  # y (T, B, H)
        return self.head(y).transpose(1, 0, 2), state

    def backward(self, dlogits):
        """BPTT through the last forward; gradients are added into grads. Returns the gradient with
        respect to the state passed in (callers doing truncated BPTT drop it)."""
        dlogits = np.asarray(dlogits)
        if dlogits.ndim != 3:
            raise ValueError(f"dlogits must be 3-D (batch, seq_len, vocab_size), got shape {dlogits.shape}")
        return backward_into_embedding(self.embedding, self.rnn, self._fused,
                                       self.head.backward(dlogits.transpose(1, 0, 2)))

    def sample(self, prompt, n, temperature=1.0, seed=None):
        """Generate n characters after ``prompt``, one per call, each fed back in with the carried state.

        temperature > 0 divides the logits (lower: more conservative); 0 means always the most likely
        character. The same seed gives the same text. Returns the generated characters (not the prompt).
        """
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt must be a non-empty string (the model needs a character to start from)")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
                or not temperature >= 0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        rng = np.random.default_rng(seed)
        was_training = self.training
        self.eval()  # no dropout while generating
        out = []
        try:
            with no_grad():
                logits, state = self.forward(self.encode(prompt)[None, :])
                for _ in range(int(n)):
                    z = logits[0, -1].astype(np.float64)
                    if temperature == 0:
                        token = int(np.argmax(z))
                    else:
                        p = np.exp((z - z.max()) / temperature)
                        cdf = np.cumsum(p)
                        token = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(z) - 1))
                    out.append(self.vocab[token])
                    logits, state = self.forward(np.array([[token]]), state)
        finally:
            self.train(was_training)
        return "".join(out)
