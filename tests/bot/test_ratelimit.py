"""The per-user limiter beyond the basics in test_units: its default window, and who the idle sweep forgets."""

from __future__ import annotations

from bot.ratelimit import FORGET_IDLE_ABOVE, UserRateLimiter


def test_the_limit_is_per_minute_unless_told_otherwise() -> None:
    # GUESSES_PER_MINUTE and BUTTON_PRESSES_PER_MINUTE build limiters with the default window.
    now = [0.0]
    limiter = UserRateLimiter(limit=1, clock=lambda: now[0])
    assert limiter.allow(1) and limiter.should_warn(1)
    now[0] = 59.9
    assert not limiter.allow(1) and not limiter.should_warn(1)
    now[0] = 60.0
    assert limiter.allow(1)


def test_the_idle_sweep_keeps_a_recent_warning_and_forgets_old_ones() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=1, window=60.0, clock=lambda: now[0])
    assert limiter.allow(0) and not limiter.allow(0) and limiter.should_warn(0)  # warned long before the sweep
    now[0] = 50.0
    assert limiter.allow(1) and not limiter.allow(1) and limiter.should_warn(1)  # warned just before it
    now[0] = 70.0
    for user in range(2, FORGET_IDLE_ABOVE + 2):  # past the threshold: the sweep runs
        assert limiter.allow(user)
    assert 0 not in limiter._warned  # forgotten: memory stays bounded
    # User 1 was told 20 s ago: the sweep must not make the bot tell them again within the minute.
    assert not limiter.allow(1) and not limiter.should_warn(1)
