"""The LLM router: tries providers in the configured order with retries (exponential
backoff, full jitter, ``retry-after`` honoured) on retryable errors before the first token,
a circuit breaker per provider, failover to the next provider, and optional routing of
simple messages to a cheaper model, all within a deadline. Sleep, randomness and the clock
are injected.

Guarantees to the caller of :meth:`Router.stream`:

* Nothing is retried once any event has been yielded: a failure after that point ends the
  stream with a :class:`StreamError` event (carrying the partial text), never a hang or a
  duplicate answer.
* If no provider is configured, or every provider fails (or is circuit-open) before
  yielding anything, the ``fallback`` provider (normally :class:`OfflineProvider`) answers;
  without a fallback :class:`NoProviderAvailable` is raised.
* The whole sequence of attempts, backoffs and failovers ends by the deadline: the
  request's ``time_left``, else the router's ``deadline`` seconds. Each attempt waits at most
  the time left for any read, no backoff sleeps past it, and once it has passed the
  fallback answers. A stream already under way is not cut by it.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .errors import BadRequestError, NoProviderAvailable, ProviderError
from .offline import OfflineProvider
from .types import (
    ChatProvider,
    ChatRequest,
    Completion,
    StreamError,
    StreamEvent,
    TextDelta,
    collect,
)

log = logging.getLogger(__name__)

MEMORY_WORDS = frozenset(
    {
        "remember", "remembered", "forget", "forgot", "memory", "memories", "recall",
        "remind", "save", "store", "note", "delete", "update", "know", "knew",
    }
)  # fmt: skip
_WORD = re.compile(r"[a-zA-Z']+")

# How one provider's attempts ended (Router._attempts), and the verdict on a failed attempt.
ANSWERED, FAILED, TIMED_OUT, RETRY = "answered", "failed", "timed_out", "retry"


def is_simple_message(request: ChatRequest, max_chars: int = 80) -> bool:
    """The rule for routing to the cheaper model. A request is *simple* when all hold:

    1. the last message is from the user (not a tool result inside a tool loop);
    2. its text is at most ``max_chars`` characters (default 80) after trimming;
    3. it contains no question mark;
    4. it contains none of :data:`MEMORY_WORDS` (remember, forget, memory, recall, save,
       store, note, delete, update, know, ...), i.e. it neither asks about nor asks to
       change memories;
    5. it has no line breaks (no pasted text or code).

    Examples: "thanks!", "ok, sounds good", "hello there" are simple; "what is my name?",
    "remember that I like tea", and any multi-line message are not. Tools are still sent
    to the cheaper model, so it can still write a memory if it decides to.
    """
    if not request.messages:
        return False
    last = request.messages[-1]
    if last.role != "user":
        return False
    text = last.content.strip()
    if not text or len(text) > max_chars or "?" in text or "\n" in text:
        return False
    words = {w.lower() for w in _WORD.findall(text)}
    return not (words & MEMORY_WORDS)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra attempts per provider; delay before retry *n* (0-based) is
    ``uniform(0, min(max_delay, base_delay * 2**n))`` (full jitter), or the server's
    ``retry-after`` when given. A ``retry-after`` longer than ``max_retry_after`` is not
    waited for: the router fails over instead."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 20.0


@dataclass(frozen=True)
class BreakerPolicy:
    """``failure_threshold`` consecutive failed calls open the breaker for
    ``open_seconds``; then one trial call is let through (half-open)."""

    failure_threshold: int = 5
    open_seconds: float = 30.0


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self.opened_at is None:
            return self.CLOSED
        if self.clock() - self.opened_at >= self.policy.open_seconds:
            return self.HALF_OPEN
        return self.OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one trial at a time."""
        with self._lock:
            state = self._state()
            if state == self.CLOSED:
                return True
            if state == self.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.failures = 0
            self.opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self._trial_running or self.failures >= self.policy.failure_threshold:
                self.opened_at = self.clock()
            self._trial_running = False


@dataclass
class _Output:
    """What one attempt has yielded so far."""

    started: bool = False
    text: list[str] = field(default_factory=list)


