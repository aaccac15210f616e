import unicodedata

import pytest

from core.text import InvalidNameError, clean_surname, displayable, parse_query


@pytest.mark.parametrize(
    ("raw", "surname", "from_full_name"),
    [
        ("Nakamura", "Nakamura", False),
        ("  O'Brien ", "O'Brien", False),
        ("Abdel-Malek", "Abdel-Malek", False),
        ("De la Cruz", "De la Cruz", False),
        ("Fyodor Dostoevsky", "Dostoevsky", True),
        ("Maria de la Cruz", "de la Cruz", True),
        ("Ludwig van Beethoven", "van Beethoven", True),
        ("Достоевский", "Dostoevskii", False),
        ("O’Neill", "O'Neill", False),
        ("Müller", "Muller", False),
        ("Smith3", "Smith", False),
        ("中村", "ZhongCun", False),  # one word stays one surname, though unidecode spaces out its syllables
        ("王小明", "WangXiaoMing", False),
        ("Ivan 🙂 Petrov", "Petrov", True),
        ("Martin Luther King Jr.", "King", True),
        ("Smith, Sr", "Smith", True),
        ("John Smith III", "Smith", True),
        ("Naosuke Ii", "Ii", True),  # a Japanese surname, not a numeral
        ("NAOSUKE II", "II", True),  # all in capitals: no telling, so the surname stays
        ("John Smith II", "Smith", True),
        ("JOHN SMITH III", "SMITH", True),
        ("JOHN SMITH II", "SMITH", True),
        ("Jr", "Jr", False),  # nothing else to take
        ("Dostoevsky, Fyodor", "Dostoevsky", True),  # surname first, as lists and spreadsheets write it
        ("de la Cruz, Maria", "de la Cruz", True),
        ("Martin Luther King, Jr.", "King", True),
        ("中村，太郎", "ZhongCun", True),  # a full-width comma
        ("Smith,", "Smith", False),
        (", Smith", "Smith", False),  # nothing before the comma: the name is what there is
        ("Jane Doe PhD", "Doe", True),
        ("Dr. Jane Doe, MD", "Doe", True),
        ("J.R.R.Tolkien", "Tolkien", True),  # initials typed without spaces are words of their own
        ("F.Dostoevsky", "Dostoevsky", True),
        ("first_last", "last", True),
        ("Jane Doe Ph.D.", "Doe", True),  # a dotted degree stays one word, and is dropped
        ("Jane Doe M.D.", "Doe", True),
        ("Smith J.R.", "Smith", True),
        ("А.Пушкин", "Pushkin", True),
        ("Ivanov№", "Ivanov", False),  # a symbol is no letter of the name: not "IvanovNo"
        ("Smith™", "Smith", False),
        ("Nestlé®", "Nestle", False),
        ("Müller°", "Muller", False),
        ("Smith€", "Smith", False),
        ("O´Brien", "O'Brien", False),  # an acute accent typed for an apostrophe
        ("Abdel—Malek", "Abdel-Malek", False),
        ("Abdel−Malek", "Abdel-Malek", False),  # a minus sign, a symbol that stands for a hyphen
        ("O\u05f3Brien", "O'Brien", False),  # a Hebrew geresh, punctuation that stands for an apostrophe
        ("Smith§", "Smith", False),  # punctuation unidecode would spell as letters ("SS")
        ("\u095b" * 40, "z" * 40, False),  # 40 characters, though 80 once composed (NFC excludes this one)
        ("\u0424\u0435\u0308\u0434\u043e\u0440\u043e\u0432", "Fiodorov", False),  # Фёдоров decomposed reads as composed
        ("F.A\u0301bel", "Abel", True),  # the accent is no word break
        ("Smith\u200bJones", "SmithJones", False),  # a zero-width space is no space
        ("Smi\xadth", "Smith", False),  # a soft hyphen is invisible
        ("\u0041\u0301" + "a" * 63, "A" + "a" * 63, False),  # 64 letters shown; NFD spells the first with two
        ("'Rossi'", "Rossi", False),  # quotes and dashes around a name are no part of it
        ("-Smith-", "Smith", False),
        ("Abdel--Malek", "Abdel-Malek", False),  # a doubled separator is one, as the dataset's names have it
        ("O''Brien", "O'Brien", False),
        ("Jr.", "Jr", False),  # a lone suffix is all there is: kept
        ("x" * 64, "x" * 64, False),  # MAX_INPUT_CHARS itself is allowed
        ("Fyodor\tDostoevsky", "Dostoevsky", True),  # a tab parts words as a space does
        ("John Smith Sr", "Smith", True),
        ("John Smith Esq.", "Smith", True),
        ("Henry Ford IV", "Ford", True),
        ("De La", "De La", False),  # particles alone: all of them are the surname
        (unicodedata.normalize("NFD", "ᾄ" * 64), "a" * 64, False),  # 256 code points, 64 letters composed
    ],
)
def test_parse_query_picks_the_surname(raw: str, surname: str, from_full_name: bool) -> None:
    query = parse_query(raw)
    assert query.surname == surname
    assert query.from_full_name is from_full_name
    assert query.raw == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("12345", "no letters"),
        ("🙂🙂", "no letters"),
        ("x" * 65, "too long"),
        ("德" * 60 + "李", "too long once written in Latin letters: 122"),  # 61 characters, 122 letters
        ("ß" * 33, "too long once written in Latin letters: 66"),  # one word, each ß becomes "ss"
        ("'--'", "no letters"),
        ("Smith\udcff", "not valid UTF-8"),  # how Python decodes the byte 0xff of a non-UTF-8 input
        ("Sm\x00ith", "a control character, U\\+0000"),  # dropped, it would pass for Smith
        ("S\x00m\x00i\x00t\x00h\x00", "UTF-16"),  # what UTF-16 text read as UTF-8 looks like
        ("Smith\x1b[31m", "a control character, U\\+001B$"),
        ("Smith\x7f", "a control character, U\\+007F$"),  # delete
        ("Smith\x9b31m", "a control character, U\\+009B$"),  # a C1 control (CSI)
    ],  # fmt: skip
)
def test_parse_query_rejects_bad_input(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNameError, match=reason):
        parse_query(raw)


def test_a_long_run_of_combining_marks_is_turned_away_before_it_is_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    # Out of canonical order (acute, class 230, before grave below, class 220): NFC sorted them in
    # quadratic time, about a minute for this line, before its length was checked.
    raw = "a" + "\u0301" * 100_000 + "\u0316" * 100_000

    class NoNormalizing:  # core.text's unicodedata, less normalize; pytest's own output still needs the real one
        def __getattr__(self, name: str) -> object:
            return getattr(unicodedata, name)

        def normalize(self, form: str, text: str) -> str:
            raise AssertionError(f"normalized {len(text)} characters")

    monkeypatch.setattr("core.text.unicodedata", NoNormalizing())
    with pytest.raises(InvalidNameError, match="too long: 200001 characters"):
        parse_query(raw)


def test_clean_surname_keeps_only_name_characters() -> None:
    assert clean_surname("Maxa/B") == "MaxaB"
    assert clean_surname("<b>Smith</b>") == "bSmithb"
    assert clean_surname("Lévêque ") == "Leveque"


def test_displayable_replaces_undecodable_bytes_only() -> None:
    assert displayable("Sm\udcffith Ørsted") == "Sm\ufffdith Ørsted"
    assert displayable("Sm\udcffith").encode("utf-8") == "Sm\ufffdith".encode()
