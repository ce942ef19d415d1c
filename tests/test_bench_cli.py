"""`fastrnn bench` machinery on tiny shapes: it runs, checks engines against each other and writes
sane JSON / Markdown. No timing is asserted (benchmarks are not tests)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn.__main__ import main
from fastrnn.bench import grid, machine, report
from fastrnn.bench.grid import Case
from fastrnn.bench.runner import Settings, run

FAST = dict(min_sample_s=1e-4, min_rounds=2, max_rounds=2, budget_s=0.0, reference_limit_s=5.0)


def tiny_cases():
    cases = [Case(cell, mode, "tiny", 3, 2, 4, 5) for cell in ("rnn", "lstm", "gru") for mode in grid.MODES]
    cases.append(Case("rnn_relu", "training", "tiny", 3, 2, 4, 5))
    cases.append(Case("lstm", "training", "varlen", 4, 3, 4, 5, kind="varlen", lengths=(2, 4, 3)))
    cases.append(Case("gru", "inference", "stream", 1, 1, 4, 5, kind="stream"))
    return cases


@pytest.fixture(autouse=True)
def _restore_numpy_blas_threads():
    previous = machine.set_numpy_blas_threads(1)  # the runner sets them for the reference
    yield
    if previous is not None:
        machine.set_numpy_blas_threads(previous)


def check_row(row, engines):
    assert set(engines) <= set(row["ms"])
    assert all(v > 0 for v in row["ms"].values())
    assert row["gflops"] > 0 and row["flops"] > 0
    assert row["check"]["ok"].get("fastrnn") is True, row["notes"]
    assert row["check"]["max_abs_diff"]["fastrnn"] < 1e-4


def test_runner_fastrnn_vs_reference_on_every_kind_of_row():
    settings = Settings(threads=(1, 2), engines=("fastrnn", "reference"), **FAST)
    rows = list(run(tiny_cases(), settings))
    assert len(rows) == 2 * len(tiny_cases())
    for row in rows:
        assert row["check"]["oracle"] == "reference"
        check_row(row, ["fastrnn", "reference"])
        assert row["speedup_vs_reference"] > 0
        assert row["best_peer"] is None and row["speedup_vs_best_peer"] is None  # no outside peer ran
    assert [r["threads"] for r in rows[:2]] == [1, 2]


def test_runner_times_the_frozen_snapshot_on_inference_rows():
    settings = Settings(threads=(1,), engines=("fastrnn", "fastrnn_frozen", "reference"), **FAST)
    for row in run(tiny_cases(), settings):
        if row["mode"] == "inference":
            check_row(row, ["fastrnn", "fastrnn_frozen", "reference"])
            assert row["check"]["ok"]["fastrnn_frozen"] and row["check"]["max_abs_diff"]["fastrnn_frozen"] < 1e-4
        else:
            assert "fastrnn_frozen" not in row["ms"]
        assert row["best_peer"] is None and row["frozen_vs_best_peer"] is None  # not a peer of fastrnn


def test_runner_with_torch_and_onnxruntime():
    pytest.importorskip("torch")
    settings = Settings(threads=(1,), engines=("fastrnn", "torch", "torch_cell", "onnxruntime"), **FAST)
    rows = {r["name"]: r for r in run(tiny_cases(), settings)}
    for row in rows.values():
        assert row["check"]["oracle"] == "torch"
        check_row(row, ["fastrnn", "torch"])
        assert row["best_peer"] in ("torch", "torch_cell", "onnxruntime")
    assert "torch_cell" in rows["gru/stream/inference"]["ms"]
    assert "torch_cell" not in rows["lstm/tiny/training"]["ms"]
    if "onnxruntime" in rows["lstm/tiny/inference"]["ms"]:  # when onnxruntime is installed
        assert rows["lstm/tiny/inference"]["check"]["ok"]["onnxruntime"]
        assert rows["gru/stream/inference"]["check"]["ok"]["onnxruntime"]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_onnxruntime_streaming_steps_pass_the_state_back_through_their_bindings(cell):
    """The ORT peer's timed calls write into buffers bound once; a streaming step's state must still
    feed the next call: three calls equal three steps of the layer."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from fastrnn.bench.peers.ort_peer import OrtPeer
    from fastrnn.bench.workload import make_layer, make_workload

    case = Case(cell, "inference", "stream", 1, 2, 4, 5, kind="stream")
    work = make_workload(case)
    peer = OrtPeer(case, work)
    peer.set_threads(1)
    for _ in range(3):
        binding = peer.run()
    outputs = binding.copy_outputs_to_cpu()  # y, hn (, cn) of the third call
    layer = make_layer(fastrnn, case)
    layer.load_state_dict(work.weights)
    hx = (work.h0, work.c0) if cell == "lstm" else work.h0
    for _ in range(3):
        y, hx = layer(work.x, hx)
    expected = [y] + (list(hx) if cell == "lstm" else [hx])
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs[1], work.h0, atol=1e-3)  # the state moved


