import torch

from core.encoding import PAD_ID, UNK_ID, Vocabulary


def test_round_trip_and_unknown_characters() -> None:
    vocabulary = Vocabulary.from_names(["O'Brien", "De la Cruz", "Abdel-Malek"])
    for name in ["o'brien", "de la cruz", "abdel-malek"]:
        assert vocabulary.decode(vocabulary.encode(name)) == name
    assert vocabulary.encode("Q")[0] == UNK_ID
    assert vocabulary.decode(vocabulary.encode("Qob")) == "?ob"
    assert vocabulary.encode("OB") == vocabulary.encode("ob")


def test_encode_batch_pads_on_the_right() -> None:
    vocabulary = Vocabulary.from_names(["abc"])
    tokens, lengths = vocabulary.encode_batch(["abc", "a", ""])
    assert tokens.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 1]
    assert tokens[1, 1:].tolist() == [PAD_ID, PAD_ID]
    assert tokens[2, 0] == UNK_ID
    assert tokens.dtype == torch.long


def test_encode_batch_reads_names_as_encode_does_and_decode_drops_padding() -> None:
    vocabulary = Vocabulary.from_names(["abc"])
    tokens, _ = vocabulary.encode_batch(["ABC", "Ab"])  # training and prediction take this path
    assert tokens.tolist() == [vocabulary.encode("abc"), [*vocabulary.encode("ab"), PAD_ID]]
    assert vocabulary.decode(tokens[1].tolist()) == "ab"
