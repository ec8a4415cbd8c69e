"""The training step's three forms compute the same thing, and the fastest one that cannot run
here gives way to the next with a warning."""
import pytest
import torch
from torch._dynamo.utils import counters

import copy
import importlib.util
import os

from conftest import ROOT
from helpers.options.compiled_step import (CAPTURED, COMPILED, CapturedStep, CompiledStep,
                                           choose_step_kind, prepare_step, warm_up)
from helpers.model import ResNet
from helpers.settings import make_config, recipe_of as resolve_recipe
from helpers.step import EAGER, TrainingStep
from helpers.training import make_optimizer

spec = importlib.util.spec_from_file_location("step_check",
                                              os.path.join(ROOT, "scripts", "step_check.py"))
step_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(step_check)


def tiny_network(seed=0):
    torch.manual_seed(seed)
    return ResNet(blocks=(1, 1), widths=(8, 16), strides=(1, 2), stem_width=8)


def batches(count=3, size=8):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 32, 32, generator=generator),
             torch.randint(0, 10, (size,), generator=generator)) for _ in range(count)]


def make_step(step_class=TrainingStep, network=None):
    network = network or tiny_network()
    optimizer = make_optimizer(network, resolve_recipe(make_config(recipe="improved")))
    return step_class(network, optimizer, torch.nn.CrossEntropyLoss(label_smoothing=0.1))


def test_compiled_step_gives_the_losses_and_weights_of_the_eager_step():
    eager, compiled = make_step(), make_step(CompiledStep)
    for images, labels in batches():
        eager_loss, _, _ = eager(images, labels)
        compiled_loss, _, _ = compiled(images, labels)
        assert compiled_loss.item() == pytest.approx(eager_loss.item(), rel=1e-4, abs=1e-5)
    for mine, theirs in zip(eager.model.state_dict().values(), compiled.model.state_dict().values()):
        assert torch.allclose(mine.float(), theirs.float(), atol=1e-4)


def test_warm_up_leaves_weights_statistics_and_momentum_as_they_were():
    warmed, fresh = make_step(), make_step()
    warm_up(warmed, batches(1, size=8)[0], sizes=[8, 4])
    for mine, theirs in zip(warmed.model.state_dict().values(), fresh.model.state_dict().values()):
        assert torch.equal(mine, theirs)
    # The warm-up leaves no momentum: the next step is the one a fresh run takes.
    for images, labels in batches(2):
        assert warmed(images, labels)[0].item() == pytest.approx(fresh(images, labels)[0].item(), abs=1e-6)
    for mine, theirs in zip(warmed.model.parameters(), fresh.model.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_warm_up_puts_back_the_momentum_of_a_resumed_run():
    step = make_step()
    images, labels = batches(1)[0]
    step(images, labels)  # the optimizer now holds momentum, as a resumed run's does
    before = copy.deepcopy(step.optimizer.state_dict()["state"])
    warm_up(step, (images, labels), sizes=[8])
    after = step.optimizer.state_dict()["state"]
    assert before.keys() == after.keys()
    for index, state in before.items():
        assert torch.equal(state["momentum_buffer"], after[index]["momentum_buffer"])


def test_the_cuda_graph_step_is_the_compiled_one_in_reduce_overhead_mode(monkeypatch):
    """CUDA graphs need a GPU (tests/test_step_gpu.py), so torch.compile is stood in for here:
    the step asks for the documented mode and marks each step as a new iteration of the CUDA
    graph trees, whose replay may then overwrite the previous step's outputs."""
    options, marks = [], []
    monkeypatch.setattr(torch, "compile",
                        lambda function, **asked: options.append(asked) or function)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(True))
    eager, captured = make_step(), make_step(CapturedStep)
    for images, labels in batches(2):
        assert captured(images, labels)[0].item() == pytest.approx(eager(images, labels)[0].item())
    assert options == [{"mode": "reduce-overhead", "dynamic": False}] and len(marks) == 2


def test_a_cuda_graph_step_run_without_graphs_falls_back_to_the_compiled_step(monkeypatch):
    """torch.compile only counts the graphs it runs without CUDA graphs (every one on a CPU): a
    step run so is not recorded as the CUDA-graph kind."""
    def compile_without_graphs(function, mode, **options):
        def compiled(*args, **kwargs):
            if mode == "reduce-overhead":
                counters["inductor"]["cudagraph_skips"] += 1
            return function(*args, **kwargs)
        return compiled

    monkeypatch.setattr(torch, "compile", compile_without_graphs)
    network = tiny_network()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.warns(UserWarning, match="CUDA graph training step failed.*without CUDA graphs"):
        step, _, notes = prepare_step(CAPTURED, lambda cls: make_step(cls, network),
                                      batches(1)[0], sizes=[8])
    assert step.kind == COMPILED and len(notes) == 1
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_a_step_that_fails_to_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(function, **options):
        def compiled(*args, **kwargs):
            raise RuntimeError("no compiler here")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    before = {k: v.clone() for k, v in tiny_network().state_dict().items()}
    network = tiny_network()
    with pytest.warns(UserWarning, match="compiled training step failed.*falling back"):
        step, warmup_s, notes = prepare_step(COMPILED, lambda cls: make_step(cls, network),
                                             batches(1)[0], sizes=[8])
    assert step.kind == EAGER and warmup_s == 0.0 and "no compiler here" in notes[0]
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


