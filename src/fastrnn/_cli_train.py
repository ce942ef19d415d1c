"""``fastrnn demo`` and ``fastrnn train charlm --text FILE``: train a character language model.

The demo's corpus is the text of Python's own ``pydoc_data.topics`` (about 465 KB of English that
ships with CPython: nothing is downloaded). Held-out = the last 10% of the text. tqdm (progress bar)
and matplotlib (loss plot) are optional.
"""
import math
import os
import sys
import time

import numpy as np

LN2 = math.log(2)
TEMPERATURES = (0.5, 0.8, 1.0)


# ----------------------------------------------------------------------------- arguments
def _common_arguments(parser, demo):
    m = parser.add_argument_group("model")
    m.add_argument("--embed", type=int, default=64, help="embedding size (default 64)")
    m.add_argument("--hidden", type=int, default=256, help="hidden units per layer (default 256)")
    m.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    m.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm", help="recurrent cell (default lstm)")
    m.add_argument("--dropout", type=float, default=0.0, help="dropout between stacked layers (default 0)")
    t = parser.add_argument_group("training")
    t.add_argument("--steps", type=int, default=None if demo else 2000,
                   help="training steps (chunks of batch x seq-len characters); "
                        + ("default: as many as --seconds allows" if demo else "default 2000"))
    t.add_argument("--seconds", type=float, default=60.0 if demo else None,
                   help="stop after this much training time" + (" (default 60)" if demo else " (default: no limit)"))
    t.add_argument("--batch", type=int, default=32, help="parallel streams per step (default 32)")
    t.add_argument("--seq-len", type=int, default=100, help="truncated-BPTT length (default 100)")
    t.add_argument("--sampling", choices=("random", "stream"), default="random",
                   help="random: each chunk is batch windows at random places, from a zero state (default); "
                        "stream: batch contiguous streams, the state carried from chunk to chunk")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    t.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip, 0 = none (default 1.0)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--threads", type=int, default=None, help="fastrnn threads (default: OpenMP's)")
    t.add_argument("--eval-every", type=int, default=250,
                   help="score the held-out text every N steps, 0 = only at the end (default 250)")
    o = parser.add_argument_group("output")
    o.add_argument("--checkpoint", default=None,
                   help="save the model here (.npz, written atomically); resume from it when it exists")
    o.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (default 500)")
    o.add_argument("--plot", default="fastrnn-demo-loss.png" if demo else "charlm-loss.png",
                   help="loss-curve PNG ('' = none; needs matplotlib)")
    o.add_argument("--sample-chars", type=int, default=300, help="characters per sample (default 300)")
    o.add_argument("--prompt", default="The ", help="text the samples start from (default 'The ')")


def add_demo_arguments(parser):
    parser.description = ("Train a character-level LSTM on the text of Python's own documentation "
                          "(pydoc_data.topics, ~465 KB) for about a minute, then report held-out bits "
                          "per character, sample text and plot the loss.")
    _common_arguments(parser, demo=True)


def add_train_arguments(parser):
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    p = sub.add_parser("charlm", help="character-level language model on a text file",
                       description="Train a character-level language model (embedding -> LSTM/GRU/RNN -> "
                                   "softmax) on a UTF-8 text file; the last 10%% is held out.")
    p.add_argument("--text", required=True, help="UTF-8 text file to train on")
    _common_arguments(p, demo=False)


# ----------------------------------------------------------------------------- entry points
def run_demo(args):
    import pydoc_data.topics
    text = "".join(pydoc_data.topics.topics.values())
    print(f"corpus: pydoc_data.topics, {len(text):,} characters (held-out: the last 10%)")
    return train_charlm(text, args)


def run_train(args):
    if args.model != "charlm":
        raise SystemExit(f"fastrnn train: unknown model {args.model!r}")
    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SystemExit(f"fastrnn train charlm: cannot read --text {args.text!r}: {exc.strerror}")
    except UnicodeDecodeError as exc:
        raise SystemExit(f"fastrnn train charlm: --text {args.text!r} is not UTF-8 text: {exc}")
    print(f"corpus: {args.text}, {len(text):,} characters (held-out: the last 10%)")
    return train_charlm(text, args)


# ----------------------------------------------------------------------------- training
def _check_args(args):
    for name in ("embed", "hidden", "layers", "batch", "seq_len", "sample_chars"):
        if getattr(args, name) < (0 if name == "sample_chars" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.steps is None and args.seconds is None:
        raise SystemExit("give --steps or --seconds")
    if args.steps is not None and args.steps < 0:
        raise SystemExit(f"--steps must be >= 0, got {args.steps}")
    if args.seconds is not None and not args.seconds > 0:
        raise SystemExit(f"--seconds must be > 0, got {args.seconds}")
    if not 0 <= args.dropout < 1:
        raise SystemExit(f"--dropout must be in [0, 1), got {args.dropout}")
    if not args.lr > 0 or args.clip < 0:
        raise SystemExit("--lr must be > 0 and --clip >= 0")


def _build(text, args):
    """(model, optimizer, start_step, history): from the checkpoint when it exists, else new."""
    from .models import CharLM
    from .optim import Adam
    from .training import load_model, read_meta

    if args.checkpoint and os.path.exists(args.checkpoint):
        header = read_meta(args.checkpoint)
        model = load_model(args.checkpoint)  # rebuilt from the sizes stored in the file
        optimizer = Adam(model, lr=args.lr)
        load_model(args.checkpoint, model, optimizer)
        meta = header["meta"]
        unknown = sorted(set(text) - set(model.vocab))
        if unknown:
            raise SystemExit(f"{args.checkpoint} was trained on another text: characters {unknown[:10]} "
                             "are not in its vocabulary")
        print(f"resuming from {args.checkpoint} at step {meta.get('step', 0)} "
              f"(model sizes taken from the checkpoint: {_describe(model)})")
        return model, optimizer, int(meta.get("step", 0)), meta.get("history", {"loss": [], "eval": []})
    model = CharLM("".join(sorted(set(text))), args.embed, args.hidden, args.layers, args.cell, args.dropout,
                   seed=args.seed)
    return model, Adam(model, lr=args.lr), 0, {"loss": [], "eval": []}


def _describe(model):
    c = model.config
    return (f"embedding {c['embed_dim']}, {c['num_layers']} {c['cell'].upper()} layer(s) of {c['hidden_size']}, "
            f"vocabulary {model.vocab_size}, {model.num_parameters():,} parameters")


def train_charlm(text, args):
    import fastrnn
    from .nn import CrossEntropyLoss
    from .training import (RandomWindows, StreamBatches, TruncatedBPTT, limit_numpy_blas_threads, save_model,
                           stream_loss)

    _check_args(args)
    if args.threads is not None:
        fastrnn.set_num_threads(args.threads)
    limit_numpy_blas_threads(1)  # see its docstring: NumPy's BLAS threads otherwise fight the kernels'
    split = int(len(text) * 0.9)
    needed = args.batch * args.seq_len + 1
    if split < needed or len(text) - split < 2:
        raise SystemExit(f"the text is too short: its first 90% ({split:,} characters) must exceed "
                         f"--batch x --seq-len = {needed - 1:,}")
    model, optimizer, step, history = _build(text, args)
    ids = model.encode(text)
    train_ids, held_ids = ids[:split], ids[split:]
    if args.sampling == "stream":  # state carried chunk to chunk; the cuts move every epoch (max_shift)
        batches = StreamBatches(train_ids, args.batch, args.seq_len, max_shift=args.seq_len - 1, seed=args.seed)
    else:
        batches = RandomWindows(train_ids, args.batch, args.seq_len, seed=args.seed)
    trainer = TruncatedBPTT(model, CrossEntropyLoss(), optimizer, batches, clip=args.clip or None)
    trainer.steps = step
    print(f"model: {_describe(model)}; batch {args.batch} x {args.seq_len} ({args.sampling}), Adam lr {args.lr}, "
          f"clip {args.clip}, {fastrnn.get_num_threads()} threads")

    def held_out_bpc():
        return stream_loss(model, CrossEntropyLoss(reduction="sum"), held_ids) / LN2

    def checkpoint():
        if args.checkpoint:
            save_model(args.checkpoint, model, optimizer, meta={"step": step, "history": history})

    end = None if args.steps is None else step + args.steps
    bar = _Progress(total=end, initial=step, budget=args.seconds)
    run_steps, train_time, started = 0, 0.0, time.perf_counter()
    try:
        while (end is None or step < end) and (args.seconds is None or train_time < args.seconds):
            t0 = time.perf_counter()
            loss = trainer.step() / LN2
            train_time += time.perf_counter() - t0
            step += 1
            run_steps += 1
            if not math.isfinite(loss):
                raise SystemExit(f"the loss became {loss} at step {step}: try a lower --lr or a --clip")
            history["loss"].append(round(loss, 4))
            bar.update(step, loss, train_time)
            if args.eval_every and step % args.eval_every == 0 and step != end:
                history["eval"].append([step, round(held_out_bpc(), 4)])
                bar.note(f"step {step}: held-out {history['eval'][-1][1]:.3f} bits/char")
            if args.checkpoint and args.save_every and step % args.save_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        print("\ninterrupted: finishing with the model as it is")
    finally:
        bar.close()
    wall = time.perf_counter() - started

    bpc = held_out_bpc()
    if not history["eval"] or history["eval"][-1][0] != step:
        history["eval"].append([step, round(bpc, 4)])
    checkpoint()
    rate = run_steps / train_time if train_time > 0 else float("nan")
    print(f"trained {run_steps} steps in {train_time:.1f} s ({rate:.1f} steps/s; {wall:.1f} s with evaluation)")
    if args.checkpoint:
        print(f"checkpoint: {args.checkpoint} (run the same command again to continue training)")
    print(f"held-out bits per character after {step} steps: {bpc:.3f}")
    prompt = "".join(c for c in args.prompt if c in model.vocab) or model.decode(held_ids[:1])
    if prompt != args.prompt:
        print(f"(the prompt {args.prompt!r} has characters the text lacks; starting from {prompt!r})")
    for temperature in TEMPERATURES:
        sample = model.sample(prompt, args.sample_chars, temperature, seed=args.seed)
        print(f"\n--- sample, temperature {temperature} ---\n{prompt}{sample}")
    print()
    if args.plot:
        _plot(args.plot, history, _describe(model))
    print(f"held-out bits per character: {bpc:.3f} after {step} steps ({rate:.1f} steps/s)")
    return 0


# ----------------------------------------------------------------------------- progress and plot
class _Progress:
    """tqdm when installed, else a line every few seconds. With a time budget and no step count,
    the total is projected from the steps per second so far."""

    def __init__(self, total, initial, budget):
        self.initial, self.budget, self.last_print = initial, budget, 0.0
        self.smoothed = None
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr, mininterval=0.5)
        self.total = total

    def update(self, step, loss, train_time):
        self.smoothed = loss if self.smoothed is None else 0.95 * self.smoothed + 0.05 * loss
        done = step - self.initial
        if self.bar is not None and self.budget is not None and done % 25 == 5:
            projected = self.initial + int(done / train_time * self.budget)  # where the time budget ends
            self.bar.total = max(step, projected if self.total is None else min(projected, self.total))
        if self.bar is not None:
            self.bar.update(1)
            if done % 10 == 1:
                self.bar.set_postfix_str(f"loss {self.smoothed:.3f} bits/char", refresh=False)
        elif train_time - self.last_print >= 5.0 or done == 1:
            self.last_print = train_time
            of = f"/{self.total}" if self.total else ""
            print(f"step {step}{of}  loss {self.smoothed:.3f} bits/char  {done / train_time:.1f} steps/s", flush=True)

    def note(self, message):
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _plot(path, history, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the loss plot (pip install matplotlib)")
        return
    loss = np.asarray(history["loss"], float)
    steps = np.arange(1, len(loss) + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="training chunk")
    if len(loss) >= 20:
        w = max(10, len(loss) // 50)
        ax.plot(steps[w - 1:], np.convolve(loss, np.ones(w) / w, mode="valid"), color="tab:blue",
                label=f"training, mean of {w}")
    if history["eval"]:
        ev = np.asarray(history["eval"], float)
        ax.plot(ev[:, 0], ev[:, 1], "o-", color="tab:red", label="held-out (last 10%)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_ylim(bottom=max(0.0, min(loss.min() if len(loss) else 0, 1.0) - 0.2), top=min(float(loss.max()), 5.0) + 0.1)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"loss curve: {path}")
