"""Checkpoints whose header fields or tensors are wrong in one way each: every one is refused in one line."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import core.models
from core.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from core.encoding import Vocabulary
from core.models import GRUConfig, ModelConfig, build_model
from tests.test_checkpoint import config_with, metadata_for, save_with, small_config, weights


@pytest.mark.parametrize("text", ["[]", "null", '"nameorigin"', "3", "{"])
def test_metadata_that_is_not_a_json_object_is_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.safetensors"
    save_file(weights(small_config()[0]), path, metadata={"nameorigin": text})
    for read in (read_metadata, load_checkpoint):
        with pytest.raises(CheckpointError, match="JSON"):
            read(path)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [("gru", "hidden_size", "96"), ("gru", "hidden_size", -1), ("gru", "hidden_size", 0), ("gru", "hidden_size", True),
     ("gru", "hidden_size", 4.0), ("rnn", "hidden_size", "96"), ("rnn", "embedding_dim", -2),
     ("gru", "num_layers", None), ("gru", "bidirectional", 1), ("gru", "dropout", 1.5),
     ("rnn", "dropout", float("nan")), ("gru", "ngram_buckets", "8"), ("gru", "ngram_order", 10**6)],
)  # fmt: skip
def test_model_config_values_of_the_wrong_type_or_range_are_rejected(
    tmp_path: Path, kind: str, field: str, value: object
) -> None:
    path = save_with(tmp_path / "m.safetensors", {"model_config": config_with(kind, **{field: value})}, kind=kind)
    with pytest.raises(CheckpointError, match=f"model_config.{field}"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_a_config_too_big_for_its_file_is_rejected_before_anything_is_allocated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    built_on_meta = []

    def spy(config: ModelConfig) -> object:
        model = build_model(config)
        built_on_meta.append(next(model.parameters()).is_meta)
        return model

    monkeypatch.setattr(core.models, "build_model", spy)  # build_skeleton looks it up there
    # A hidden size of 10**7 needs petabytes of weights; the file holds a few kilobytes.
    path = save_with(tmp_path / "m.safetensors", {"model_config": config_with(kind, hidden_size=10**7)}, kind=kind)
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)
    assert built_on_meta == [True]


def test_a_gru_with_more_layers_than_its_file_holds_is_rejected(tmp_path: Path) -> None:
    for bidirectional in (False, True):  # real multi-layer GRUs still load
        vocabulary = Vocabulary.from_names(["ab"])
        config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, num_layers=2,
                           bidirectional=bidirectional)  # fmt: skip
        path = save_checkpoint(tmp_path / "deep.safetensors", build_model(config), metadata_for(config, vocabulary))
        assert load_checkpoint(path).metadata.model_config == config
    # Building nn.GRU takes time quadratic in its layers, even on the meta device.
    path = save_with(tmp_path / "m.safetensors", {"model_config": config_with(num_layers=1000)})
    with pytest.raises(CheckpointError, match="num_layers"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "temperature",
    [float("inf"), float("-inf"), float("nan"), 0, -1.0, "1.5", True, None, pytest.param(10**400, id="1e400"),
     1e-300, 0.01, 25.0],  # outside the range a fitted temperature is clamped to; 1e-300 made every probability NaN
)  # fmt: skip
def test_a_temperature_outside_the_fitted_range_is_rejected(tmp_path: Path, temperature: object) -> None:
    path = save_with(tmp_path / "m.safetensors", {"temperature": temperature})
    with pytest.raises(CheckpointError, match="temperature"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("dtype", "value", "problem"),
    [(torch.int8, 1, "not floating-point"), (torch.int64, 1, "not floating-point"), (torch.bool, True, "not floating"),
     (torch.float32, float("nan"), "NaN or infinite"), (torch.float16, float("-inf"), "NaN or infinite"),
     (torch.float64, 1e300, "NaN or infinite"),  # beyond float32: Inf once cast to the model's dtype
     (torch.float32, 3e38, "values beyond ±10000"), (torch.float32, -1e5, "values beyond ±10000")],  # logits: Inf
)  # fmt: skip
def test_weights_that_are_not_finite_floats_are_rejected(
    tmp_path: Path, dtype: torch.dtype, value: object, problem: str
) -> None:
    tensors = weights(small_config()[0])
    bad = tensors["gru.weight_hh_l0"].to(dtype)
    bad[0, 0] = value
    path = save_with(tmp_path / "m.safetensors", {}, tensors={**tensors, "gru.weight_hh_l0": bad})
    with pytest.raises(CheckpointError, match=f"gru.weight_hh_l0 holds .*{problem}"):
        load_checkpoint(path)


def test_a_vocabulary_longer_than_the_model_s_embedding_is_rejected(tmp_path: Path) -> None:
    config, vocabulary = small_config()
    assert "".join(vocabulary.characters) == "ab" and config.vocab_size == 4  # two letters plus padding and unknown
    # The weights match the config; only the header's vocabulary has one character too many, whose id
    # would index past the embedding.
    path = save_with(tmp_path / "m.safetensors", {"vocabulary": "abc"})
    for read in (read_metadata, load_checkpoint):
        with pytest.raises(CheckpointError, match="disagrees with its model config .*vocabulary"):
            read(path)


@pytest.mark.parametrize(
    "labels",
    [["L0", "L0", "L1"], [0, 1, 2], "L01", ["L0", "", "L2"], None, {"L0": 0, "L1": 1, "L2": 2},
     ["L0", "L\n1", "L2"], ["L0", "L1\x1b[2J", "L2"], ["L0", "L1\u2028", "L2"], ["L0", "L1\ud800", "L2"]],
)  # fmt: skip
def test_labels_that_are_not_distinct_printable_strings_are_rejected(tmp_path: Path, labels: object) -> None:
    path = save_with(tmp_path / "m.safetensors", {"labels": labels})
    with pytest.raises(CheckpointError, match="labels must"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "metrics",
    [None, [], {"test": 0.88}, {"test": {"accuracy": "0.88"}}, {"test": {"accuracy": float("nan")}},
     {"test": {"accuracy": True}}, {"test": {"accuracy": 0.88, "count": 1741}, "validation": None}],
)  # fmt: skip
def test_metrics_that_are_not_objects_of_numbers_are_rejected(tmp_path: Path, metrics: object) -> None:
    path = save_with(tmp_path / "m.safetensors", {"metrics": metrics})
    with pytest.raises(CheckpointError, match="metrics must"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("vocabulary", "aa"), ("vocabulary", ["a", "b"]), ("split_seed", "7"), ("split_seed", 7.5), ("version", 3),
     ("dataset_sha256", None), ("parent_version", 5), ("created_at", 0),
     # A version names a file under MODEL_DIR/versions and a 64-character database key.
     ("version", "../../escape"), ("version", "/etc/x"), ("version", ".hidden"), ("version", ""),
     ("version", "g" * 65), ("parent_version", "../x")],
)  # fmt: skip
def test_other_fields_of_the_wrong_type_are_rejected_not_coerced(tmp_path: Path, field: str, value: object) -> None:
    path = save_with(tmp_path / "m.safetensors", {field: value})
    with pytest.raises(CheckpointError, match=field):
        read_metadata(path)
