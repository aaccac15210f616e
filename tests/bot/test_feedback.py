"""The feedback policy: which verdicts become training data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.feedback import FeedbackPolicy, Vote, select_trusted

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
POLICY = FeedbackPolicy(min_agreement=2, user_daily_cap=50, admin_ids=frozenset({1}))


def vote(surname: str, user_id: int, language: str, minutes: int = 0) -> Vote:
    moment = T0 + timedelta(minutes=minutes)
    return Vote(surname=surname, user_id=user_id, language=language, created_at=moment, updated_at=moment)


def labels(votes: list[Vote], policy: FeedbackPolicy = POLICY, test_keys: frozenset[str] = frozenset()) -> dict:
    return {label.surname: label.language for label in select_trusted(votes, policy, test_keys).trusted}


def test_one_user_is_not_enough_two_agreeing_users_are() -> None:
    assert labels([vote("Falcao", 10, "Portuguese")]) == {}
    assert labels([vote("Falcao", 10, "Portuguese"), vote("falcao", 11, "Portuguese")]) == {"Falcao": "Portuguese"}


def test_the_same_user_twice_is_one_voice_their_latest() -> None:
    votes = [vote("Falcao", 10, "Portuguese"), vote("Falcao", 10, "Portuguese", 1)]
    assert labels(votes) == {}
    changed_mind = [vote("Falcao", 10, "Spanish"), vote("Falcao", 11, "Portuguese")]
    changed_mind.append(vote("Falcao", 10, "Portuguese", 5))
    assert labels(changed_mind) == {"Falcao": "Portuguese"}


def test_majority_wins_and_ties_are_left_out() -> None:
    majority = [vote("Costa", u, "Portuguese") for u in (10, 11, 12)] + [vote("Costa", u, "Spanish") for u in (13, 14)]
    assert labels(majority) == {"Costa": "Portuguese"}
    tie = [vote("Costa", u, "Portuguese") for u in (10, 11)] + [vote("Costa", u, "Spanish") for u in (12, 13)]
    selection = select_trusted(tie, POLICY, frozenset())
    assert selection.trusted == () and selection.tied == 1


def test_an_admin_decides_alone_and_overrides_users() -> None:
    assert labels([vote("Falcao", 1, "Portuguese")]) == {"Falcao": "Portuguese"}
    crowd = [vote("Falcao", u, "Italian") for u in (10, 11, 12)] + [vote("Falcao", 1, "Portuguese")]
    assert labels(crowd) == {"Falcao": "Portuguese"}
    two_admins = FeedbackPolicy(admin_ids=frozenset({1, 2}))
    # Admin 1 voted first and last; admin 2 in between: admin 1's last choice is the latest.
    votes = [vote("Costa", 1, "Spanish", 0), vote("Costa", 2, "Italian", 1), vote("Costa", 1, "Portuguese", 2)]
    assert labels(votes, two_admins) == {"Costa": "Portuguese"}


def test_verdicts_beyond_the_daily_cap_are_not_used() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=3)
    # Two users agree on 5 names, but only each user's first 3 verdicts of the day count.
    votes = [vote(f"Name{i}", 10, "Greek", i) for i in range(5)]
    votes += [vote(f"Name{i}", 11, "Greek", 10 + i) for i in range(5)]
    selection = select_trusted(votes, policy, frozenset())
    assert sorted(label.surname for label in selection.trusted) == ["Name0", "Name1", "Name2"]
    assert selection.over_daily_cap == 4
    # The next day the cap starts again.
    next_day = [vote("Name3", 10, "Greek", 24 * 60 + 1), vote("Name3", 11, "Greek", 24 * 60 + 2)]
    assert "Name3" in labels(votes + next_day, policy)


def test_test_split_names_are_never_trained_on() -> None:
    votes = [vote("Smith", 10, "Scottish"), vote("Smith", 11, "Scottish")]
    selection = select_trusted(votes, POLICY, frozenset({"smith"}))
    assert selection.trusted == () and selection.in_test_split == 1


def test_one_user_flooding_500_wrong_verdicts_yields_nothing() -> None:
    flood = [vote(f"Ivanov{i}", 66, "Japanese", i // 10) for i in range(500)]
    selection = select_trusted(flood, POLICY, frozenset())
    assert selection.trusted == ()
    assert selection.over_daily_cap == 450 and selection.without_agreement == 50


def test_new_votes_count_only_those_after_the_last_run() -> None:
    votes = [vote("Falcao", 10, "Portuguese", 0), vote("Falcao", 11, "Portuguese", 30)]
    votes.append(vote("Falcao", 12, "Italian", 40))
    selection = select_trusted(votes, POLICY, frozenset())
    assert selection.new_votes_since(None) == 2
    assert selection.new_votes_since(T0 + timedelta(minutes=10)) == 1  # the dissenting vote supports nothing


def test_min_agreement_above_two_needs_that_many_users() -> None:
    three = FeedbackPolicy(min_agreement=3)
    two_agree = [vote("Costa", u, "Portuguese") for u in (10, 11)]
    selection = select_trusted(two_agree, three, frozenset())
    assert selection.trusted == () and selection.without_agreement == 1
    assert labels([*two_agree, vote("Costa", 12, "Portuguese")], three) == {"Costa": "Portuguese"}


def test_a_user_s_voice_is_the_choice_they_set_last_not_the_guess_they_made_last() -> None:
    # User 10 guessed Falcao twice: the first verdict was changed at 09:20, after the second was set at 09:06.
    changed_last = Vote("Falcao", 10, "Portuguese", created_at=T0, updated_at=T0 + timedelta(minutes=20))
    set_earlier = Vote(
        "Falcao", 10, "Spanish", created_at=T0 + timedelta(minutes=5), updated_at=T0 + timedelta(minutes=6)
    )
    for votes in ([changed_last, set_earlier], [set_earlier, changed_last]):
        assert labels([*votes, vote("Falcao", 11, "Portuguese")]) == {"Falcao": "Portuguese"}


def test_a_verdict_changed_after_the_last_run_is_new_though_first_set_before_it() -> None:
    last_run = T0 + timedelta(minutes=10)
    changed = Vote("Falcao", 10, "Portuguese", created_at=T0, updated_at=T0 + timedelta(minutes=30))
    unchanged = vote("Falcao", 11, "Portuguese", 5)
    selection = select_trusted([changed, unchanged], POLICY, frozenset())
    assert selection.new_votes_since(last_run) == 1


def test_the_daily_cap_keeps_a_user_s_earliest_verdicts_whatever_order_they_arrive_in() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=2)
    votes = [vote(f"Name{i}", user, "Greek", i) for i in range(4) for user in (10, 11)]
    assert sorted(labels(list(reversed(votes)), policy)) == ["Name0", "Name1"]


def test_users_who_agree_with_an_admin_support_the_label_and_count_as_new_votes() -> None:
    votes = [vote("Falcao", 1, "Portuguese"), vote("Falcao", 10, "Portuguese"), vote("Falcao", 11, "Italian")]
    selection = select_trusted(votes, POLICY, frozenset())
    [label] = selection.trusted
    assert label.by_admin and sorted(v.user_id for v in label.supporters) == [1, 10]
    assert selection.new_votes_since(None) == 2


def test_the_same_choice_pressed_on_the_name_asked_again_is_not_new() -> None:
    last_run = T0 + timedelta(minutes=10)
    agreed = [vote("Falcao", 10, "Portuguese", 0), vote("Falcao", 11, "Portuguese", 5)]
    # User 10 asks for Falcao again after the run and presses the same language: nothing changed.
    asked_again = select_trusted([*agreed, vote("falcao", 10, "Portuguese", 30)], POLICY, frozenset())
    assert asked_again.new_votes_since(last_run) == 0 and asked_again.new_votes_since(None) == 2
    # Spanish before the run, Portuguese on the name asked again after it: a new choice.
    switched = [vote("Falcao", 10, "Spanish", 0), *agreed[1:], vote("Falcao", 10, "Portuguese", 30)]
    assert select_trusted(switched, POLICY, frozenset()).new_votes_since(last_run) == 1
    # A second guess's verdict changed after the run: what it said at the run is no longer stored, so it is new.
    changed = Vote("Falcao", 10, "Portuguese", T0 + timedelta(minutes=1), updated_at=T0 + timedelta(minutes=40))
    assert select_trusted([*agreed, changed], POLICY, frozenset()).new_votes_since(last_run) == 1


def test_a_choice_taken_back_over_the_daily_cap_does_not_count() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=2)
    # User 10 says Spanish, spends the cap on another name, then asks for Falcao again and says Portuguese.
    votes = [vote("Falcao", 10, "Spanish"), vote("Rossi", 10, "Italian", 1), vote("Falcao", 11, "Spanish", 2)]
    assert labels(votes, policy) == {"Falcao": "Spanish"}
    selection = select_trusted([*votes, vote("Falcao", 10, "Portuguese", 3)], policy, frozenset())
    assert selection.trusted == () and selection.over_daily_cap == 1 and selection.without_agreement == 2


def test_the_same_choice_repeated_over_the_daily_cap_keeps_the_users_voice() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=2)
    # User 10 spends the cap, then asks for Falcao again and presses Spanish again: nothing was taken back.
    votes = [vote("Falcao", 10, "Spanish"), vote("Rossi", 10, "Italian", 1), vote("Falcao", 11, "Spanish", 2)]
    selection = select_trusted([*votes, vote("Falcao", 10, "Spanish", 3)], policy, frozenset())
    assert [label.language for label in selection.trusted] == ["Spanish"] and selection.over_daily_cap == 1
    assert selection.new_votes_since(T0 + timedelta(minutes=10)) == 0


def test_a_voice_regained_after_a_choice_over_the_cap_is_new() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=1)
    last_run = T0 + timedelta(minutes=10)
    # At the run user 10's latest choice, Spanish, was over the cap: no voice, and Falcao had one supporter.
    votes = [vote("Falcao", 10, "Portuguese"), vote("Falcao", 10, "Spanish", 1), vote("Falcao", 11, "Portuguese", 2)]
    assert labels(votes, policy) == {}
    # The next day they choose Portuguese again: Falcao is trusted now, through a verdict made since the run.
    selection = select_trusted([*votes, vote("Falcao", 10, "Portuguese", 24 * 60)], policy, frozenset())
    assert [label.language for label in selection.trusted] == ["Portuguese"]
    assert selection.new_votes_since(last_run) == 1


def test_an_admin_s_verdicts_beyond_the_daily_cap_are_not_used_either() -> None:
    policy = FeedbackPolicy(min_agreement=2, user_daily_cap=2, admin_ids=frozenset({1}))
    # The admin's third verdict of the day is over the cap: Name2 then has one user's voice, not the admin's.
    votes = [vote(f"Name{i}", 1, "Greek", i) for i in range(3)] + [vote("Name2", 10, "Greek", 5)]
    selection = select_trusted(votes, policy, frozenset())
    assert [label.surname for label in selection.trusted] == ["Name0", "Name1"]
    assert selection.over_daily_cap == 1 and selection.without_agreement == 1


@pytest.mark.parametrize(("min_agreement", "user_daily_cap"), [(0, 50), (2, 0)])
def test_a_policy_that_trusts_everyone_or_no_one_is_refused(min_agreement: int, user_daily_cap: int) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        FeedbackPolicy(min_agreement=min_agreement, user_daily_cap=user_daily_cap)
