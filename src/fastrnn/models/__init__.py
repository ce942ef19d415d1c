"""Ready-made models built from the layers and ``fastrnn.nn``; each has ``params``/``grads`` (keys
``"<part>.<key>"``), ``forward``/``backward``, ``zero_grad``, ``state_dict``/``load_state_dict`` and
``config`` (the constructor arguments, which ``fastrnn.training.save_model`` stores).

- ``CharLM``: character language model with ``sample(prompt, n, temperature)``.
- ``SequenceClassifier``: many-to-one with ``lengths`` (final state, both directions when bidirectional).
- ``Seq2Seq``: encoder -> decoder, teacher forcing, ``greedy_decode``.
- ``Forecaster``: one-step-ahead regression from a sliding window (``sliding_windows``).
"""
from .charlm import CharLM
from .classifier import SequenceClassifier
from .forecaster import Forecaster, sliding_windows
from .seq2seq import Seq2Seq, teacher_forcing

__all__ = ["CharLM", "SequenceClassifier", "Seq2Seq", "Forecaster", "sliding_windows", "teacher_forcing"]
