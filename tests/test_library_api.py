"""``core`` used as a library: misuse of ``Predictor`` fails clearly, and library calls leave global state alone."""

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import Checkpoint, load_checkpoint
from core.data import LANGUAGES
from core.device import DeviceUnavailableError
from core.predict import Guess, Predictor, Rejected, garbage_collection_paused, shipped_checkpoint_path
from core.text import MAX_INPUT_CHARS
from tests.test_predict import untrained_predictor


def test_a_string_given_where_a_list_of_names_belongs_is_refused() -> None:
    # A str is a Sequence[str]: taken as one, "Smith" would be answered letter by letter, five guesses.
    predictor = untrained_predictor()
    with pytest.raises(TypeError, match="a list of names, not one string"):
        predictor.predict_many("Smith")  # mypy accepts it: a str is a Sequence[str]
    with pytest.raises(TypeError, match="a list of names, not one string"):
        predictor.predict_many(b"Smith")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of names, not one string"):
        predictor.probabilities("Smith")


DECODE_IT = r": decode it first \(\.decode\('utf-8'\)\)"


@pytest.mark.parametrize(
    ("value", "single", "in_list"),
    [(b"Smith", "got bytes" + DECODE_IT, "is bytes, not str" + DECODE_IT), (None, "got NoneType$", "is NoneType"),
     (["Smith"], r"got list; predict_many\(\) takes a list of names", "is list"), (7, "got int$", "is int")],
)  # fmt: skip
def test_an_input_that_is_not_a_string_is_named_in_a_type_error(value: object, single: str, in_list: str) -> None:
    predictor = untrained_predictor()
    with pytest.raises(TypeError, match=r"predict\(\) takes one name as str, " + single):
        predictor.predict(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input 1 " + in_list):
        predictor.predict_many(["Smith", value])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="input 1 " + in_list):
        predictor.probabilities(["Smith", value])  # type: ignore[list-item]


@pytest.mark.parametrize("top_k", [2.5, "3", True])
def test_top_k_must_be_a_whole_number(top_k: object) -> None:
    with pytest.raises(TypeError, match="top_k must be an int"):
        untrained_predictor().predict("Smith", top_k=top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, 50, float("nan")])
def test_uncertain_below_outside_zero_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="uncertain_below must be a probability from 0 to 1"):
        untrained_predictor(uncertain_below=threshold)


@pytest.mark.parametrize("threshold", ["0.5", True, None])  # True would mark every answer uncertain, as 1.0
def test_uncertain_below_that_is_not_a_number_is_refused_at_construction(threshold: object) -> None:
    with pytest.raises(TypeError, match="uncertain_below must be a number"):
        untrained_predictor(uncertain_below=threshold)  # type: ignore[arg-type]


def test_uncertain_below_may_be_zero_or_one() -> None:
    # The bot's UNCERTAIN_BELOW takes 0 to 1 inclusive: either end must start a predictor.
    assert not untrained_predictor(uncertain_below=0.0).predict("Smith").uncertain
    assert untrained_predictor(uncertain_below=1.0).predict("Smith").uncertain


def test_names_from_an_iterator_are_all_answered() -> None:
    # The type check reads its input: a generator checked in place had nothing left, and the answer was [].
    predictor = untrained_predictor()
    names = ["Smith", "Rossi"]
    assert predictor.predict_many(name for name in names) == predictor.predict_many(names)
    torch.testing.assert_close(predictor.probabilities(iter(names)), predictor.probabilities(names))


def test_numpy_numbers_pass_the_type_checks() -> None:
    # A threshold or top_k computed with NumPy is a number: float32 is not a float, nor int64 an int.
    predictor = untrained_predictor(uncertain_below=np.float32(0.25))  # type: ignore[arg-type]
    assert predictor.uncertain_below == 0.25
    assert len(predictor.predict("Smith", top_k=np.int64(2)).predictions) == 2  # type: ignore[arg-type]


def test_a_model_left_in_training_mode_is_refused() -> None:
    # train_model returns its model in training mode; dropout would change every answer from call to call.
    checkpoint = untrained_predictor().checkpoint
    with pytest.raises(ValueError, match=r"in training mode: call model\.eval\(\) first"):
        Predictor(Checkpoint(checkpoint.model.train(), checkpoint.metadata))


def test_probabilities_of_no_names_is_an_empty_table() -> None:
    for predictor in (untrained_predictor(), Predictor.shipped("gru"), Predictor.shipped("rnn")):
        assert predictor.probabilities([]).shape == (0, len(LANGUAGES))


def test_probabilities_of_many_names_are_computed_in_chunks_in_input_order() -> None:
    predictor = Predictor.shipped("gru")
    names = ["Smith", "Nakamura", "de la Cruz", "Ng"] * 400  # over three chunks of 512
    batches: list[int] = []
    model = predictor.checkpoint.model
    handle = model.register_forward_hook(lambda module, args, output: batches.append(len(output)))
    try:
        probabilities = predictor.probabilities(names)
    finally:
        handle.remove()
    assert probabilities.shape == (len(names), len(LANGUAGES)) and max(batches) <= 512
    tokens, lengths = predictor.checkpoint.metadata.vocabulary.encode_batch(names[:4])
    with torch.inference_mode():
        expected = (model(tokens, lengths) / predictor.checkpoint.metadata.temperature).softmax(dim=1)
    torch.testing.assert_close(probabilities[:4], expected)
    torch.testing.assert_close(probabilities[-4:], expected)


