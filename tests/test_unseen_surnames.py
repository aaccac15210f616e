"""The hand-picked unseen-surname list that benchmarks/unseen_surnames.py scores."""

import sys
from pathlib import Path

import pytest

from core.data import load_dataset
from core.text import parse_query

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from unseen_surnames import figures, names_in_dataset, read_surnames  # noqa: E402


def test_the_list_holds_only_names_the_dataset_lacks(real_data_dir: Path) -> None:
    dataset = load_dataset(real_data_dir)
    rows = read_surnames()
    assert len(rows) > 400
    assert {language for _, language in rows} == set(dataset.labels)
    assert names_in_dataset(rows, dataset) == []
    assert len({name.lower() for name, _ in rows}) == len(rows)


def test_every_listed_name_is_a_valid_query() -> None:
    for name, _ in read_surnames():
        assert parse_query(name).surname == name


def test_a_malformed_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "names.tsv"
    path.write_text("# comment\nNovak\tCzech\nSmith English\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"names\.tsv:3"):
        read_surnames(path)


def test_figures_count_top1_top3_and_recall_per_language() -> None:
    accuracy, mean_recall, top3, recall = figures(
        [["Czech", "Polish", "Russian"], ["Russian", "Czech", "Polish"], ["Greek", "Italian", "Spanish"]],
        ["Czech", "Czech", "Spanish"],
    )
    assert accuracy == pytest.approx(1 / 3)
    assert recall == {"Czech": 0.5, "Spanish": 0.0}
    assert mean_recall == pytest.approx(0.25)
    assert top3 == pytest.approx(1.0)
