"""Encoder-decoder without attention: the encoder's final state is the decoder's initial state."""
import numpy as np

from .._grad_mode import no_grad
from ..nn import Embedding, Linear, Module
from ._common import backward_into_embedding, check_tokens, child_seeds, embed_and_run, make_recurrent


def teacher_forcing(targets, bos_id, eos_id, pad_id=0):
    """Target token lists -> (decoder_input (B, T), decoder_target (B, T), mask (B, T)), T = longest + 1.

    decoder_input is [bos, y1, ..., yn], decoder_target [y1, ..., yn, eos]: at each step the decoder
    reads the true previous token (teacher forcing) and is trained to emit the next; mask is False on padding.
    """
    seqs = [list(map(int, t)) for t in targets]
    T = max(len(s) for s in seqs) + 1
    dec_in = np.full((len(seqs), T), pad_id, np.int64)
    dec_out = np.full((len(seqs), T), pad_id, np.int64)
    mask = np.zeros((len(seqs), T), bool)
    for i, s in enumerate(seqs):
        dec_in[i, :len(s) + 1] = [bos_id] + s
        dec_out[i, :len(s) + 1] = s + [eos_id]
        mask[i, :len(s) + 1] = True
    return dec_in, dec_out, mask


class Seq2Seq(Module):
    """Token sequences in, token sequences out.

    forward(src (B, S), dec_in (B, T), src_lengths=None) -> logits (B, T, tgt_vocab_size), trained with
    teacher forcing (see ``teacher_forcing``); backward(dlogits) runs BPTT through the decoder, into the
    encoder's final state and through the encoder. ``greedy_decode`` generates until ``eos_id``.
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, embed_dim=64, hidden_size=128, num_layers=1, cell="lstm",
                 dropout=0.0, bos_id=1, eos_id=2, dtype=np.float32, seed=None):
        super().__init__(dtype)
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < tgt_vocab_size:
                raise ValueError(f"{name} must be a token id in 0..{tgt_vocab_size - 1}, got {value!r}")
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self.config = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, embed_dim=embed_dim,
                           hidden_size=hidden_size, num_layers=num_layers, cell=cell, dropout=dropout,
                           bos_id=self.bos_id, eos_id=self.eos_id, dtype=self.dtype.name)
        seeds = child_seeds(seed, 5)
        self._add("src_embedding", Embedding(src_vocab_size, embed_dim, dtype, seeds[0]))
        self._add("encoder", make_recurrent(cell, embed_dim, hidden_size, num_layers, dropout, dtype=dtype,
                                            seed=seeds[1]))
        self._add("tgt_embedding", Embedding(tgt_vocab_size, embed_dim, dtype, seeds[2]))
        self._add("decoder", make_recurrent(cell, embed_dim, hidden_size, num_layers, dropout, dtype=dtype,
                                            seed=seeds[3]))
        self._add("head", Linear(hidden_size, tgt_vocab_size, dtype=dtype, seed=seeds[4]))

    def encode(self, src, src_lengths=None):
        """The encoder's final state (each sequence's, at its own last token)."""
        src = check_tokens(src, "src", self.src_vocab_size)
        (_, state), self._src_fused = embed_and_run(self.src_embedding, self.encoder, src, None, src_lengths)
        return state

    def forward(self, src, dec_in, src_lengths=None):
        state = self.encode(src, src_lengths)
        dec_in = check_tokens(dec_in, "dec_in", self.tgt_vocab_size)
        if dec_in.shape[0] != np.asarray(src).shape[0]:
            raise ValueError(f"dec_in must have the batch size of src ({np.asarray(src).shape[0]}), "
                             f"got shape {dec_in.shape}")
        # padded decoder steps run too: their outputs are masked out of the loss, so they get no gradient
        (y, _), self._tgt_fused = embed_and_run(self.tgt_embedding, self.decoder, dec_in, state)
        return self.head(y)

    def backward(self, dlogits):
        dy = self.head.backward(dlogits)
        dstate = backward_into_embedding(self.tgt_embedding, self.decoder, self._tgt_fused, dy)
        # the decoder's initial state is the encoder's final one
        backward_into_embedding(self.src_embedding, self.encoder, self._src_fused, None, dstate)

    def greedy_decode(self, src, src_lengths=None, max_len=50):
        """Most likely token at each step, fed back in, until every sequence has emitted eos_id (or
        max_len tokens). Returns one list of token ids per sequence, without bos/eos."""
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                state = self.encode(src, src_lengths)
                B = np.asarray(src).shape[0]
                token = np.full((B, 1), self.bos_id, np.int64)
                out = np.zeros((B, max_len), np.int64)
                done = np.zeros(B, bool)
                lengths = np.full(B, max_len)
                for t in range(max_len):
                    y, state = self.decoder(self.tgt_embedding(token), state)
                    token = np.argmax(self.head(y), axis=-1)  # (B, 1)
                    out[:, t] = token[:, 0]
                    ended = ~done & (token[:, 0] == self.eos_id)
                    lengths[ended] = t
                    done |= ended
                    if done.all():
                        break
        finally:
            self.train(was_training)
        return [out[i, :lengths[i]].tolist() for i in range(B)]
