import errno
import json
import os
import resource
import stat
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from core.encoding import Vocabulary
from core.models import ElmanConfig, GRUConfig, ModelConfig, build_model, config_to_dict
from tests.file_limits import file_size_limit


def metadata_for(config: ModelConfig, vocabulary: Vocabulary) -> CheckpointMetadata:
    return CheckpointMetadata(
        model_config=config,
        vocabulary=vocabulary,
        labels=tuple(f"L{i}" for i in range(config.num_classes)),
        temperature=1.3,
        metrics={"test": {"accuracy": 0.5}},
        dataset_sha256="0" * 64,
        split_seed=7,
        version="gru-test",
        parent_version="gru-parent",
    )


@pytest.mark.parametrize("config_class", [GRUConfig, ElmanConfig])
def test_round_trip_restores_weights_and_metadata(tmp_path: Path, config_class: type) -> None:
    vocabulary = Vocabulary.from_names(["abc", "o'd-e f"])
    config = config_class(vocab_size=vocabulary.size, num_classes=4, hidden_size=8, embedding_dim=4)
    torch.manual_seed(0)
    model = build_model(config).eval()
    metadata = metadata_for(config, vocabulary)
    path = save_checkpoint(tmp_path / "models" / "m.safetensors", model, metadata)
    loaded = load_checkpoint(path)
    assert loaded.metadata == metadata
    assert not loaded.model.training
    tokens, lengths = vocabulary.encode_batch(["abc", "fed"])
    torch.testing.assert_close(loaded.model(tokens, lengths), model(tokens, lengths))
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temp files left behind


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model(config), metadata_for(config, vocabulary))
    second = metadata_for(config, vocabulary)
    save_checkpoint(path, build_model(config), CheckpointMetadata(**{**second.__dict__, "version": "v2"}))
    assert read_metadata(path).version == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the other services that load models


def test_a_save_that_fails_midway_leaves_the_old_checkpoint_whole(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2)
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(config), metadata_for(config, vocabulary))

    second = replace(metadata_for(config, vocabulary), version="v2")
    # Files may not grow past 100 bytes, as on a disk that fills up mid-write: the write itself fails.
    with file_size_limit(100), pytest.raises(OSError) as raised:  # an OSError, errno and all, as callers expect
        save_checkpoint(path, build_model(config), second)
    assert raised.value.errno == errno.EFBIG
    assert load_checkpoint(path).metadata.version == "gru-test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_save_never_replaces_a_device_or_pipe(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="is not a regular file"):
        save_checkpoint(tmp_path / "pipe", build_model(config), metadata_for(config, vocabulary))
    assert stat.S_ISFIFO((tmp_path / "pipe").stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2)
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(config), metadata_for(config, vocabulary))
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    # A copy still in progress: the header is whole, so only the size gives it away.
    with pytest.raises(CheckpointError, match="truncated"):
        read_metadata(path)
    path.write_bytes(whole + b"\0")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_metadata(path)


@pytest.mark.parametrize("offset", ["1e999", "Infinity", "-1", '"8"'])
def test_tensor_offsets_that_are_no_byte_counts_are_rejected(tmp_path: Path, offset: str) -> None:
    header = f'{{"a":{{"dtype":"F32","shape":[1],"data_offsets":[0,{offset}]}}}}'.encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_metadata(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x00" * 64])
def test_garbage_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_shape_mismatch_is_rejected(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2)
    bigger = GRUConfig(vocab_size=vocabulary.size, num_classes=3, hidden_size=6, embedding_dim=2)
    path = tmp_path / "m.safetensors"
    tensors = {k: v.contiguous() for k, v in build_model(bigger).state_dict().items()}
    save_file(tensors, path, metadata={"nameorigin": metadata_for(config, vocabulary).to_json()})
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)


def test_foreign_safetensors_and_bad_metadata_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="no nameorigin metadata"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(2)}, path, metadata={"nameorigin": json.dumps({"format": "other/9"})})
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(2)}, path, metadata={"nameorigin": '{"format": "nameorigin.checkpoint/1"}'})
    with pytest.raises(CheckpointError, match="malformed"):
        load_checkpoint(path)