def test_onnxruntime_batch_rows_write_their_own_output_buffers():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from fastrnn.bench.peers.ort_peer import OrtPeer
    from fastrnn.bench.workload import make_workload

    case = Case("gru", "inference", "tiny", 3, 2, 4, 5)
    work = make_workload(case)
    peer = OrtPeer(case, work)
    peer.set_threads(1)
    first = peer.run().copy_outputs_to_cpu()
    second = peer.run().copy_outputs_to_cpu()  # the same call again: the same results
    want = peer.outputs()
    for got in (first, second):
        np.testing.assert_array_equal(got[0], want["y"])
        np.testing.assert_array_equal(got[1], want["hn"])


def test_torch_step_rows_compare_the_drop_in_with_torch_nn():
    pytest.importorskip("torch")
    settings = Settings(threads=(1,), engines=("fastrnn", "reference", "torch"), **FAST)
    cases = [Case(cell, "training", "torch-step", 3, 2, 4, 5, kind="torch_step") for cell in ("rnn", "lstm", "gru")]
    for row in run(cases, settings):
        assert set(row["ms"]) == {"fastrnn", "torch"}  # the reference has no torch training step
        assert row["check"]["oracle"] == "torch"
        check_row(row, ["fastrnn", "torch"])
        assert "fastrnn.torch" in report.shape_label(row)
    assert {"rnn/torch-step/training", "lstm/torch-step/training"} <= {c.name for c in grid.full_grid()}


def test_cli_writes_json_markdown_and_reads_it_back(tmp_path, capsys):
    out, md = tmp_path / "out.json", tmp_path / "BENCH.md"
    md.write_text("# Title\n\nhand-written text\n")
    argv = ["bench", "--quick", "--rows", "rnn/small/inference,gru/stream", "--threads", "1",
            "--engines", "fastrnn,reference", "--json", str(out), "--markdown", str(md), "--no-progress",
            "--budget", "0"]
    assert main(argv) == 0
    assert fastrnn.get_num_threads() == 1  # (the test fixture restores it)
    printed = capsys.readouterr().out
    assert "rnn" in printed and "fastrnn ms" in printed and "sgemm 1024^3" in printed
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["rnn/small/inference", "gru/stream/inference"]
    assert data["meta"]["sgemm_gflops"]["1"] > 0
    for row in data["rows"]:
        check_row(row, ["fastrnn", "reference"])
        assert 0 < row["pct_sgemm"]
        assert row["flops"] == Case(row["cell"], row["mode"], row["size"], row["T"], row["B"], row["D"], row["H"]).flops
    text = md.read_text()
    assert text.startswith("# Title\n\nhand-written text") and report.BEGIN in text and "### 1 thread" in text

    # regenerate from the JSON: the generated section is replaced, not appended
    assert main(["bench", "--from-json", str(out), "--markdown", str(md)]) == 0
    assert md.read_text().count(report.BEGIN) == 1


def test_runs_per_thread_count_merge_with_every_command_shown(tmp_path, capsys, monkeypatch):
    # Keras's threads are fixed per process, so a full table with it is one run per thread count, merged
    def fastrnn_cli(argv):
        monkeypatch.setattr(sys, "argv", ["fastrnn", *argv])  # the command line a table shows
        return main(argv)

    runs = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.json"
        assert fastrnn_cli(["bench", "--quick", "--rows", "rnn/small/inference", "--threads", str(threads),
                            "--engines", "fastrnn,reference", "--json", str(path), "--no-progress",
                            "--budget", "0"]) == 0
        data = json.loads(path.read_text())
        data["meta"]["missing"] = ["tensorflow", "onnxruntime"] if threads == 1 else ["onnxruntime"]
        path.write_text(json.dumps(data))
        runs.append((path, data["meta"]["command"]))
    merged, md = tmp_path / "merged.json", tmp_path / "BENCH.md"
    assert fastrnn_cli(["bench", "--from-json", f"{runs[0][0]},{runs[1][0]}", "--json", str(merged),
                        "--markdown", str(md)]) == 0
    capsys.readouterr()
    meta = json.loads(merged.read_text())["meta"]
    assert meta["threads"] == [1, 2] and set(meta["sgemm_gflops"]) == {"1", "2"}
    assert meta["missing"] == ["onnxruntime"]  # the second run had tensorflow
    lines = meta["command"].split("\n")
    assert lines[:2] == [runs[0][1], runs[1][1]] and lines[2].startswith("fastrnn bench --from-json")
    assert "--threads 1" in lines[0] and "--threads 2" in lines[1]
    text = md.read_text()
    assert meta["command"] in text and "### 2 threads" in text and "### 1 thread" in text
    assert "not installed: onnxruntime\n" in text


