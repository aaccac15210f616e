import pytest
import torch

from core.device import DeviceUnavailableError, resolve_device
from core.models import GRUConfig, build_model

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
requires_mps = pytest.mark.skipif(
    not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()), reason="no MPS device here"
)


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
