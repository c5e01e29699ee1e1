"""DDP through torchrun: 2 CPU processes (gloo) end with identical weights and metrics."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

import slimspec

REPO = Path(slimspec.__file__).parent.parent

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from safetensors.torch import save_file
    sys.path.insert(0, sys.argv[2])
    from test_train import TinyNet
    from slimspec.data import get_dataset
    from slimspec.training import TrainConfig, train_model

    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = TinyNet(gated=True)
    config = TrainConfig(
        epochs=2, batch_size=32, lr=0.05, sparsity=1e-3, gates="sss", apg_gamma=1e-3, quiet=True, device="cpu"
    )
    result = train_model(model, get_dataset("digits"), config, os.path.join(out, "run"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    history = [{k: v for k, v in r.items() if k != "time"} for r in result.history]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump({"history": history, "world": torch.distributed.is_initialized()}, handle)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_end_identical(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(script), str(tmp_path), str(Path(__file__).parent),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for name in a:  # weights, gates and BN running statistics
        assert torch.equal(a[name], b[name]), name
    ha = json.loads((tmp_path / "rank0.json").read_text())
    hb = json.loads((tmp_path / "rank1.json").read_text())
    assert ha["history"] == hb["history"]  # all-reduced metrics: the same numbers on every rank
    assert not ha["world"]  # train_model() tore down the process group it created
    assert [r["epoch"] for r in ha["history"]] == [1, 2]
    assert ha["history"][-1]["test_accuracy"] > 30.0
    run = tmp_path / "run"  # rank 0 wrote the run files
    assert (run / "last.safetensors").is_file() and (run / "state.pt").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    saved = torch.load(run / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], a[k]) for k in a)