def test_header_names_the_caches_the_kernels_plan_with():
    from fastrnn import _kernels

    sizes = machine.cache_sizes()
    assert sizes["L2"] == _kernels.l2_cache_bytes() > 0
    meta = {"versions": {"fastrnn": "x"}, "caches": sizes}
    assert f"L2 {sizes['L2'] / 2**20:.3g} MB" in report.header_lines(meta)[0]


def test_round_robin_lets_spinning_thread_pools_settle_after_their_engine(monkeypatch):
    from fastrnn.bench import timing

    log = []  # engine names as they run, ("sleep", seconds) as the runner pauses
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: log.append(("sleep", seconds)))
    runners = {name: (lambda name=name: log.append(name)) for name in ("blas", "other")}
    timings = timing.round_robin(runners, min_sample_s=0.0, min_rounds=3, max_rounds=3, budget_s=0.0,
                                 warm=set(runners), settle_s=0.005, settle_after={"blas": 0.15})
    assert all(len(t.samples) >= 3 for t in timings.values())
    sleeps, last = [], None
    for entry in log:
        if isinstance(entry, tuple):
            sleeps.append((last, entry[1]))
        else:
            last = entry
    assert sleeps and {s for _, s in sleeps} == {0.005, 0.15}
    assert all(seconds == (0.15 if engine == "blas" else 0.005) for engine, seconds in sleeps)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from fastrnn.bench.plot import plot_speedup

    rows = [{"name": "lstm/small/training", "threads": t, "speedup_vs_torch": s} for t, s in ((1, 1.5), (2, 0.8))]
    plot_speedup(rows, tmp_path / "speedup.png")
    assert (tmp_path / "speedup.png").read_bytes()[:4] == b"\x89PNG"


def test_grid_and_row_filter():
    cases = grid.full_grid()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    assert {"lstm/large/training", "rnn_relu/db-relu/training", "gru/varlen/inference", "rnn/stream/inference"} <= set(names)
    varlen = next(c for c in cases if c.size == "varlen")
    assert all(varlen.T // 2 <= n <= varlen.T for n in varlen.lengths)
    assert varlen.steps == sum(varlen.lengths) < varlen.T * varlen.B
    lstm_large = next(c for c in cases if c.name == "lstm/large/training")
    assert lstm_large.flops == 3 * 2 * 50 * 64 * 4 * 512 * (512 + 512)
    assert [c.name for c in grid.select(cases, ["gru/large"])] == ["gru/large/inference", "gru/large/training"]
    assert all(c.size == "stream" for c in grid.select(cases, ["*/stream/*"]))
    assert set(grid.quick_grid()) <= set(cases)


def test_importing_fastrnn_and_the_bench_grid_imports_no_optional_package():
    code = ("import sys, fastrnn, fastrnn.bench.grid, fastrnn.bench.report, fastrnn._cli_bench; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorflow', 'matplotlib', 'tqdm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_other_load_probe():
    for load in (machine.OtherLoad().start().stop(), machine.wait_for_quiet(0.0, probe_s=0.01)):
        assert load is None or load >= 0.0  # cores used by other processes (None without /proc/stat)


def test_compare_flags_a_wrong_output():
    from fastrnn.bench.runner import compare

    y = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2)
    assert compare({"y": y}, {"y": y.copy()}) == (0.0, 0.0)
    abs_diff, scaled = compare({"y": y + 0.01}, {"y": y})
    assert abs_diff == pytest.approx(0.01, rel=1e-3) and scaled > 1e-3
    assert compare({"y": y[:1]}, {"y": y})[1] == float("inf")
    assert compare({"y": np.full_like(y, np.nan)}, {"y": y})[1] == float("inf")
