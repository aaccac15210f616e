import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from core.calibration import set_log_likelihood_loss
from core.models import ElmanConfig, ElmanRNN, GRUClassifier, GRUConfig, build_model

VOCAB, CLASSES = 30, 18


def random_batch(batch: int = 8, steps: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    tokens = torch.randint(2, VOCAB, (batch, steps), generator=generator)
    tokens[torch.arange(steps).expand(batch, steps) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths


@pytest.mark.parametrize(
    "config",
    [
        ElmanConfig(vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=6, hidden_size=10),
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=6, hidden_size=10),
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, hidden_size=10, num_layers=1, bidirectional=False),
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=6, hidden_size=10, ngram_buckets=64),
    ],
)
def test_models_return_logits_and_ignore_padding(config: ElmanConfig | GRUConfig) -> None:
    torch.manual_seed(0)
    model = build_model(config).eval()
    tokens, lengths = random_batch()
    logits = model(tokens, lengths)
    assert logits.shape == (8, CLASSES)
    # Extra padding on the right must not change any answer.
    padded = torch.cat([tokens, torch.zeros(8, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, lengths), logits)


def test_elman_matches_torch_rnn_with_copied_weights() -> None:
    torch.manual_seed(0)
    model = ElmanRNN(ElmanConfig(vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=6, hidden_size=10)).eval()
    reference = nn.RNN(6, 10, nonlinearity="tanh", batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(model.cell.x2h.weight)
        reference.bias_ih_l0.copy_(model.cell.x2h.bias)
        reference.weight_hh_l0.copy_(model.cell.h2h.weight)
        reference.bias_hh_l0.copy_(model.cell.h2h.bias)
    tokens, lengths = random_batch()
    embedded = model.embedding(tokens)
    ours = model.encode(embedded, lengths)
    _, h_n = reference(pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False))
    assert torch.allclose(ours, h_n[0], atol=1e-6)
    # Unpadded, step by step, the full output sequence agrees too.
    full, _ = reference(embedded[:1])
    assert torch.allclose(model.encode(embedded[:1], lengths[:1]), full[0, -1], atol=1e-6)


@pytest.mark.parametrize("model_class", [ElmanRNN, GRUClassifier])
def test_overfits_one_batch(model_class: type[nn.Module]) -> None:
    torch.manual_seed(0)
    config_class = ElmanConfig if model_class is ElmanRNN else GRUConfig
    model = model_class(config_class(vocab_size=VOCAB, num_classes=CLASSES, hidden_size=32, dropout=0.0))
    tokens, lengths = random_batch(batch=16, seed=1)
    truth = torch.zeros(16, CLASSES, dtype=torch.bool)
    truth[torch.arange(16), torch.arange(16) % CLASSES] = True
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = set_log_likelihood_loss(model(tokens, lengths), truth).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert (model(tokens, lengths).argmax(dim=1) == torch.arange(16) % CLASSES).all()


def test_max_over_time_matches_padded_max() -> None:
    from torch.nn.utils.rnn import pad_packed_sequence

    from core.models import max_over_time

    tokens, lengths = random_batch(batch=9, steps=6, seed=3)
    values = torch.randn(9, 6, 5, requires_grad=True)
    packed = pack_padded_sequence(values, lengths, batch_first=True, enforce_sorted=False)
    padded, _ = pad_packed_sequence(packed, batch_first=True, padding_value=float("-inf"))
    expected = padded.max(dim=1).values
    pooled = max_over_time(packed)
    torch.testing.assert_close(pooled, expected)
    pooled.sum().backward()
    # Gradient reaches exactly one real step per (sequence, feature).
    assert values.grad is not None and values.grad.sum().item() == pytest.approx(9 * 5)


def test_hashed_ngrams_cover_every_order_and_ignore_padding() -> None:
    from core.models import hashed_ngrams

    tokens = torch.tensor([[5, 6, 7, 0, 0], [8, 5, 6, 7, 9]])
    lengths = torch.tensor([3, 5])
    ids = hashed_ngrams(tokens, lengths, order=3, buckets=1 << 20)
    present = [set(row[row >= 0].tolist()) for row in ids]
    # Unigrams, plus (length + 1) n-grams of each higher order: the boundaries count as characters.
    assert [len(row) for row in present] == [3 + 4 + 4, 5 + 6 + 6]
    assert ((ids >= -1) & (ids < 1 << 20)).all()
    # "5 6 7" occurs inside both names, so its bigrams and trigram share buckets; "^5" does not.
    assert len(present[0] & present[1]) == 3 + 2 + 1
    unpadded = hashed_ngrams(tokens[:1, :3], lengths[:1], order=3, buckets=1 << 20)
    assert set(unpadded[unpadded >= 0].tolist()) == present[0]


@pytest.mark.parametrize(
    "config",
    [
        # Names of mixed lengths go packed (read backwards too), one name alone goes as a plain tensor.
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, hidden_size=10, num_layers=2, dropout=0.0),
        # Forwards only, a padded batch runs as a plain tensor and reads each name's last real step.
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, hidden_size=10, num_layers=2, bidirectional=False),
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, hidden_size=10, bidirectional=False, max_pool=False),
    ],
)
def test_gru_answers_a_name_the_same_in_any_batch(config: GRUConfig) -> None:
    torch.manual_seed(0)
    model = GRUClassifier(config).eval()
    tokens, lengths = random_batch(batch=12, steps=9, seed=4)
    assert len(set(lengths.tolist())) > 2
    alone = torch.cat([model(tokens[row : row + 1, : lengths[row]], lengths[row : row + 1]) for row in range(12)])
    torch.testing.assert_close(model(tokens, lengths), alone)
    # Several names of one length, trimmed to it: a batch without any padding.
    same_length = (lengths == lengths.mode().values).nonzero().squeeze(1)
    assert len(same_length) > 1
    width = int(lengths[same_length[0]])
    torch.testing.assert_close(model(tokens[same_length, :width], lengths[same_length]), alone[same_length])


