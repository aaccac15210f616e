import gc

import pytest
import torch

from core.calibration import Prior
from core.checkpoint import Checkpoint, CheckpointMetadata
from core.data import LANGUAGES
from core.encoding import Vocabulary
from core.models import GRUConfig, build_model
from core.predict import Guess, Predictor, Rejected, garbage_collection_paused
from core.text import InvalidNameError

# Russian holds half the training pairs, the other 17 languages share the rest equally.
SKEWED_PRIOR = (0.5 / 17,) * 14 + (0.5,) + (0.5 / 17,) * 3


def untrained_predictor(uncertain_below: float = 0.5, prior: Prior = "dataset") -> Predictor:
    vocabulary = Vocabulary.from_names(["abcdefghijklmnopqrstuvwxyz' -"])
    config = GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=8, embedding_dim=4)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        model_config=config, vocabulary=vocabulary, labels=LANGUAGES, temperature=2.0, metrics={},
        dataset_sha256="0" * 64, split_seed=0, version="gru-test", class_prior=SKEWED_PRIOR,
    )  # fmt: skip
    return Predictor(Checkpoint(build_model(config).eval(), metadata), uncertain_below=uncertain_below, prior=prior)


def test_probabilities_are_calibrated_and_sum_to_one() -> None:
    predictor = untrained_predictor()
    probabilities = predictor.probabilities(["Abc", "de la Cruz"])
    assert probabilities.shape == (2, 18)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))
    tokens, lengths = predictor.checkpoint.metadata.vocabulary.encode_batch(["Abc"])
    with torch.inference_mode():
        expected = (predictor.checkpoint.model(tokens, lengths) / 2.0).softmax(dim=1)
    torch.testing.assert_close(probabilities[:1], expected)


def test_batch_and_single_answers_agree_and_keep_order() -> None:
    predictor = untrained_predictor()
    inputs = ["Nakamura", "", "Fyodor Dostoevsky", "🙂", "O'Brien"]
    results = predictor.predict_many(inputs, top_k=5)
    assert [type(r) for r in results] == [Guess, Rejected, Guess, Rejected, Guess]
    assert [r.raw if isinstance(r, Rejected) else r.query.raw for r in results] == inputs
    single = predictor.predict("Fyodor Dostoevsky", top_k=5)
    batch = results[2]
    assert isinstance(batch, Guess)
    assert single.query.surname == "Dostoevsky" and single.query.from_full_name
    assert [g.language for g in single.predictions] == [g.language for g in batch.predictions]
    for a, b in zip(single.predictions, batch.predictions, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-5)


def test_uncertain_flag_follows_the_threshold() -> None:
    assert untrained_predictor(uncertain_below=1.01).predict("Abc").uncertain
    assert not untrained_predictor(uncertain_below=0.0).predict("Abc").uncertain


def test_bad_input_and_bad_top_k() -> None:
    predictor = untrained_predictor()
    with pytest.raises(InvalidNameError, match="empty"):
        predictor.predict("  ")
    with pytest.raises(ValueError, match="top_k"):
        predictor.predict("Abc", top_k=19)


def test_a_uniform_prior_divides_out_the_training_proportions() -> None:
    assert LANGUAGES[14] == "Russian"
    names = ["Abc", "de la Cruz", "Smirnov"]
    dataset = untrained_predictor().probabilities(names)
    uniform = untrained_predictor(prior="uniform").probabilities(names)
    # Bayes' rule: p_uniform(y | x) is p(y | x) / prior(y), renormalized.
    expected = dataset / torch.tensor(SKEWED_PRIOR)
    torch.testing.assert_close(uniform, expected / expected.sum(dim=1, keepdim=True))
    assert (uniform[:, 14] < dataset[:, 14]).all()  # the language the data over-represents loses mass
    with pytest.raises(ValueError, match="prior must be one of"):
        untrained_predictor(prior="balanced")  # type: ignore[arg-type]


def test_the_garbage_collector_is_paused_only_while_guesses_are_built() -> None:
    assert gc.isenabled()
    with garbage_collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), garbage_collection_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()  # a caller that turned it off keeps it off
    try:
        with garbage_collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert len(untrained_predictor().predict_many(["Smith", "Ng", ""])) == 3
    assert gc.isenabled()
