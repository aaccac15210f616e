"""Device choice, and the accelerators (cuda, mps) where present: each test here runs on every one this machine has.

Most of the suite runs on the CPU alone; the tests below check that training, evaluation and prediction give
on an accelerator what they give on the CPU, so a user's ``--device cuda`` is not an untested path.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from core.checkpoint import load_checkpoint
from core.cli import main
from core.data import load_dataset
from core.device import DeviceUnavailableError, resolve_device
from core.models import ElmanConfig, ElmanRNN, GRUConfig, build_model
from core.pipeline import train_and_save
from core.predict import Predictor
from core.train import TrainConfig

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
requires_mps = pytest.mark.skipif(
    not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()), reason="no MPS device here"
)
ACCELERATORS = [pytest.param("cuda", marks=requires_cuda), pytest.param("mps", marks=requires_mps)]


def test_cpu_resolves() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("core.device._mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr("core.device._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_unknown_device_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        resolve_device("cuda")


def _forward_on(device: torch.device) -> None:
    model = build_model(GRUConfig(vocab_size=10, num_classes=3, hidden_size=8, embedding_dim=4)).to(device).eval()
    tokens = torch.tensor([[2, 3, 4], [5, 6, 0]], device=device)
    reference = build_model(model.config).eval()
    reference.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    expected = reference(tokens.cpu(), torch.tensor([3, 2]))
    torch.testing.assert_close(model(tokens, torch.tensor([3, 2])).cpu(), expected, atol=1e-4, rtol=1e-4)


@requires_cuda
def test_model_runs_on_cuda() -> None:
    _forward_on(resolve_device("cuda"))


@requires_mps
def test_model_runs_on_mps() -> None:
    _forward_on(resolve_device("mps"))


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_elman_matches_torch_rnn_on(accelerator: str) -> None:
    device = resolve_device(accelerator)
    torch.manual_seed(0)
    model = ElmanRNN(ElmanConfig(vocab_size=12, num_classes=3, embedding_dim=6, hidden_size=10)).to(device).eval()
    reference = nn.RNN(6, 10, nonlinearity="tanh", batch_first=True).to(device)
    with torch.no_grad():
        for ours, theirs in [("x2h.weight", "weight_ih_l0"), ("x2h.bias", "bias_ih_l0"),
                             ("h2h.weight", "weight_hh_l0"), ("h2h.bias", "bias_hh_l0")]:  # fmt: skip
            getattr(reference, theirs).copy_(model.cell.get_parameter(ours))
    tokens = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0], [8, 0, 0, 0]], device=device)
    lengths = torch.tensor([4, 2, 1])
    embedded = model.embedding(tokens)
    # Without cuDNN: its RNN computes in TF32 on recent GPUs by default, 2e-4 off float32 on an H200.
    with torch.backends.cudnn.flags(enabled=False):
        _, h_n = reference(pack_padded_sequence(embedded, lengths, batch_first=True))
    torch.testing.assert_close(model.encode(embedded, lengths), h_n[0], atol=1e-5, rtol=1e-5)


def _train_tiny_on(device: torch.device, data_dir: Path, out: Path) -> dict[str, torch.Tensor]:
    """Two epochs of a small GRU of the shipped shape (max-over-time read-out, hashed n-grams) on ``device``."""
    trained = train_and_save(
        kind="gru",
        dataset=load_dataset(data_dir),
        out=out,
        train_config=TrainConfig(epochs=2, batch_size=32, seed=5, show_progress=False),
        device=device,
        model_overrides={"hidden_size": 16, "embedding_dim": 8, "ngram_buckets": 64},
    )
    return load_file(trained.path)


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_same_seed_gives_the_same_weights_on(accelerator: str, tiny_data_dir: Path, tmp_path: Path) -> None:
    device = resolve_device(accelerator)
    first = _train_tiny_on(device, tiny_data_dir, tmp_path / "a.safetensors")
    second = _train_tiny_on(device, tiny_data_dir, tmp_path / "b.safetensors")
    assert [name for name in first if not torch.equal(first[name], second[name])] == []


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_a_model_trained_on_an_accelerator_serves_on_the_cpu(
    accelerator: str, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gru.safetensors"
    status = main(["train", "--model", "gru", "--data-dir", str(tiny_data_dir), "--epochs", "8", "--out", str(out),
                   "--batch-size", "16", "--device", accelerator])  # fmt: skip
    assert status == 0
    assert load_checkpoint(out).metadata.metrics["test"]["accuracy"] > 0.5  # it learned, there
    names = ["Abcov", "Ghijez", "Mnoson", "Xyzsen", "Cdefski"]
    on_cpu = Predictor.from_path(out, torch.device("cpu")).probabilities(names)
    there = Predictor.from_path(out, resolve_device(accelerator)).probabilities(names)
    torch.testing.assert_close(there, on_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_eval_on_an_accelerator_reports_what_the_cpu_reports(
    accelerator: str, tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, checkpoint = tiny_checkpoint
    reports = []
    for device in ("cpu", accelerator):
        args = ["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--json", "--device", device]
        assert main(args) == 0
        reports.append(json.loads(capsys.readouterr().out))
    on_cpu, there = reports
    assert there["test"]["accuracy"] == on_cpu["test"]["accuracy"]
    assert there["test"]["top3_accuracy"] == on_cpu["test"]["top3_accuracy"]
    assert there["test"]["ece"] == pytest.approx(on_cpu["test"]["ece"], abs=1e-3)


@pytest.mark.parametrize("accelerator", ACCELERATORS)
@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_the_shipped_models_answer_on_an_accelerator_as_on_the_cpu(accelerator: str, kind: str) -> None:
    names = ["Dostoevsky", "O'Brien", "Abdel-Malek", "De la Cruz", "Nguyen", "Rossi", "Schmidt", "Tanaka"]
    on_cpu = Predictor.shipped(kind, torch.device("cpu")).probabilities(names)
    there = Predictor.shipped(kind, resolve_device(accelerator)).probabilities(names)
    torch.testing.assert_close(there, on_cpu, atol=1e-4, rtol=1e-4)
