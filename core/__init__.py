"""nameorigin core: data, character-level recurrent models, training, evaluation and prediction."""

__version__ = "0.1.0"
