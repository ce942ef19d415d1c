"""The ``fastrnn`` command line: ``fastrnn bench``, ``fastrnn demo``, ``fastrnn train ...``.

Each command lives in its own module, imported only when it runs (so ``fastrnn --help`` stays fast
and optional dependencies stay optional).
"""
import argparse
import importlib
import sys

# command -> (module, one-line help); the module defines add_arguments(parser) and run(args)
COMMANDS = {
    "bench": ("fastrnn._cli_bench", "time fastrnn against torch, ONNX Runtime, Keras and the NumPy reference"),
    "demo": ("fastrnn._cli_train", "train a character-level language model on Python's own docs, then sample"),
    "train": ("fastrnn._cli_train", "train a model on your data (e.g. fastrnn train charlm --text FILE)"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastrnn", description="fastrnn: fast CPU RNN, LSTM and GRU kernels")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the module of the command being run
            mod = importlib.import_module(module)
            getattr(mod, f"add_{name}_arguments")(cmd_parser)
            cmd_parser.set_defaults(_run=getattr(mod, f"run_{name}"))
    args = parser.parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
