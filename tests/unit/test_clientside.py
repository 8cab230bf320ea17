"""The client-side tools the scenarios and the benchmark judge a cluster with: each can see what it looks for."""

from __future__ import annotations

import time

import pytest

from clientside.cluster import PrimaryWatch, WriteLog


class FakeHosts:
    """Nodes whose `is_writable` answers follow a script: a list of {node: answer} rounds."""

    def __init__(self, rounds: list[dict[str, bool | None]]) -> None:
        self.rounds, self.index = rounds, 0

    def is_writable(self, node: str) -> bool | None:
        answers = self.rounds[min(self.index // 3, len(self.rounds) - 1)]
        self.index += 1
        return answers.get(node)


def test_the_primary_watch_sees_two_primaries_when_there_are_two() -> None:
    one = {"a": True, "b": False, "c": False}
    two = {"a": True, "b": True, "c": False}
    watch = PrimaryWatch(FakeHosts([one] * 6 + [two] * 3 + [one] * 100), ["a", "b", "c"], interval_s=0.01)  # type: ignore[arg-type]
    watch.start_watching(baseline=5)
    time.sleep(0.3)
    watch.stop()
    assert watch.split_brain and watch.split_brain[0][1] == ["a", "b"], "the positive control of the watch itself"


@pytest.mark.parametrize("answers", [{"a": False, "b": False, "c": False}, {"a": True, "b": None, "c": False}])
def test_the_primary_watch_refuses_to_start_blind(answers: dict[str, bool | None]) -> None:
    watch = PrimaryWatch(FakeHosts([answers]), ["a", "b", "c"], interval_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="the watch never saw one primary with every node answering"):
        watch.start_watching(baseline=5, timeout_s=0.5)


def test_the_outage_is_the_longest_silence_from_just_before_the_fault() -> None:
    log = WriteLog(acked=[(1, 10.0), (2, 10.1), (3, 10.2), (4, 14.7), (5, 14.8)])
    assert log.outage_around(10.15) == pytest.approx(4.5)
    with pytest.raises(AssertionError, match="no acknowledged write on both sides of the fault"):
        log.outage_around(20.0)
