import gc
import math
import random
import string

import pytest
import torch

from core.calibration import Prior
from core.checkpoint import Checkpoint, CheckpointMetadata
from core.data import LANGUAGES
from core.encoding import Vocabulary
from core.models import GRUConfig, build_model
from core.predict import CHUNK_SIZE, Guess, Predictor, Rejected, garbage_collection_paused
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
    top = untrained_predictor().predict("Abc").predictions[0].probability
    assert 0.0 < top < 1.0
    assert untrained_predictor(uncertain_below=math.nextafter(top, 1.0)).predict("Abc").uncertain
    assert not untrained_predictor(uncertain_below=math.nextafter(top, 0.0)).predict("Abc").uncertain


def test_a_top_probability_exactly_at_the_threshold_is_not_uncertain() -> None:
    top = untrained_predictor().predict("Abc").predictions[0].probability
    assert not untrained_predictor(uncertain_below=top).predict("Abc").uncertain


def test_top_k_may_ask_for_every_language_ranked_best_first() -> None:
    guess = untrained_predictor().predict("Abc", top_k=18)
    languages = [g.language for g in guess.predictions]
    probabilities = [g.probability for g in guess.predictions]
    assert sorted(languages) == sorted(LANGUAGES)
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > probabilities[-1]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert untrained_predictor().predict("Abc", top_k=1).predictions == guess.predictions[:1]


@pytest.mark.parametrize("top_k", [0, -1, 19])
def test_top_k_outside_one_to_the_number_of_languages_is_refused(top_k: int) -> None:
    with pytest.raises(ValueError, match="top_k must be between 1 and 18"):
        untrained_predictor().predict_many(["Abc"], top_k=top_k)


def test_many_names_in_several_chunks_get_the_answers_each_gets_alone() -> None:
    # More than two chunks, in no order of length: names are classified sorted by length, then put back.
    rng = random.Random(0)
    names = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 20))).capitalize() for _ in range(1_100)]
    assert len(names) > 2 * CHUNK_SIZE and names != sorted(names, key=len)
    predictor = Predictor.shipped("gru")
    together = [guess for guess in predictor.predict_many(names) if isinstance(guess, Guess)]
    assert [guess.query.raw for guess in together] == names
    # Every name against one batch in the given order, neither sorted nor chunked; a sample against each name
    # alone (1,100 single calls take seconds on a busy machine).
    tokens, lengths = predictor.checkpoint.metadata.vocabulary.encode_batch(names)
    with torch.inference_mode():
        logits = predictor.checkpoint.model(tokens, lengths)
    whole = (logits / predictor.checkpoint.metadata.temperature).softmax(dim=1).topk(3, dim=1)
    assert [[g.language for g in guess.predictions] for guess in together] == [
        [predictor.labels[i] for i in row] for row in whole.indices.tolist()
    ]
    probabilities = torch.tensor([[g.probability for g in guess.predictions] for guess in together])
    torch.testing.assert_close(probabilities, whole.values, rtol=0, atol=1e-5)
    for name, guess in list(zip(names, together, strict=True))[::37]:
        alone = predictor.predict(name)
        assert [g.language for g in guess.predictions] == [g.language for g in alone.predictions]
        assert [g.probability for g in guess.predictions] == pytest.approx(
            [g.probability for g in alone.predictions], abs=1e-5
        )


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
