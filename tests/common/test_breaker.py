"""Breakers and deadlines (pure logic): what opens a breaker, what closes it, and how a caller's
deadline bounds every call made for it."""

from __future__ import annotations

import asyncio

import pytest

from imagesearch.common import deadline
from imagesearch.common.breaker import Breaker
from imagesearch.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable


def test_an_outage_opens_the_breaker_and_every_call_then_fails_at_once_naming_it() -> None:
    breaker = Breaker("triton at h:1")
    breaker.check()
    breaker.record(Unavailable("connection refused"))
    with pytest.raises(Unavailable, match=r"triton at h:1 is unavailable \(failing fast after: connection refused\)"):
        breaker.check()
    breaker.succeeded()  # a health probe answered
    breaker.check()
    assert breaker.opened == 1


def test_a_timeout_opens_it_only_when_it_was_our_own() -> None:
    breaker = Breaker("milvus")
    breaker.record(DeadlineExceeded("late"), cut_by_caller=True)  # a hurried caller says nothing of Milvus
    assert not breaker.is_open
    breaker.record(DeadlineExceeded("late"))
    assert breaker.is_open


@pytest.mark.parametrize("answer", [InvalidArgument("bad filter"), NotFound("no such product")])
def test_caller_faults_never_open_it_and_any_answer_closes_it(answer: Exception) -> None:
    breaker = Breaker("retriever")
    breaker.record(answer)
    assert not breaker.is_open
    breaker.failed("down")
    breaker.record(answer)  # the dependency answered: it is up
    assert not breaker.is_open


async def test_a_call_gets_what_its_caller_has_left_and_none_when_nothing_is() -> None:
    assert deadline.bounded(10.0, "x") == 10.0  # outside a request: our own timeout
    token = deadline.received(0.5)
    try:
        assert 0.4 < deadline.bounded(10.0, "x") < 0.5
        assert deadline.bounded(0.1, "x") == 0.1

        async def in_a_task() -> float | None:  # the deadline follows the request into its tasks
            return deadline.remaining()

        left = await asyncio.create_task(in_a_task())
        assert left is not None and 0 < left <= 0.5
    finally:
        deadline.reset(token)
    token = deadline.received(0.0)
    try:
        with pytest.raises(DeadlineExceeded, match="the caller's deadline passed before the call to milvus"):
            deadline.bounded(10.0, "milvus")
    finally:
        deadline.reset(token)
    assert deadline.remaining() is None
