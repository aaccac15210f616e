"""Which user verdicts become training data: agreement between users, admins, daily caps, the test split.

Pure functions over plain records, so every guard is testable without a database or a model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FeedbackPolicy:
    """The trust rules, from ``FEEDBACK_MIN_AGREEMENT``, ``FEEDBACK_USER_DAILY_CAP`` and ``BOT_ADMIN_IDS``."""

    min_agreement: int = 2  # distinct users who must choose the same language for one surname
    user_daily_cap: int = 50  # verdicts per user per UTC day that count; later ones are kept but unused
    admin_ids: frozenset[int] = frozenset()  # an admin's verdict is trusted on its own

    def __post_init__(self) -> None:
        if self.min_agreement < 1 or self.user_daily_cap < 1:
            raise ValueError("min_agreement and user_daily_cap must be at least 1")


@dataclass(frozen=True)
class Vote:
    """One stored verdict: ``user_id`` says ``surname`` is ``language``."""

    surname: str
    user_id: int
    language: str
    created_at: datetime  # orders a user's verdicts for the daily cap
    updated_at: datetime  # when the choice was last set: decides whether it is new since the last run


@dataclass(frozen=True)
class TrustedLabel:
    """A surname's agreed language and the votes that carried it."""

    surname: str
    language: str
    supporters: tuple[Vote, ...]
    by_admin: bool
    # Every verdict of the supporters on this surname, their earlier ones too: whether a choice is new.
    history: tuple[Vote, ...] = ()
    over_cap: tuple[Vote, ...] = ()  # those of ``history`` beyond their user's daily cap


@dataclass(frozen=True)
class FeedbackSelection:
    """The trusted labels, and a count for every reason a verdict was left out."""

    trusted: tuple[TrustedLabel, ...]
    over_daily_cap: int  # verdicts beyond a user's daily cap
    without_agreement: int  # surnames whose leading language has too few distinct users
    tied: int  # surnames where two languages have the same number of users
    in_test_split: int  # surnames of the fixed test split: never trained on

    def new_votes_since(self, since: datetime | None) -> int:
        """Verdicts supporting a trusted label that were set after ``since`` (all of them when None).

        A choice its user had already made by then is not new: the same language pressed again on another
        guess of the surname (the name asked again) counts no more than a double tap on the same guess.
        """
        return sum(
            1
            for label in self.trusted
            for vote in label.supporters
            if since is None or _chosen_after(vote, label.history, label.over_cap, since)
        )


def _chosen_after(vote: Vote, history: Sequence[Vote], over_cap: Sequence[Vote], since: datetime) -> bool:
    """Whether ``vote``'s user chose its language for the surname after ``since``, not before and again since."""
    if vote.updated_at <= since:
        return False
    mine = [v for v in history if v.user_id == vote.user_id] or [vote]
    if any(v.created_at <= since < v.updated_at for v in mine):
        return True  # a verdict changed since then: what it said at ``since`` is no longer stored
    uncounted = {id(v) for v in over_cap}
    # Their voice at ``since``, by the rules of now: none when the choice they had made last was over the cap.
    then = _voice([v for v in mine if v.updated_at <= since], {id(v) for v in mine if id(v) not in uncounted})
    return then is None or then.language != vote.language


def within_daily_cap(votes: Iterable[Vote], cap: int) -> tuple[list[Vote], int]:
    """Each user's first ``cap`` verdicts of every UTC day, and how many were over the cap."""
    per_user_day: Counter[tuple[int, object]] = Counter()
    kept: list[Vote] = []
    dropped = 0
    for vote in sorted(votes, key=lambda v: (v.created_at, v.user_id)):
        day = (vote.user_id, vote.created_at.date())
        per_user_day[day] += 1
        if per_user_day[day] <= cap:
            kept.append(vote)
        else:
            dropped += 1
    return kept, dropped


def _spelling(votes: Sequence[Vote]) -> str:
    return Counter(vote.surname for vote in votes).most_common(1)[0][0]


def _label(
    votes: Sequence[Vote], voices: Sequence[Vote], language: str, counted: set[int], *, by_admin: bool
) -> TrustedLabel:
    supporters = tuple(v for v in voices if v.language == language)
    users = {v.user_id for v in supporters}
    history = tuple(v for v in votes if v.user_id in users)
    over_cap = tuple(v for v in history if id(v) not in counted)
    return TrustedLabel(_spelling(supporters), language, supporters, by_admin, history, over_cap)


def _voice(mine: Sequence[Vote], counted: set[int]) -> Vote | None:
    """A user's one voice on a surname, from all their verdicts on it (``counted``: the ids of those within the
    daily cap): their latest counted verdict, or none when their latest choice, over the cap, says another
    language: a choice they took back must not count."""
    kept = [v for v in mine if id(v) in counted]
    if not kept:
        return None
    latest = sorted(mine, key=lambda v: v.updated_at)[-1]
    voice = sorted(kept, key=lambda v: v.updated_at)[-1]
    return voice if voice.language == latest.language else None


def _voices(votes: Sequence[Vote], counted: set[int]) -> list[Vote]:
    """Each user's one voice on a surname (see ``_voice``), from all verdicts on it; users in the order of their
    first counted verdict."""
    theirs: dict[int, list[Vote]] = defaultdict(list)
    for vote in sorted(votes, key=lambda v: (id(v) not in counted, v.updated_at, v.created_at, v.user_id)):
        theirs[vote.user_id].append(vote)
    return [voice for mine in theirs.values() if (voice := _voice(mine, counted)) is not None]


def select_trusted(votes: Iterable[Vote], policy: FeedbackPolicy, test_keys: frozenset[str]) -> FeedbackSelection:
    """Apply the daily cap, the test-split exclusion, admin authority and majority agreement."""
    votes = list(votes)
    kept, over_cap = within_daily_cap(votes, policy.user_daily_cap)
    counted = {id(vote) for vote in kept}
    by_surname: dict[str, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_surname[vote.surname.lower()].append(vote)
    trusted: list[TrustedLabel] = []
    without_agreement = tied = in_test = 0
    for key in sorted(by_surname):
        voices = _voices(by_surname[key], counted)
        if not voices:  # every verdict on it over the cap, or taken back there
            continue
        if key in test_keys:
            in_test += 1
            continue
        admin_voices = [v for v in voices if v.user_id in policy.admin_ids]
        if admin_voices:
            language = max(admin_voices, key=lambda v: v.updated_at).language  # the latest admin choice decides
            trusted.append(_label(by_surname[key], voices, language, counted, by_admin=True))
            continue
        ranking = Counter(vote.language for vote in voices).most_common()
        (language, count), runner_up = ranking[0], ranking[1][1] if len(ranking) > 1 else 0
        if count < policy.min_agreement:
            without_agreement += 1
        elif count == runner_up:
            tied += 1
        else:
            trusted.append(_label(by_surname[key], voices, language, counted, by_admin=False))
    return FeedbackSelection(tuple(trusted), over_cap, without_agreement, tied, in_test)