def packed_features(model: GRUClassifier, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The GRU's read-out computed the plain way: always through a packed sequence."""
    from core.models import max_over_time

    packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    outputs, h_n = model.gru(packed)
    directions = 2 if model.config.bidirectional else 1
    last = h_n[-directions:].transpose(0, 1).reshape(embedded.shape[0], -1)
    return torch.cat([last, max_over_time(outputs)], dim=1) if model.config.max_pool else last


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("max_pool", [False, True])
@pytest.mark.parametrize("extra_padding", [0, 3])
def test_gru_features_and_gradients_match_a_packed_run(bidirectional: bool, max_pool: bool, extra_padding: int) -> None:
    torch.manual_seed(0)
    config = GRUConfig(
        vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=6, hidden_size=10, num_layers=2, dropout=0.0,
        bidirectional=bidirectional, max_pool=max_pool,
    )  # fmt: skip
    model = GRUClassifier(config).double().train()
    _, lengths = random_batch(batch=9, steps=6, seed=2)
    for rows in (torch.arange(9), (lengths == 6).nonzero().squeeze(1)):  # mixed lengths; one length, no padding
        width = int(lengths[rows].max()) + extra_padding
        embedded = torch.randn(len(rows), width, 6, dtype=torch.float64, requires_grad=True)
        weights = torch.randn(len(rows), 40, dtype=torch.float64)  # a fixed random loss: sum of weighted features
        results = []
        for features in (model.features, lambda e, n: packed_features(model, e, n)):
            model.zero_grad()
            embedded.grad = None
            out = features(embedded, lengths[rows])
            (out * weights[:, : out.shape[1]]).sum().backward()
            assert embedded.grad is not None and model.gru.weight_hh_l0.grad is not None
            results.append((out.detach(), embedded.grad.clone(), model.gru.weight_hh_l0.grad.clone()))
        for ours, reference in zip(*results, strict=True):
            torch.testing.assert_close(ours, reference)


def test_a_negative_ngram_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="ngram_buckets"):
        GRUConfig(vocab_size=VOCAB, num_classes=CLASSES, ngram_buckets=-1)
