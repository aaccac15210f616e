import os
import threading
from pathlib import Path

import pytest

from core.data import LANGUAGES, DatasetError, load_dataset, resolve_data_dir


def test_loads_all_languages(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    assert dataset.labels == LANGUAGES
    assert dataset.audit.distinct_names == 18 * 30
    assert all(count == 30 for count in dataset.audit.per_language.values())
    assert len(dataset.sha256) == 64


def test_dedupes_pairs_and_keeps_every_language(tiny_data_dir: Path) -> None:
    english = tiny_data_dir / "English.txt"
    english.write_text(english.read_text() + "Smith\nsmith\n\n  \nSmith \n")
    (tiny_data_dir / "Scottish.txt").write_text((tiny_data_dir / "Scottish.txt").read_text() + "Smith\n")
    dataset = load_dataset(tiny_data_dir)
    smith = [ex for ex in dataset.examples if ex.key == "smith"]
    assert len(smith) == 1
    assert smith[0].languages == {"English", "Scottish"}
    assert dataset.audit.duplicate_pairs == 2
    assert dataset.audit.blank_lines == 2
    assert dataset.audit.multi_language_names == 1


def test_lines_end_at_line_feeds_and_carriage_returns_only(tiny_data_dir: Path) -> None:
    before = load_dataset(tiny_data_dir).audit.raw_lines
    greek = tiny_data_dir / "Greek.txt"
    greek.write_bytes(greek.read_bytes() + "Alpha\u2028Beta\r\nGamma\x0cDelta\x85\n".encode())
    dataset = load_dataset(tiny_data_dir)
    assert dataset.audit.raw_lines == before + 2
    assert not {"Alpha", "Beta", "Gamma", "Delta"} & {ex.name for ex in dataset.examples}
    greek.write_bytes(b"\r".join(greek.read_bytes().splitlines()))  # an old Mac file: a lone CR ends each line
    assert load_dataset(tiny_data_dir).audit.raw_lines == before + 2


def test_transliterates_and_keeps_name_punctuation(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Irish.txt").write_text("O'Brien\nMac Giolla\n")
    (tiny_data_dir / "French.txt").write_text("Lévêque\nAbdel-Malek\n")
    names = {ex.name for ex in load_dataset(tiny_data_dir).examples}
    assert {"O'Brien", "Mac Giolla", "Leveque", "Abdel-Malek"} <= names


def test_a_missing_folder_is_a_clear_error_with_a_hint_that_fits_where_the_path_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "nowhere"
    fetch = f"check the path, or fetch the files there with 'nameorigin data download --dir {nowhere}'"
    with pytest.raises(DatasetError) as given:
        load_dataset(nowhere)
    assert str(given.value) == f"dataset folder {nowhere} does not exist: {fetch}"
    monkeypatch.setenv("NAMES_DATA_DIR", str(nowhere))
    with pytest.raises(DatasetError) as from_env:
        load_dataset()
    assert str(from_env.value) == f"dataset folder {nowhere} (NAMES_DATA_DIR) does not exist: {fetch}"
    monkeypatch.delenv("NAMES_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as by_default:
        load_dataset()
    assert str(by_default.value) == (
        "dataset folder data/names does not exist: set NAMES_DATA_DIR or run 'nameorigin data download'"
    )


def test_missing_file_is_named(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Korean.txt").unlink()
    with pytest.raises(DatasetError, match="missing language files: Korean.txt"):
        load_dataset(tiny_data_dir)


@pytest.mark.parametrize("stray", ["Klingon.txt", ".txt"])
def test_unexpected_file_is_named(tiny_data_dir: Path, stray: str) -> None:
    (tiny_data_dir / stray).write_text("Worf\n")
    with pytest.raises(DatasetError, match=f"unexpected files: {stray}$"):
        load_dataset(tiny_data_dir)


def test_a_name_longer_than_prediction_accepts_is_an_error(tiny_data_dir: Path) -> None:
    # One such line padded every batch it fell in to its length: a 5 MB line, to 5 million steps.
    (tiny_data_dir / "Greek.txt").write_text("Papadopoulos\n" + "a" * 64 + "\n" + "Ab" * 40 + "\n")
    with pytest.raises(DatasetError, match="Greek.txt: line 3 holds a name of 80 characters; at most 64"):
        load_dataset(tiny_data_dir)


def test_undecodable_bytes_name_the_line(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Greek.txt").write_bytes(b"Papadopoulos\nAb\xffc\n")
    with pytest.raises(DatasetError, match=r"Greek.txt: line 2 is not valid UTF-8"):
        load_dataset(tiny_data_dir)


def test_utf16_without_a_byte_order_mark_is_an_error(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Greek.txt").write_bytes("Papadopoulos\nNikolaou\n".encode("utf-16-le"))
    with pytest.raises(DatasetError, match="Greek.txt: line 1 holds a NUL byte: is the file UTF-16"):
        load_dataset(tiny_data_dir)


def test_empty_file_is_an_error(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Dutch.txt").write_text("\n \n")
    with pytest.raises(DatasetError, match="Dutch.txt: the file holds no names"):
        load_dataset(tiny_data_dir)


def test_a_folder_named_like_a_language_file_is_an_error(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Greek.txt").unlink()
    (tiny_data_dir / "Greek.txt").mkdir()
    with pytest.raises(DatasetError, match="Greek.txt: is a folder"):
        load_dataset(tiny_data_dir)


def test_a_broken_link_is_an_error(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "Greek.txt").unlink()
    (tiny_data_dir / "Greek.txt").symlink_to(tiny_data_dir / "gone.txt")
    with pytest.raises(DatasetError, match="Greek.txt: is a broken symbolic link"):
        load_dataset(tiny_data_dir)


def test_a_pipe_named_like_a_language_file_is_an_error_not_a_wait(tiny_data_dir: Path) -> None:
    pipe = tiny_data_dir / "Greek.txt"
    pipe.unlink()
    os.mkfifo(pipe)  # a reader waits until something writes
    # Should the loader read it after all, this writer ends the wait in a few seconds rather than never.
    writer = threading.Timer(5.0, lambda: os.close(os.open(pipe, os.O_WRONLY)))
    writer.daemon = True  # never keeps the test run alive
    writer.start()
    try:
        with pytest.raises(DatasetError, match="Greek.txt: is a device, pipe or socket, not a file of names"):
            load_dataset(tiny_data_dir)
    finally:
        writer.cancel()


def test_a_file_given_as_the_dataset_folder_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("Smith\n")
    with pytest.raises(DatasetError, match="names.txt is not a folder: give the folder that holds the 18 files"):
        load_dataset(tmp_path / "names.txt")


def test_data_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NAMES_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("NAMES_DATA_DIR")
    assert resolve_data_dir() == Path("data/names")


def test_real_dataset_audit(real_data_dir: Path) -> None:
    dataset = load_dataset(real_data_dir)
    assert dataset.audit.raw_lines == 20074
    assert dataset.audit.per_language["Arabic"] == 108
    assert dataset.audit.multi_language_names > 400


def test_the_hash_identifies_the_files_contents(tiny_data_dir: Path) -> None:
    before = load_dataset(tiny_data_dir).sha256
    assert load_dataset(tiny_data_dir).sha256 == before
    greek = tiny_data_dir / "Greek.txt"
    greek.write_text(greek.read_text() + "Newname\n")
    assert load_dataset(tiny_data_dir).sha256 != before  # another dataset: another "fixed" test split


def test_only_lines_changed_by_cleaning_count_as_normalized(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "French.txt").write_text("  Martin  \nLévêque\nDupont\n")
    assert load_dataset(tiny_data_dir).audit.normalized_lines == 1  # surrounding blanks are no change


def test_a_blank_data_dir_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMES_DATA_DIR", "  ")
    assert resolve_data_dir() == Path("data/names")
