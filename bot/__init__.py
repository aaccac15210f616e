"""nameorigin's Telegram bot: guesses, corrections, statistics."""
