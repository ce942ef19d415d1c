"""``fastrnn bench``: fastrnn side by side with its peers on the grid of issue 4 (DESIGN.md section 4).

Layering (each module has one job; none is imported by ``import fastrnn``):
    grid       the cases: cell, mode, (T, B, D, H), lengths, flops; the full and quick grids; --rows filter
    peers/     one adapter per engine (fastrnn, the NumPy reference, torch, ONNX Runtime, Keras): build
               from shared weights, run one call, return outputs for the correctness check
    timing     round-robin timing of several engines (alternating runs, median per engine)
    machine    environment checks and the machine's sgemm rate (OpenBLAS via ctypes, torch.mm)
    memory     peak memory of one training step, each engine in a fresh subprocess
    runner     one row = one case at one thread count: check, time, compute ratios
    report     the text table, JSON and Markdown
    plot       the speed-up over torch per row (matplotlib)

torch, onnxruntime, tensorflow/keras, matplotlib and tqdm are imported only when used, and a missing
one only empties its column.
"""
