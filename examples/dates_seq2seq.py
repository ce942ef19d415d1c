"""Sequence to sequence: dates written by people -> ISO dates, with an encoder-decoder and no attention.

    "Thursday, March 5, 1987" -> "1987-03-05"      "05.03.1987" -> "1987-03-05"      "MAR 05, 1987" -> "1987-03-05"

20,000 generated training pairs and 2,000 held-out ones (no input string in both), characters in and
out, LSTM encoder and decoder of 128 units, teacher forcing while training, greedy decoding until the
end token for the test. Prints the exact-match accuracy on the held-out inputs last.

    python examples/dates_seq2seq.py [--steps 3000]
"""
import argparse
import datetime
import time

import numpy as np

import fastrnn
from fastrnn.models import Seq2Seq, teacher_forcing
from fastrnn.nn import CrossEntropyLoss
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads, pad_sequences

FORMATS = ["%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%A, %B %d, %Y", "%a %d %b %Y",
           "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%B %Y, day %d"]
PAD, BOS, EOS = 0, 1, 2


def written(date, fmt, rng):
    text = date.strftime(fmt)
    if rng.random() < 0.5:  # people drop leading zeros of the day
        text = text.replace(f" 0{date.day}", f" {date.day}")
    return [str.lower, str.upper, str][rng.integers(0, 3)](text) if rng.random() < 0.3 else text


def make_pairs(n_train, n_test, seed):
    rng = np.random.default_rng(seed)
    start, days = datetime.date(1900, 1, 1), (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days
    seen, pairs = set(), []
    while len(pairs) < n_train + n_test:
        date = start + datetime.timedelta(days=int(rng.integers(0, days + 1)))
        text = written(date, FORMATS[rng.integers(0, len(FORMATS))], rng)
        if text not in seen:  # held-out inputs never appear in training
            seen.add(text)
            pairs.append((text, date.isoformat()))
    return pairs[:n_train], pairs[n_train:]


class Chars:
    """Character <-> id, with 0, 1, 2 kept for padding, start and end."""

    def __init__(self, texts):
        self.chars = sorted(set("".join(texts)))
        self.index = {c: i + 3 for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars) + 3

    def encode(self, text):
        return [self.index[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i - 3] for i in ids if i >= 3)


def exact_match(model, pairs, src_chars, tgt_chars, batch=500):
    hits = 0
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        src, lengths = pad_sequences([src_chars.encode(s) for s, _ in chunk], pad=PAD)
        decoded = model.greedy_decode(src, lengths, max_len=12)
        hits += sum(tgt_chars.decode(d) == t for d, (_, t) in zip(decoded, chunk))
    return hits / len(pairs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    limit_numpy_blas_threads(1)

    train, test = make_pairs(20_000, 2_000, args.seed)
    src_chars, tgt_chars = Chars([s for s, _ in train + test]), Chars([t for _, t in train + test])
    print(f"{len(train):,} training pairs, {len(test):,} held out; e.g. {train[0][0]!r} -> {train[0][1]!r}, "
          f"{train[1][0]!r} -> {train[1][1]!r}")
    model = Seq2Seq(len(src_chars), len(tgt_chars), embed_dim=32, hidden_size=args.hidden, bos_id=BOS, eos_id=EOS,
                    seed=args.seed)
    opt, ce = Adam(model, lr=args.lr), CrossEntropyLoss()
    rng = np.random.default_rng(args.seed + 1)
    start, loss_avg = time.perf_counter(), None
    for step in range(1, args.steps + 1):
        batch = [train[i] for i in rng.integers(0, len(train), args.batch)]
        src, lengths = pad_sequences([src_chars.encode(s) for s, _ in batch], pad=PAD)
        dec_in, dec_out, mask = teacher_forcing([tgt_chars.encode(t) for _, t in batch], BOS, EOS, PAD)
        model.zero_grad()
        loss = ce.forward(model.forward(src, dec_in, lengths), dec_out, mask)
        model.backward(ce.backward())
        clip_grad_norm(model, 1.0)
        opt.step()
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        if step % args.eval_every == 0 and step != args.steps:
            acc = exact_match(model, test[:500], src_chars, tgt_chars)
            print(f"step {step:5d}  loss {loss_avg:.4f}  exact match on 500 held-out {acc:.3f}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    for text, _ in test[:5]:
        src, lengths = pad_sequences([src_chars.encode(text)])
        print(f"  {text!r:32} -> {tgt_chars.decode(model.greedy_decode(src, lengths, 12)[0])!r}")
    acc = exact_match(model, test, src_chars, tgt_chars)
    print(f"{args.steps} steps in {seconds:.0f} s ({args.steps / seconds:.1f} steps/s, "
          f"{fastrnn.get_num_threads()} threads)")
    print(f"exact match on {len(test):,} held-out dates: {acc:.4f}")


if __name__ == "__main__":
    main()
