"""Pruning from the file (no model built) writes the same bytes as the model path, on every stock spec.

Every data-free structured criterion (l1, slimming, random, attention-weight; gate and sss on
gated weights) and ``magnitude`` (unstructured masks: a streamed radix select must make the
stable sort's cut, ties included) run both ways — ``prune(..., from_file=True)`` streams the new file from the
memory-mapped source, ``from_file=False`` loads the model and transplants its state — and the
two weights files and specs must be identical byte for byte (or both prunes refused with the
same message). Small specs run in the default suite, the large ones under ``-m slow``.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save

import slimspec
from slimspec.errors import PruneError, WeightsError
from slimspec.ir import count_params
from slimspec.pruning.api import prune
from slimspec.pruning import radix, unstructured
from slimspec.pruning.criteria import Criterion, criteria
from slimspec.pruning.options import PruneOptions
from slimspec.pruning.policy import keep_count
from slimspec.pruning.steps import from_file_reason
from slimspec.weights import MappedWeights, weights_metadata, weights_writer

from .conftest import ALL_SPECS, randomize

DATA_FREE = sorted(name for name, c in criteria().items()
                   if c.structured and not c.needs_model and not c.reads_calibration and not c.needs_gates)
GATED = sorted(name for name, c in criteria().items() if c.needs_gates)
SMALL_PARAMS = 1_200_000  # specs up to this size run in the default suite


def _sized(names):
    return [name if count_params(slimspec.load_spec(name).ir) <= SMALL_PARAMS
            else pytest.param(name, marks=pytest.mark.slow) for name in names]


@pytest.fixture(scope="module")
def weights_of(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    made = {}

    def make(name: str, mode: str = "plain"):
        if (name, mode) not in made:
            model = randomize(slimspec.build(name, mode, seed=0), 0)
            path = folder / f"{name}_{mode}.safetensors"
            slimspec.save_weights(model, model.spec, path)
            made[name, mode] = path
        return made[name, mode]

    return make


def outcome(weights, method, folder, from_file, **options):
    """``(spec bytes, weights bytes)`` of one prune, or the error it raised."""
    try:
        result = prune(weights, method, from_file=from_file, **options)
    except (PruneError, WeightsError) as exc:
        return f"{type(exc).__name__}: {exc}"
    assert result.model_built is not from_file  # the file path builds nothing unless asked
    spec_path, weights_path = result.save(folder / f"{method}_{from_file}.yaml")
    assert result.model_built is not from_file  # ... not even to save
    return spec_path.read_bytes(), weights_path.read_bytes()


def assert_same(weights, method, folder, **options):
    from_file = outcome(weights, method, folder, True, **options)
    assert from_file == outcome(weights, method, folder, False, **options)
    return from_file


@pytest.mark.parametrize("name", _sized(ALL_SPECS))
@pytest.mark.parametrize("method", DATA_FREE)
def test_file_and_model_paths_write_the_same_bytes(weights_of, tmp_path, name, method):
    result = assert_same(weights_of(name), method, tmp_path, ratio=0.4)
    assert isinstance(result, tuple) or method == "slimming" and "found nothing to score" in result  # no BN


@pytest.mark.parametrize("name", _sized(ALL_SPECS))
@pytest.mark.parametrize("method", GATED)
def test_gated_weights_same_bytes(weights_of, tmp_path, name, method):
    weights = weights_of(name, "gated")
    assert isinstance(assert_same(weights, method, tmp_path), tuple)  # gates at zero removed, the rest folded
    assert isinstance(assert_same(weights, method, tmp_path / "ratio", ratio=0.3), tuple)


@pytest.mark.parametrize("name", ["digits_resnet", "resnet20", "digits_preresnet"])
def test_global_threshold_target_and_stream_same_bytes(weights_of, tmp_path, name):
    weights = weights_of(name)
    assert_same(weights, "slimming", tmp_path / "t", threshold=0.3)
    assert_same(weights, "l1", tmp_path / "s", ratio=0.3, prune_stream=True, round_to=4)
    assert_same(weights, "l1", tmp_path / "m", target="macs=0.5")


def test_masked_source_same_bytes(tmp_path):
    model = randomize(slimspec.build("digits_vgg", "masked", seed=0), 0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("weight_mask"):
                buffer[torch.rand(buffer.shape, generator=torch.Generator().manual_seed(3)) < 0.2] = 0
    path = tmp_path / "masked.safetensors"
    slimspec.save_weights(model, model.spec, path)
    spec, weights = assert_same(path, "l1", tmp_path, ratio=0.5)
    assert b"weight_mask" in weights


def test_pruned_model_is_built_on_demand_and_equals_the_file(weights_of, tmp_path):
    weights = weights_of("digits_resnet")
    result = prune(weights, "l1", ratio=0.5)
    assert not result.model_built and "PruneResult" in repr(result) and not result.model_built
    _, written = result.save(tmp_path / "p.yaml")
    model = result.model
    assert result.model_built and result.model is model
    loaded, _ = slimspec.load_model(written)
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    original, _ = slimspec.load_model(weights)
    assert all(torch.equal(a, b) for a, b in zip(result.source_model.state_dict().values(),
                                                 original.state_dict().values()))


def test_from_file_refuses_what_needs_a_model(weights_of):
    weights = weights_of("digits_vgg")

    class AllAtOnce(Criterion):  # an unstructured criterion that cannot score one weight at a time
        name, structured = "all-at-once", False

        def score(self, ctx):
            return {}

    assert "masks single weights" in from_file_reason(weights, AllAtOnce(), PruneOptions(method="all-at-once"))
    with pytest.raises(PruneError, match="runs the model on data"):
        prune(weights, "attention", ratio=0.5, calibration="digits", calibration_batches=1, from_file=True)
    with pytest.raises(PruneError, match="needs the whole state"):
        prune(weights, "slimming", ratio=0.5, fold_bias=True, from_file=True)


def test_refusals_match_the_model_path(weights_of, tmp_path):
    weights = weights_of("digits_vgg")
    other = weights_of("digits_lenet")
    spec = slimspec.load_spec("digits_lenet")
    for kwargs in ({"spec": spec},):  # weights that do not fit the spec: the same located line
        a = outcome(weights, "l1", tmp_path, True, ratio=0.5, **kwargs)
        assert a == outcome(weights, "l1", tmp_path, False, ratio=0.5, **kwargs)
        assert a.startswith("WeightsError") and "weights do not fit the spec" in a
    model, loaded = slimspec.load_model(other)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    slimspec.save_weights(model, loaded, bad)
    a = outcome(bad, "l1", tmp_path, True, ratio=0.5)
    assert a == outcome(bad, "l1", tmp_path, False, ratio=0.5) and "NaN or inf" in a


@pytest.mark.parametrize("payload", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{}",
                                     b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":{}}"])
def test_unreadable_files_are_one_line(tmp_path, payload):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(payload)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        MappedWeights(path)


def test_mapped_tensors_equal_the_loaded_ones_and_release_their_pages(weights_of):
    from safetensors.torch import load_file

    path = weights_of("resnet20")
    with MappedWeights(path) as mapped:
        loaded = load_file(path)
        assert sorted(mapped) == sorted(loaded) and len(mapped) == len(loaded)
        for name in loaded:
            assert torch.equal(mapped[name], loaded[name]) and mapped.info(name).shape == tuple(loaded[name].shape)
        views = [mapped.view(name) for name in loaded]  # views stay valid after their pages are released
        mapped.release()
        assert all(torch.equal(v, loaded[n]) for v, n in zip(views, loaded))


def test_streamed_writer_matches_safetensors_own_bytes(tmp_path):
    """The streaming writer's file is safetensors' own serialization, with the metadata keys sorted."""
    g = torch.Generator().manual_seed(0)
    state = {"b.weight": torch.randn(3, 4, generator=g), "a.count": torch.tensor(7), "z.half": torch.randn(5).half(),
             "m.mask": torch.rand(6, generator=g) > 0.5, "e.empty": torch.empty(0), "i.idx": torch.arange(4),
             "f.bf": torch.randn(3, generator=g).bfloat16(), "d.double": torch.randn(2, dtype=torch.float64)}
    meta = weights_metadata("name: x\n", {"z": "last", "a": {"k": 1}})
    raw = save(state, metadata=meta)
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps({"__metadata__": header.pop("__metadata__")} | header, separators=(",", ":"),
                      ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    expected = len(text).to_bytes(8, "little") + text + raw[8 + size:]
    path = tmp_path / "w.safetensors"
    weights_writer(state, "name: x\n", {"z": "last", "a": {"k": 1}})(path)
    assert path.read_bytes() == expected


# magnitude: unstructured masks from the file (a radix select) against the model path (a stable sort)

def _tie_heavy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights on a coarse grid (every value shared by many weights), a fifth of them exactly 0 or -0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("weight") and tensor.dim() > 1:
                tensor.copy_((torch.randn(tensor.shape, generator=generator) * 4).round() / 8)
                zero = torch.rand(tensor.shape, generator=generator) < 0.2
                tensor[zero] = torch.where(torch.rand(tensor.shape, generator=generator) < 0.5, 0.0, -0.0)[zero]
            elif name.endswith("weight_mask"):
                tensor[torch.rand(tensor.shape, generator=generator) < 0.3] = 0
    return model


@pytest.fixture(scope="module")
def masks_of(tmp_path_factory):
    """``make(name, mode, dtype, ties)``: a weights file to prune with magnitude (made once)."""
    folder = tmp_path_factory.mktemp("magnitude")
    made = {}

    def make(name: str, mode: str = "plain", dtype: torch.dtype = torch.float32, ties: bool = False):
        key = name, mode, dtype, ties
        if key not in made:
            model = randomize(slimspec.build(name, mode, seed=0), 0)
            model = (_tie_heavy(model) if ties else model).to(dtype)
            made[key] = folder / f"{name}_{mode}_{str(dtype)[6:]}_{ties}.safetensors"
            slimspec.save_weights(model, model.spec, made[key])
        return made[key]

    return make


MAGNITUDE_SMALL = 300_000  # magnitude runs a radix select per tensor: bigger specs under -m slow


@pytest.mark.parametrize("name", [name if count_params(slimspec.load_spec(name).ir) <= MAGNITUDE_SMALL
                                  else pytest.param(name, marks=pytest.mark.slow) for name in ALL_SPECS])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_file_and_model_paths_write_the_same_bytes(masks_of, tmp_path, name, scope):
    spec, weights = assert_same(masks_of(name), "magnitude", tmp_path, ratio=0.5, scope=scope)
    assert b"weight_mask" in weights and b"method: magnitude" in spec


TIE_HEAVY = ["digits_vgg", "digits_graph", *(pytest.param(name, marks=pytest.mark.slow)
                                             for name in ("digits_resnet", "digits_mobilenetv2", "digits_densenet"))]


@pytest.mark.parametrize("name", TIE_HEAVY)
@pytest.mark.parametrize("mode", ["plain", "masked"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_magnitude_ties_masked_sources_and_half_files_same_bytes(masks_of, tmp_path, name, mode, dtype):
    """Most weights tie (a coarse grid, many zeros of both signs; masked weights score 0), so the cut falls
    inside a run of equal values and only the ties stored first may go: in each scope, amount and dtype."""
    weights = masks_of(name, mode, dtype, ties=True)
    for i, options in enumerate([{"ratio": 0.1}, {"ratio": 0.5}, {"ratio": 0.37, "scope": "layer"},
                                 {"target": {"params": 0.4}}, {"target": "params=0.8", "scope": "layer"}]):
        spec, written = assert_same(weights, "magnitude", tmp_path / str(i), **options)
        assert b"weight_mask" in written


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_nothing_or_almost_everything_same_bytes(masks_of, tmp_path, scope):
    weights = masks_of("digits_lenet", "masked", ties=True)
    for ratio in (0.0, 0.999):
        assert_same(weights, "magnitude", tmp_path / str(ratio), ratio=ratio, scope=scope)


@pytest.mark.parametrize("name", _sized(["digits_densenet", "resnet20", "mobilenetv2_cifar", "vgg19", "resnet50"]))
def test_magnitude_larger_specs_targets_and_ties_same_bytes(masks_of, tmp_path, name):
    assert_same(masks_of(name), "magnitude", tmp_path / "t", target="params=0.3")
    assert_same(masks_of(name, "masked", ties=True), "magnitude", tmp_path / "g", ratio=0.45)
    assert_same(masks_of(name, ties=True), "magnitude", tmp_path / "l", ratio=0.45, scope="layer")


def test_magnitude_refusals_match_the_model_path(weights_of, masks_of, tmp_path):
    gated = weights_of("digits_vgg", "gated")
    a = outcome(gated, "magnitude", tmp_path, True, ratio=0.5)
    assert a == outcome(gated, "magnitude", tmp_path, False, ratio=0.5)
    assert a == "PruneError: magnitude pruning of gated weights: prune the gates first (method 'gate')"
    weights = masks_of("digits_vgg")
    for options, message in (({"target": "macs=0.5"}, "only a 'params' target"), ({}, "needs --ratio"),
                             ({"ratio": 0.5, "exclude": ["nothing*"]}, "matches no layer whose weights are masked"),
                             ({"ratio": 0.5, "overrides": {"cfg[0]": 0.1}}, "overrides pick channel slots")):
        a = outcome(weights, "magnitude", tmp_path, True, **options)
        assert a == outcome(weights, "magnitude", tmp_path, False, **options) and message in a


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_excludes_layers_by_spec_path_same_bytes(masks_of, tmp_path, scope):
    weights = masks_of("digits_resnet", "masked", ties=True)
    exclude = ["stem", "stages[1].blocks[1]", "num_classes"]
    assert_same(weights, "magnitude", tmp_path, ratio=0.6, scope=scope, exclude=exclude)
    source, _ = slimspec.load_model(weights)
    result = prune(weights, "magnitude", ratio=0.6, scope=scope, exclude=exclude)
    untouched = {"stem.conv.weight", "layer2.1.conv1.weight", "layer2.1.conv2.weight", "fc.weight"}
    assert {row.slot for row in result.report}.isdisjoint(untouched)
    before, after = source.state_dict(), result.model.state_dict()
    for name in untouched:  # weight and mask as they were (a masked source keeps its own masks)
        assert torch.equal(after[name], before[name]) and torch.equal(after[f"{name}_mask"], before[f"{name}_mask"])
    masked = [name for name in result.model.state_dict() if name.endswith("weight_mask")]
    scored = [name[: -len("_mask")] for name in masked if name[: -len("_mask")] not in untouched]
    dropped = sum(int((after[f"{name}_mask"] == 0).sum()) for name in scored)
    total = sum(after[name].numel() for name in scored)
    per_layer = sum(after[name].numel() - keep_count(after[name].numel(), 0.6) for name in scored)
    assert dropped == (total - keep_count(total, 0.6) if scope == "global" else per_layer)
    assert result.spec.data["pruned"]["options"] == {"exclude": exclude}


def test_magnitude_warns_when_a_smaller_ratio_unmasks_the_source_s_masks(masks_of, tmp_path):
    first = prune(masks_of("digits_vgg"), "magnitude", ratio=0.6)
    _, masked = first.save(tmp_path / "m60.yaml")
    for ratio, scope, warned in ((0.8, "global", False), (0.3, "global", True), (0.3, "layer", True)):
        assert_same(masked, "magnitude", tmp_path / f"{ratio}{scope}", ratio=ratio, scope=scope)
        for from_file in (True, False):
            result = prune(masked, "magnitude", ratio=ratio, scope=scope, from_file=from_file)
            notes = [note for note in result.notes if "unmasked again" in note]
            assert len(notes) == warned
            if warned:  # each weight: its old zeros beyond the new mask's
                model = result.model.state_dict()
                old = first.model.state_dict()
                back = sum(int(((old[k] == 0) & (model[k] == 1)).sum()) for k in old if k.endswith("weight_mask"))
                assert back > 0 and notes[0].startswith(f"warning: {back:,} weights the source masks")


def test_magnitude_ignores_channel_options_with_a_warning_and_records_the_defaults(masks_of, tmp_path):
    weights = masks_of("digits_vgg")
    plain = assert_same(weights, "magnitude", tmp_path / "plain", ratio=0.5)
    for options in ({"round_to": "auto"}, {"round_to": 8, "min_channels": 3, "prune_stream": True}):
        assert assert_same(weights, "magnitude", tmp_path / str(len(options)), ratio=0.5, **options) == plain
        result = prune(weights, "magnitude", ratio=0.5, **options)
        warning, = [note for note in result.notes if note.startswith("warning:")]
        assert all(f"{key}={value}" in warning for key, value in options.items()) and warning.endswith("ignored")
        assert result.spec.data["pruned"]["round_to"] == 1 and "options" not in result.spec.data["pruned"]


def test_magnitude_from_the_file_holds_no_model_and_no_pooled_scores(masks_of, tmp_path, monkeypatch):
    """The file path never builds a model, pools the scores (``_masks``) or sorts; the model and the source
    are built when read, and equal the model path's."""
    weights = masks_of("digits_resnet", "masked", ties=True)
    expected = prune(weights, "magnitude", ratio=0.6, from_file=False)

    def refused(*args, **kwargs):
        raise AssertionError("the file path built a model or pooled the scores")

    import slimspec.pruning.filewise as filewise

    for module, name in ((unstructured, "_masks"), (unstructured, "build"), (filewise, "load_model"),
                         (filewise, "build_from_state"), (torch, "sort"), (torch, "cat")):
        monkeypatch.setattr(module, name, refused)
    result = prune(weights, "magnitude", ratio=0.6, fold_bias=True)  # fold_bias: ignored with a warning
    _, written = result.save(tmp_path / "m.yaml")
    assert not result.model_built and result.report == expected.report and result.params == expected.params
    assert any("fold_bias" in note and "ignored" in note for note in result.notes)
    monkeypatch.undo()
    for model, other in ((result.model, expected.model), (result.source_model, expected.source_model)):
        assert model.mode == other.mode
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    loaded, _ = slimspec.load_model(written)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), expected.model.state_dict().values()))