class Router:
    """Streams a response from the first provider that can give one.

    ``cheap_models`` maps a provider name to the model used for requests that
    ``simple_rule`` (default :func:`is_simple_message`) calls simple; requests that
    already name a model are left alone. ``fallback`` answers when no provider can.
    """

    def __init__(
        self,
        providers: Sequence[ChatProvider],
        *,
        retry: RetryPolicy = RetryPolicy(),
        breaker: BreakerPolicy = BreakerPolicy(),
        cheap_models: Mapping[str, str] | None = None,
        simple_rule: Callable[[ChatRequest], bool] = is_simple_message,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        fallback: OfflineProvider | None = None,
        deadline: float | None = None,
    ) -> None:
        self.providers = list(providers)
        self.deadline = deadline
        self.clock = clock
        self.fallback = fallback
        self.retry = retry
        self.cheap_models = dict(cheap_models or {})
        self.simple_rule = simple_rule
        self.sleep = sleep
        self.rand = rand
        self.log = logger or log
        self.breakers = {p.name: CircuitBreaker(breaker, clock) for p in self.providers}

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        cap = min(self.retry.max_delay, self.retry.base_delay * (2**attempt))
        return self.rand() * cap

    def complete(self, request: ChatRequest) -> Completion:
        """The whole response at once (still raises :class:`NoProviderAvailable`)."""
        return collect(self.stream(request))

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        if not self.providers:
            if self.fallback is None:
                raise NoProviderAvailable("no language model provider is configured")
            yield from self.fallback.stream(request, "not_configured")
            return
        simple = bool(self.cheap_models) and request.model is None and self.simple_rule(request)
        budget = request.time_left if request.time_left is not None else self.deadline
        ends = None if budget is None else self.clock() + budget
        errors: list[ProviderError] = []
        timed_out = False
        for provider in self.providers:
            if ends is not None and ends - self.clock() <= 0:
                timed_out = True
                break
            if not self.breakers[provider.name].allow():
                self.log.warning("llm provider %s skipped: circuit open", provider.name)
                continue
            req = request
            if simple and provider.name in self.cheap_models:
                req = replace(request, model=self.cheap_models[provider.name])
            outcome = yield from self._attempts(provider, req, ends, errors)
            if outcome == ANSWERED:
                return
            timed_out = timed_out or outcome == TIMED_OUT
        if ends is not None and self.clock() >= ends:
            timed_out = True
        if timed_out:
            message = "no language model answered before the deadline"
        else:
            message = "every language model provider failed or is unavailable"
        if errors:
            message += ": " + "; ".join(f"{e.provider}: {e}" for e in errors)
        if self.fallback is None:
            raise NoProviderAvailable(message, errors)
        self.log.error("%s; answering offline", message)
        yield from self.fallback.stream(request, "timed_out" if timed_out else "unavailable")

    def _attempts(
        self,
        provider: ChatProvider,
        req: ChatRequest,
        ends: float | None,
        errors: list[ProviderError],
    ) -> Generator[StreamEvent, None, str]:
        """One provider's attempts with retries; returns ANSWERED, FAILED or TIMED_OUT.
        Each failure before any output is appended to ``errors``."""
        breaker = self.breakers[provider.name]
        attempt = 0
        while True:
            if ends is not None:
                req = replace(req, time_left=ends - self.clock())
            out = _Output()
            try:
                yield from self._attempt(provider, req, breaker, out)
                return ANSWERED
            except ProviderError as exc:
                if out.started:  # never retried: the stream ends with the error
                    breaker.record_failure()
                    self.log.warning(
                        "llm stream from %s broke after output started: %s", provider.name, exc
                    )
                    yield StreamError(
                        error=exc,
                        partial_text="".join(out.text),
                        provider=provider.name,
                        model=exc.model or (req.model or ""),
                    )
                    return ANSWERED
                errors.append(exc)
                delay = self.backoff(attempt, exc.retry_after)
                outcome = self._retry_outcome(exc, attempt, delay, ends)
                if outcome != RETRY:
                    if not isinstance(exc, BadRequestError):
                        breaker.record_failure()
                    self.log.warning(
                        "llm provider %s failed (%s); trying the next provider", provider.name, exc
                    )
                    return outcome
                self.log.info(
                    "llm provider %s: %s; retry %d in %.2fs", provider.name, exc, attempt + 1, delay
                )
                self.sleep(delay)
                attempt += 1

    def _attempt(
        self, provider: ChatProvider, req: ChatRequest, breaker: CircuitBreaker, out: _Output
    ) -> Iterator[StreamEvent]:
        """One call, its events passed through and noted in ``out``. Every failure is a
        :class:`ProviderError`."""
        try:
            for event in provider.stream(req):
                out.started = True
                if isinstance(event, TextDelta):
                    out.text.append(event.text)
                yield event
        except GeneratorExit:  # the caller stopped reading: not a failure
            breaker.record_success()
            raise
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - a provider bug is a failure too
            raise ProviderError(f"{provider.name} raised {exc!r}", provider=provider.name) from exc
        breaker.record_success()

    def _retry_outcome(
        self, exc: ProviderError, attempt: int, delay: float, ends: float | None
    ) -> str:
        """RETRY the provider after ``delay``, or give up on it: FAILED, or TIMED_OUT when
        the backoff would end past the deadline."""
        if not exc.retryable or attempt >= self.retry.max_retries:
            return FAILED
        if exc.retry_after is not None and exc.retry_after > self.retry.max_retry_after:
            return FAILED
        if ends is not None and self.clock() + delay >= ends:
            return TIMED_OUT
        return RETRY
