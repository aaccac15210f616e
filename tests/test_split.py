from pathlib import Path

import pytest

from core.data import DatasetError, load_dataset
from core.split import SplitConfig, split_dataset
from tests.conftest import synthetic_names, write_dataset


def test_split_is_name_disjoint_stratified_and_fixed(real_data_dir: Path) -> None:
    dataset = load_dataset(real_data_dir)
    split = split_dataset(dataset)
    train, validation, test = ({ex.key for ex in part} for part in (split.train, split.validation, split.test))
    assert not (train & validation or train & test or validation & test)
    assert len(train) + len(validation) + len(test) == dataset.audit.distinct_names
    assert 0.09 < len(test) / dataset.audit.distinct_names < 0.11
    # Every language, even the smallest, is represented in the test split.
    assert {lang for ex in split.test for lang in ex.languages} == set(dataset.labels)
    assert split_dataset(dataset) == split
    assert split_dataset(dataset, SplitConfig(seed=1)).test != split.test


def test_tiny_split_sizes(tiny_data_dir: Path) -> None:
    split = split_dataset(load_dataset(tiny_data_dir))
    assert (len(split.train), len(split.validation), len(split.test)) == (18 * 24, 18 * 3, 18 * 3)


def test_too_small_a_dataset_says_how_many_names_it_needs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="too small to split.*validation and test splits empty.*at least 6 names"):
        split_dataset(load_dataset(write_dataset(tmp_path / "four", per_language=4)))
    split = split_dataset(load_dataset(write_dataset(tmp_path / "six", per_language=6)))
    assert (len(split.train), len(split.validation), len(split.test)) == (18 * 4, 18, 18)


def test_each_part_takes_its_own_fraction_and_the_split_records_its_seed(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    split = split_dataset(dataset, SplitConfig(validation_fraction=0.2, test_fraction=0.1, seed=7))
    assert (len(split.train), len(split.validation), len(split.test)) == (18 * 21, 18 * 6, 18 * 3)
    assert split.seed == 7  # checkpoints record it: fine-tuning rebuilds the same test split from it
    no_test = split_dataset(dataset, SplitConfig(test_fraction=0.0))  # a part not asked for may be empty
    assert (len(no_test.train), len(no_test.validation), no_test.test) == (18 * 27, 18 * 3, ())


def test_a_validation_only_split_too_small_says_how_many_names_it_needs(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "four", per_language=4))
    with pytest.raises(DatasetError, match="leave the validation split empty; .*at least 6 names"):
        split_dataset(dataset, SplitConfig(test_fraction=0.0))


def test_names_are_stratified_by_their_rarest_language(tmp_path: Path) -> None:
    # Every Scottish name is also English, and Scottish is the smaller language: the 20 shared names form
    # their own stratum, so each held-out part gets exactly 10% of them whatever the seed.
    folder = write_dataset(tmp_path / "names")
    shared = synthetic_names("Scottish", 20, seed=1)
    (folder / "Scottish.txt").write_text("\n".join(shared) + "\n")
    with (folder / "English.txt").open("a") as english:
        english.write("\n".join(shared) + "\n")
    dataset = load_dataset(folder)
    for seed in range(5):
        split = split_dataset(dataset, SplitConfig(seed=seed))
        for part in (split.validation, split.test):
            assert sum("Scottish" in ex.languages for ex in part) == 2