def test_well_formed_use_still_answers() -> None:
    predictor = untrained_predictor()
    assert isinstance(predictor.predict("Smith", top_k=18), Guess)
    in_a_batch, alone = predictor.predict_many(("Smith", "Rossi"))[1], predictor.predict("Rossi")
    assert isinstance(in_a_batch, Guess)
    assert (in_a_batch.query, in_a_batch.uncertain) == (alone.query, alone.uncertain)
    assert [guess.language for guess in in_a_batch.predictions] == [guess.language for guess in alone.predictions]
    # Equal up to rounding: a batch of 2 is multiplied differently from a batch of 1 on some CPUs (seen on a
    # 16-core machine with torch 2.11: 7e-9 apart).
    assert [guess.probability for guess in in_a_batch.predictions] == pytest.approx(
        [guess.probability for guess in alone.predictions], abs=1e-6
    )
    assert predictor.predict_many([]) == []


def test_saving_a_confusion_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from core.plots import save_confusion_plot

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's own backend
    try:
        figures = plt.get_fignums()
        save_confusion_plot(np.eye(3, dtype=np.int64), ["a", "b", "c"], tmp_path / "c.png", source="test")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # no figure left open in pyplot, to be shown or kept by the caller
    finally:
        matplotlib.use(before)
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("device", ["cuda", torch.device("cuda"), "cuda:0", "mps", torch.device("mps")])
def test_an_accelerator_that_is_not_here_is_a_device_unavailable_error(
    device: str | torch.device, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Torch itself fails deep inside Module.to: an AssertionError for cuda, a bare RuntimeError for mps.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("core.device._mps_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="available here"):
        Predictor.shipped(device=device)
    with pytest.raises(DeviceUnavailableError):
        load_checkpoint(shipped_checkpoint_path("rnn"), device)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), None])
def test_the_cpu_given_as_a_string_or_a_device_loads(device: str | torch.device | None) -> None:
    predictor = Predictor.shipped("rnn", device=device)
    assert next(predictor.checkpoint.model.parameters()).device == torch.device("cpu")


@pytest.mark.parametrize("device", ["tpu", "bogus:0", torch.device("meta"), 3.5])
def test_a_device_that_is_no_device_is_a_value_error(device: object) -> None:
    with pytest.raises(ValueError, match="device"):
        Predictor.shipped("rnn", device=device)  # type: ignore[arg-type]


def test_threads_pausing_the_collector_at_once_leave_it_as_they_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The interleaving a busy server meets now and then (8 threads calling predict() 76,000 times left the
    # collector off for good): thread B reads "off" during A's pause, A re-enables it, B turns it off again.
    b_has_read, a_has_left = threading.Event(), threading.Event()
    real_isenabled = gc.isenabled

    def isenabled() -> bool:
        state = real_isenabled()
        if threading.current_thread().name == "B":  # B is preempted between reading the flag and acting on it
            b_has_read.set()
            a_has_left.wait(timeout=5)
        return state

    monkeypatch.setattr(gc, "isenabled", isenabled)

    def a() -> None:
        with garbage_collection_paused():
            b_has_read.wait(timeout=0.3)  # the fixed pause never makes B read the flag: A goes on regardless
        a_has_left.set()

    def b() -> None:
        with garbage_collection_paused():
            pass

    first = threading.Thread(target=a, name="A")
    first.start()
    while real_isenabled() and first.is_alive():  # B starts once A's pause has begun
        time.sleep(0.001)
    second = threading.Thread(target=b, name="B")
    second.start()
    first.join()
    second.join()
    try:
        assert real_isenabled()
    finally:
        gc.enable()


def test_one_predictor_answers_many_threads_and_the_collector_stays_on() -> None:
    predictor = Predictor.shipped("gru")
    names = ["Smith", "Nakamura", "Dostoevsky", "de la Cruz", ""]
    expected = predictor.predict_many(names)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: predictor.predict_many(names), range(200)))
    assert all(result == expected for result in results)
    assert gc.isenabled()


def test_a_surname_too_long_to_be_normalized_is_refused_by_probabilities() -> None:
    # Each chunk is padded to its longest name: one 10,000-character line among 511 names took 4 GB, 100,000 the
    # machine's memory. No surname that predict() reads is longer than MAX_INPUT_CHARS.
    predictor = untrained_predictor()
    with pytest.raises(ValueError, match=f"surname 1 has 100000 characters, at most {MAX_INPUT_CHARS}"):
        predictor.probabilities(["Smith", "a" * 100_000])
    assert predictor.probabilities(["a" * MAX_INPUT_CHARS]).shape == (1, len(LANGUAGES))
    assert isinstance(predictor.predict_many(["a" * 100_000])[0], Rejected)  # raw input: rejected, as before


def test_loading_a_model_leaves_the_callers_random_numbers_alone() -> None:
    # The model was built with random initial weights, drawn from torch's global generator, then overwritten.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Predictor.shipped("rnn")
    load_checkpoint(shipped_checkpoint_path("gru"))
    torch.testing.assert_close(torch.rand(3), expected)


def test_loading_a_model_leaves_another_threads_random_numbers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A generator forked for the load and restored after it rewound whatever another thread drew meanwhile: that
    # thread then drew the same numbers again. Here the other thread draws while the model is being built.
    import core.checkpoint

    drawn: list[int] = []
    build_skeleton = core.checkpoint.build_skeleton

    def build_while_another_thread_draws(*args: object, **kwargs: object) -> torch.nn.Module:
        other = threading.Thread(target=lambda: drawn.append(int(torch.randint(0, 2**62, (1,)).item())))
        other.start()
        other.join()
        return build_skeleton(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core.checkpoint, "build_skeleton", build_while_another_thread_draws)
    torch.manual_seed(0)
    load_checkpoint(shipped_checkpoint_path("gru"))
    assert int(torch.randint(0, 2**62, (1,)).item()) != drawn[0]