BOTH = (CAPTURED, COMPILED)


@pytest.mark.parametrize("setting, device, capability, extra, verified, expected", [
    (False, "cuda", (9, 0), {}, BOTH, EAGER),
    ("auto", "cpu", None, {}, BOTH, EAGER),
    ("auto", "cuda", (7, 5), {}, BOTH, EAGER),                # Colab's T4
    ("auto", "cuda", (9, 0), {}, BOTH, CAPTURED),             # H100 / H200
    ("auto", "cuda", (9, 0), {}, (), EAGER),                  # nothing verified on a GPU yet
    ("auto", "cuda", (9, 0), {}, (COMPILED,), COMPILED),      # the graph failed its check
    (True, "cpu", None, {}, (), COMPILED),
    (True, "cuda", (7, 5), {}, (), CAPTURED),                 # asked for: tried, with fallback
    ("auto", "cuda", (8, 0), {"scaler": object()}, BOTH, COMPILED),
    ("auto", "cuda", (8, 0), {"distributed": True}, BOTH, COMPILED),
    ("auto", "cuda", (8, 0), {"distillation": True}, BOTH, COMPILED),
    ("auto", "cuda", (8, 0), {"distillation": True}, (CAPTURED,), EAGER),
])
def test_the_step_chosen_for_each_machine(monkeypatch, setting, device, capability, extra,
                                          verified, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a test GPU")
    monkeypatch.setattr("helpers.options.compiled_step.VERIFIED_ON_GPU", verified)
    kind, why = choose_step_kind(setting, torch.device(device), **extra)
    assert kind == expected and why
    if setting == "auto" and device == "cuda" and expected == EAGER and capability >= (8, 0):
        assert "verified on a GPU" in why


def test_auto_takes_only_kinds_that_passed_the_gpu_check():
    """VERIFIED_ON_GPU lists exactly the step kinds whose tests passed in the committed output of
    tests/test_step_gpu.py (results/gpu-step-check/junit.xml), and none that failed there."""
    from helpers.options.compiled_step import VERIFIED_ON_GPU

    assert set(VERIFIED_ON_GPU) == set(step_check.kinds_passed(
        os.path.join(ROOT, "results", "gpu-step-check", "junit.xml")))


def test_names_the_gpu_tests_patch_exist():
    """tests/test_step_gpu.py runs only on a lent GPU, so a name it patches by its dotted path
    must be checked here: a moved name would fail there, in minutes that cannot be rerun."""
    import importlib
    import re

    with open(os.path.join(ROOT, "tests", "test_step_gpu.py")) as file:
        patched = re.findall(r'monkeypatch\.setattr\("([\w.]+)"', file.read())
    assert patched
    for dotted in patched:
        module, name = dotted.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), dotted


def test_a_kind_passes_only_if_every_case_of_it_passed(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text("""<testsuites><testsuite>
      <testcase name="test_step_matches_eager[compiled-fp32]"/>
      <testcase name="test_step_matches_eager[compiled-bf16]"><system-out>ok</system-out></testcase>
      <testcase name="test_step_matches_eager[graph-fp32]"/>
      <testcase name="test_step_matches_eager[graph-bf16]"><failure message="apart"/></testcase>
      </testsuite></testsuites>""")
    assert step_check.kinds_passed(str(report)) == (COMPILED,)
    report.write_text("""<testsuites><testsuite>
      <testcase name="test_step_matches_eager[compiled-bf16]"/>
      <testcase name="test_step_matches_eager[graph-bf16]"/>
      <testcase name="test_step_matches_eager_in_the_training_loop[graph]"><error message="x"/>
      </testcase></testsuite></testsuites>""")
    assert step_check.kinds_passed(str(report)) == (COMPILED,)
    assert step_check.kinds_passed(str(tmp_path / "none.xml")) == ()


def test_training_says_which_step_runs_and_records_it(tmp_path, capsys):
    from test_training import tiny_config, train_tiny

    _, result = train_tiny(tiny_config(tmp_path, epochs=1, progress="lines", compile=False))
    assert "training step: eager (compile=False)" in capsys.readouterr().out
    assert result.step_kind == EAGER and result.warmup_s == 0.0
