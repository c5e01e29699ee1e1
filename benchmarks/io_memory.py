"""Peak memory of whole ``slimspec import`` and ``slimspec export`` processes, this checkout beside an earlier one.

Cases: torchvision's resnet50 and wide_resnet101_2 with random weights (offline, ``--seed 0``).
Each case runs these processes:

* ``slimspec import torchvision:NAME --seed 0`` (writes NAME.yaml and NAME.safetensors);
* a process that only imports torch, slimspec and torchvision and builds the torchvision model:
  the floor of an import, which has to hold that model;
* ``slimspec export NAME.safetensors`` to ``.onnx`` and to ``.pt2``;
* with ``--traced``, also ``slimspec import python:torchvision.models:NAME --input 3,224,224``
  (the same model through the torch.fx importer, a ``graph`` spec, checked against the module).

Each process runs ``--repeat`` times (median of 3 by default), alternating, as a whole process
(python start-up and imports included); peak RSS is the child's ``getrusage`` maximum
(``prune_process.measured``), reported over a base process that only imports torch and
slimspec, as a multiple of the weights file. ``--before REV`` runs the same commands on the
slimspec package of git revision REV too (``git archive`` into a temporary folder; every
process runs ``python -P`` with ``PYTHONPATH`` naming its tree, so neither picks up the
other), side by side, after checking that both trees write the same bytes (weights, spec,
ONNX, .pt2) and report the same max abs difference. For that check each tree is run from one
and the same folder in turn: ONNX and .pt2 files hold the stack trace of every traced
operation, with the path of slimspec's source.

Run: ``python benchmarks/io_memory.py [--case resnet50,wide_resnet101_2] [--repeat 3] [--before REV] [--traced]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import run_cases
from prune_process import measured

ROOT = Path(__file__).resolve().parents[1]
CASES = ("resnet50", "wide_resnet101_2")
FORMATS = ("onnx", "pt2")


def slimspec_tree(rev: str, folder: Path) -> Path:
    """The ``slimspec`` package of git revision ``rev``, extracted under ``folder`` (the checkout is not touched)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "slimspec"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def python(tree: Path, *args: str) -> list[str]:
    """A python command that imports slimspec from ``tree`` alone (``-P``: not from the working directory)."""
    return ["env", f"PYTHONPATH={tree}", sys.executable, "-P", *args]


def commands(case: str, tree: Path, out: Path, traced: bool) -> dict[str, list[str]]:
    """The processes measured for one case and one slimspec tree, writing under ``out``."""
    weights = out / f"{case}.safetensors"
    cmds = {"base (import torch, slimspec)": python(tree, "-c", "import torch, slimspec"),
            "torchvision model alone": python(tree, "-c", f"import torch, slimspec, torchvision; "
                                                          f"torchvision.models.{case}()"),
            "import": python(tree, "-m", "slimspec", "import", f"torchvision:{case}", "--seed", "0",
                             "--out", str(out / f"{case}.yaml"), "--force")}
    if traced:
        cmds["import python: (traced)"] = python(tree, "-m", "slimspec", "import", f"python:torchvision.models:{case}",
                                                 "--input", "3,224,224", "--seed", "0",
                                                 "--out", str(out / f"{case}_traced.yaml"), "--force")
    for fmt in FORMATS:
        cmds[f"export {fmt}"] = python(tree, "-m", "slimspec", "export", str(weights), "--out",
                                       str(out / f"{case}.{fmt}"), "--force", "--json")
    return cmds


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def outputs(case: str, tree: Path, out: Path, traced: bool) -> dict[str, str]:
    """Run every command once (untimed): what each writes (sha256) and each export's reported max abs difference."""
    found: dict[str, str] = {}
    for name, cmd in commands(case, tree, out, traced).items():
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"{case}: {name} failed ({tree}):\n{run.stderr[-3000:]}")
        if name.startswith("export"):
            found[f"{name}: max abs diff"] = str(json.loads(run.stdout)["max_abs_diff"])
    for path in sorted(out.iterdir()):
        if path.suffix in (".yaml", ".safetensors", ".onnx", ".pt2"):
            found[path.name] = digest(path)
    return found


def run_case(case: str, trees: dict[str, Path], repeat: int, folder: Path, traced: bool) -> dict:
    outs = {label: folder / label for label in trees}
    checked, common = {}, folder / "tree"
    for label, tree in trees.items():
        shutil.rmtree(common, ignore_errors=True)  # every tree checked from one path (see the docstring)
        shutil.copytree(tree / "slimspec", common / "slimspec", ignore=shutil.ignore_patterns("__pycache__"))
        outs[label].mkdir()
        checked[label] = outputs(case, common, outs[label], traced)
    if len({json.dumps(found, sort_keys=True) for found in checked.values()}) != 1:
        raise SystemExit(f"{case}: the trees write different outputs: {json.dumps(checked, indent=2)}")
    cmds = {label: commands(case, tree, outs[label], traced) for label, tree in trees.items()}
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {label: {n: [] for n in c} for label, c in cmds.items()}
    for _ in range(repeat):
        for name in next(iter(cmds.values())):
            for label in trees:
                samples[label][name].append(measured(cmds[label][name]))
    medians = {label: {name: (statistics.median(w for w, _ in s), statistics.median(r for _, r in s))
                       for name, s in by_name.items()} for label, by_name in samples.items()}
    weights = outs[next(iter(trees))] / f"{case}.safetensors"
    return {"case": case, "weights_mib": weights.stat().st_size / 2**20, "repeat": repeat,
            "outputs": checked[next(iter(trees))], "medians": medians, "samples": samples}


def report(result: dict) -> str:
    labels = list(result["medians"])
    size = result["weights_mib"]
    lines = [f"{result['case']}: weights {size:.0f} MiB; median of {result['repeat']} alternating runs per process; "
             f"outputs identical in {', '.join(labels)}",
             "  " + f"{'process':30s}" + "".join(f" {label + ': wall s, peak MiB, over base':>42s}"
                                                  for label in labels)]
    first = next(iter(result["medians"].values()))
    for name in first:
        row = f"  {name:30s}"
        for label in labels:
            wall, rss = result["medians"][label][name]
            base = result["medians"][label]["base (import torch, slimspec)"][1]
            over = "" if name.startswith("base") else f"{rss - base:6.0f} = {(rss - base) / size:5.2f}x weights"
            row += f" {wall:7.2f} {rss:7.0f} {over:>26s}"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=",".join(CASES),
                        help=f"comma-separated torchvision models ({', '.join(CASES)})")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also run the slimspec of this git revision, side by side")
    parser.add_argument("--traced", action="store_true", help="also import the model as python: (torch.fx)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this checkout": ROOT}
        if args.before:
            trees = {f"before ({args.before})": slimspec_tree(args.before, Path(tmp) / "before"), **trees}
        run_cases(args.case.split(","), lambda case, work: run_case(case, trees, args.repeat, work, args.traced),
                  report, args.json)


if __name__ == "__main__":
    main()