def test_class_prior_round_trips_and_old_checkpoints_load_without_it(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=4, hidden_size=4, embedding_dim=2)
    prior = (0.1, 0.2, 0.3, 0.4)
    with_prior = CheckpointMetadata(**{**metadata_for(config, vocabulary).__dict__, "class_prior": prior})
    path = save_checkpoint(tmp_path / "new.safetensors", build_model(config), with_prior)
    assert read_metadata(path).class_prior == prior
    # A header written before the field existed has no "class_prior" key at all.
    old_header = json.loads(metadata_for(config, vocabulary).to_json())
    del old_header["class_prior"]
    tensors = {k: v.contiguous() for k, v in build_model(config).state_dict().items()}
    save_file(tensors, tmp_path / "old.safetensors", metadata={"nameorigin": json.dumps(old_header)})
    old = read_metadata(tmp_path / "old.safetensors")
    assert old.class_prior is None
    assert old.logit_shift("dataset") is None
    with pytest.raises(CheckpointError, match="does not record its training class prior"):
        old.logit_shift("uniform")


@pytest.mark.parametrize(
    "prior",
    [[0.5, 0.5], [0.5, 0.5, 0.0, 0.0], [0.4, 0.4, 0.4, 0.4], [float("nan")] * 4, [0.25, 0.25, 0.5, float("nan")],
     ["0.25", "0.25", "0.25", "0.25"], [True, 0, 0, 0], "0.25",
     [0.5, 0.5, 1e-300, 1e-300]],  # 1e-300 is 0 in float32: its -log is infinite and every answer NaN
)  # fmt: skip
def test_a_class_prior_that_is_not_a_distribution_over_the_labels_is_rejected(tmp_path: Path, prior: object) -> None:
    vocabulary = Vocabulary.from_names(["ab"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=4, hidden_size=4, embedding_dim=2)
    header = {**json.loads(metadata_for(config, vocabulary).to_json()), "class_prior": prior}
    tensors = {k: v.contiguous() for k, v in build_model(config).state_dict().items()}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"nameorigin": json.dumps(header)})
    with pytest.raises(CheckpointError, match="class.prior"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_a_flipped_bit_in_the_weights_is_caught_by_their_checksum(tmp_path: Path) -> None:
    """A bit flipped on disk or in a copy leaves finite, small weights: only the checksum tells."""
    config, vocabulary = small_config()
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(config), metadata_for(config, vocabulary))
    load_checkpoint(path)
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x01  # a mantissa bit of the last weight (little-endian): still a finite, small number
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt: its weights do not match the checksum"):
        load_checkpoint(path)


def small_config(kind: str = "gru") -> tuple[ModelConfig, Vocabulary]:
    vocabulary = Vocabulary.from_names(["ab"])
    config_class = GRUConfig if kind == "gru" else ElmanConfig
    return config_class(vocab_size=vocabulary.size, num_classes=3, hidden_size=4, embedding_dim=2), vocabulary


def weights(config: ModelConfig) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in build_model(config).state_dict().items()}


def config_with(kind: str = "gru", **changes: object) -> dict[str, object]:
    return {**config_to_dict(small_config(kind)[0]), **changes}


def save_with(
    path: Path, changes: dict[str, object], tensors: dict[str, torch.Tensor] | None = None, kind: str = "gru"
) -> Path:
    """A valid small checkpoint, with the header fields in ``changes`` replaced, and other tensors if given."""
    config, vocabulary = small_config(kind)
    header = {**json.loads(metadata_for(config, vocabulary).to_json()), **changes}
    save_file(weights(config) if tensors is None else tensors, path, metadata={"nameorigin": json.dumps(header)})
    return path


def test_metadata_and_weights_come_from_one_read_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, vocabulary = small_config()
    path = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    first = build_model(config)
    save_checkpoint(path, first, metadata_for(config, vocabulary))
    parse = CheckpointMetadata.from_json

    def parse_while_replaced(text: str) -> CheckpointMetadata:
        # A concurrent save_checkpoint lands while the loader is busy with the metadata.
        torch.manual_seed(1)
        save_checkpoint(path, build_model(config), replace(metadata_for(config, vocabulary), version="v2"))
        return parse(text)

    monkeypatch.setattr(CheckpointMetadata, "from_json", staticmethod(parse_while_replaced))
    loaded = load_checkpoint(path)
    assert loaded.metadata.version == "gru-test"
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    for read in (read_metadata, load_checkpoint):
        with pytest.raises(CheckpointError, match="is a directory"):
            read(tmp_path)


def test_a_large_file_that_is_no_checkpoint_fails_before_it_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    with path.open("wb") as handle:  # 1 GiB, sparse: a length prefix far beyond any header, then nothing
        handle.write((2**62).to_bytes(8, "little"))
        handle.truncate(2**30)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="bad header length"):
        load_checkpoint(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100_000, f"peak memory grew by {grown_kib} KiB"
