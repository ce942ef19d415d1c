"""One adapter per engine. Each builds its model from the shared Workload and offers:

    set_threads(n)   use n threads from now on (engines with a global setting set it globally)
    run()            one timed call: a no_grad forward (inference), forward + backward with dy = ones
                     (training), or one streaming step whose returned state feeds the next call
    timing_context() entered once around the row's timing: a streaming row's steps run inside one
                     no_grad block, as a streaming loop does (a block per step would cost 0.4 µs in
                     fastrnn and 1.5 µs in torch, against steps of 2-40 µs)
    outputs()        a fresh, untimed call's results as NumPy arrays for the correctness check:
                     y, hn (cn), and for training dx and the parameter gradients under torch's keys

An adapter that cannot serve a case raises Unavailable (its column then shows "-" and the reason
goes to the row's notes). Optional packages are imported inside the adapter that needs them.
"""
import contextlib
import importlib


class Unavailable(Exception):
    """This engine cannot run this case (package missing, export failed, mode unsupported...).
    ``quiet``: the reason is said once in the header, not in every row's notes."""

    def __init__(self, message, quiet=False):
        super().__init__(message)
        self.quiet = quiet


class Peer:
    name = "?"
    label = "?"  # column header

    def __init__(self, case, work):
        self.case = case
        self.work = work

    def set_threads(self, n):
        raise NotImplementedError

    def run(self):
        raise NotImplementedError

    def timing_context(self):
        return contextlib.nullcontext()

    def outputs(self):
        raise NotImplementedError


# engine name -> (module, class); order = column order and round-robin order
ENGINES = {
    "fastrnn": ("fastrnn.bench.peers.fastrnn_peer", "FastrnnPeer"),
    "fastrnn_frozen": ("fastrnn.bench.peers.fastrnn_peer", "FrozenPeer"),  # fastrnn.freeze, inference rows
    "reference": ("fastrnn.bench.peers.fastrnn_peer", "ReferencePeer"),
    "torch": ("fastrnn.bench.peers.torch_peer", "TorchPeer"),
    "torch_cell": ("fastrnn.bench.peers.torch_peer", "TorchCellPeer"),
    "onnxruntime": ("fastrnn.bench.peers.ort_peer", "OrtPeer"),
    "keras": ("fastrnn.bench.peers.keras_peer", "KerasPeer"),
}
PEERS = ("torch", "torch_cell", "onnxruntime", "keras")
# cases of kind "torch_step" time a whole torch training step; the columns are the recurrent module used
TORCH_STEP_ENGINES = {
    "fastrnn": ("fastrnn.bench.peers.torch_step_peer", "DropinStepPeer"),  # fastrnn.torch, the drop-in
    "torch": ("fastrnn.bench.peers.torch_step_peer", "TorchStepPeer"),
}  # the outside engines fastrnn is compared to


def build(name, case, work):
    """The adapter for one engine and case; raises Unavailable when it cannot be built."""
    module, cls = (TORCH_STEP_ENGINES if case.kind == "torch_step" else ENGINES)[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc.name})") from None
    return getattr(mod, cls)(case, work)