def test_magnitude_cli_prunes_from_the_file(run, masks_of, tmp_path):
    weights = masks_of("digits_vgg", ties=True)
    result = run("prune", weights, "-m", "magnitude", "--ratio", "0.5", "-o", tmp_path / "p.yaml")
    assert result.exit_code == 0, result.output
    expected = prune(weights, "magnitude", ratio=0.5, from_file=False)
    _, written = expected.save(tmp_path / "q.yaml")
    assert (tmp_path / "p.safetensors").read_bytes() == written.read_bytes()


def test_radix_select_drops_what_the_stable_sort_drops(monkeypatch):
    """The streamed cut against ``_masks``'s stable sort on tie-heavy tensors of every float dtype, negative
    values and signed zeros included, chunked finely so ties straddle chunks."""
    monkeypatch.setattr(radix, "CHUNK", 5)
    generator = torch.Generator().manual_seed(0)
    kinds = [lambda n: torch.randint(-3, 4, (n,), generator=generator).float(),
             lambda n: torch.zeros(n).index_fill_(0, torch.arange(0, n, 2), -0.0),
             lambda n: torch.randn(n, generator=generator).half(),
             lambda n: torch.randn(n, generator=generator).bfloat16(),
             lambda n: torch.randn(n, generator=generator) * 1e-41]  # subnormals
    for trial in range(200):
        count = int(torch.randint(1, 5, (1,), generator=generator))
        tensors = [kinds[int(torch.randint(0, len(kinds), (1,), generator=generator))](
            int(torch.randint(0, 30, (1,), generator=generator))) for _ in range(count)]
        total = sum(t.numel() for t in tensors)
        ratio = float(torch.rand(1, generator=generator))
        scores = {str(i): t.float() for i, t in enumerate(tensors)}
        expected = unstructured._masks(scores, ratio, "global") if total else {}
        cut = radix.smallest(tensors.__getitem__, count, total - unstructured.keep_count(total, ratio))
        for i, tensor in enumerate(tensors):
            if tensor.numel():
                assert torch.equal(cut.keep(i, tensor), expected[str(i)]), (trial, i)
                assert cut.dropped[i] == int((expected[str(i)] == 0).sum())
