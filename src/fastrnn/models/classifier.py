"""Many-to-one sequence classifier: (embedding) -> stacked LSTM/GRU/RNN -> final state -> linear."""
import numpy as np

from .._grad_mode import no_grad
from .. import _validation as V
from ..nn import Embedding, Linear, Module
from ._common import (backward_into_embedding, check_tokens, child_seeds, embed_and_run, final_hidden,
                      final_hidden_grad, make_recurrent)


class SequenceClassifier(Module):
    """Classifies right-padded variable-length sequences from the state each reaches at its own end.

    Give ``vocab_size`` for token ids (B, T) (an embedding comes first), or ``input_size`` for real
    features (B, T, input_size). With ``lengths`` each sequence's final state is taken at its last
    valid step (the layers' packed-sequence semantics); when bidirectional, the reverse direction's
    final state (after reading the whole sequence backwards) is concatenated to the forward one.
    forward(x, lengths=None) -> logits (B, num_classes); backward(dlogits) -> dx (None for tokens).
    """

    def __init__(self, num_classes, hidden_size=128, *, input_size=None, vocab_size=None, embed_dim=64,
                 num_layers=1, cell="lstm", bidirectional=False, dropout=0.0, dtype=np.float32, seed=None):
        super().__init__(dtype)
        if (input_size is None) == (vocab_size is None):
            raise ValueError("give exactly one of input_size (real features) or vocab_size (token ids)")
        self.config = dict(num_classes=num_classes, hidden_size=hidden_size, input_size=input_size,
                           vocab_size=vocab_size, embed_dim=embed_dim, num_layers=num_layers, cell=cell,
                           bidirectional=bidirectional, dropout=dropout, dtype=self.dtype.name)
        s_emb, s_rnn, s_head = child_seeds(seed, 3)
        self.vocab_size = vocab_size
        if vocab_size is not None:
            self._add("embedding", Embedding(vocab_size, embed_dim, dtype, s_emb))
            input_size = embed_dim
        self._add("rnn", make_recurrent(cell, input_size, hidden_size, num_layers, dropout, bidirectional,
                                        dtype, s_rnn))
        D = 2 if bidirectional else 1
        self._add("head", Linear(D * hidden_size, num_classes, dtype=dtype, seed=s_head))

    def forward(self, x, lengths=None):
        if self.vocab_size is not None:
            (_, hn), self._fused = embed_and_run(self.embedding, self.rnn, check_tokens(x, "x", self.vocab_size),
                                                 None, lengths)
        else:
            _, hn = self.rnn(x, None, lengths)
        self._batch = hn[0].shape[1] if isinstance(hn, tuple) else hn.shape[1]
        return self.head(final_hidden(self.rnn, hn))

    def backward(self, dlogits):
        dfeatures = self.head.backward(dlogits)
        dhn = final_hidden_grad(self.rnn, dfeatures, self._batch)
        if self.vocab_size is not None:
            backward_into_embedding(self.embedding, self.rnn, self._fused, None, dhn)
            return None
        dx, _ = self.rnn.backward(None, dhn)
        return dx

    def predict(self, x, lengths=None, batch_size=256):
        """Class ids (N,), in eval mode without a tape, batch_size sequences at a time."""
        x = np.asarray(x)
        if lengths is not None:
            lengths = V.as_lengths(lengths, x.shape[0], x.shape[1] if x.ndim >= 2 else 1)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                out = [np.argmax(self.forward(x[i:i + batch_size],
                                              None if lengths is None else lengths[i:i + batch_size]), axis=-1)
                       for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0, np.int64)
