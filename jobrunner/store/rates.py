"""Rate limits: one token bucket per queue in the queue_rate table (schema v9), taken from
inside the claim's transaction, so a rate holds across daemon restarts and any number of daemons.

The bucket's row is locked while a daemon claims from the queue (SQLite: its write lock;
PostgreSQL: FOR UPDATE), so two daemons never spend one token. A job the rate holds back stays
queued; the daemon learns when the next token is due and sleeps until then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jobrunner.domain.rates import EPSILON, Rate, next_token_at, refill
from jobrunner.store import runs
from jobrunner.store.db import Store, guarded


@guarded
def claim(store: Store, owner: str, now: float, limit: int, lease_s: float, log_dir: str, queue: str,
          rate: Rate, on_claimed: Callable[[list[runs.Claim]], None] | None = None,
          ) -> tuple[list[runs.Claim], float | None]:  # fmt: skip
    """Claim up to `limit` jobs of `queue`, no more than its bucket has tokens for, in the
    caller's transaction. Returns the claims, and when the next token is due if jobs of the
    queue wait for one (None: nothing waits on the rate)."""
    with store.joined():
        tokens = _bucket(store, queue, rate, now)
        room = min(limit, int(tokens + EPSILON))
        claims = runs.claim(store, owner, now, room, lease_s, log_dir, only_queues=[queue],
                            on_claimed=on_claimed) if room > 0 else []  # fmt: skip
        tokens = max(tokens - len(claims), 0.0)
        p = store.backend.param
        store.execute(
            f"UPDATE queue_rate SET rate={p}, per_second={p}, capacity={p}, tokens={p}, updated_at={p} "
            f"WHERE queue={p}",
            (rate.text, rate.per_second, rate.capacity, tokens, now, queue),
        )
        held_back = tokens + EPSILON < 1 and len(claims) == room and len(claims) < limit
        if held_back and _queued(store, queue):
            return claims, next_token_at(rate, tokens, now)
    return claims, None


def _bucket(store: Store, queue: str, rate: Rate, now: float) -> float:
    """The queue's tokens as of `now` (a new bucket starts full), its row locked until the commit."""
    p = store.backend.param
    store.execute(
        "INSERT INTO queue_rate (queue, rate, per_second, capacity, tokens, updated_at) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (queue) DO NOTHING",
        (queue, rate.text, rate.per_second, rate.capacity, rate.capacity, now),
    )
    lock = "" if store.is_sqlite else " FOR UPDATE"
    tokens, updated_at = store.execute(
        f"SELECT tokens, updated_at FROM queue_rate WHERE queue={p}{lock}", (queue,)
    ).fetchone()
    return refill(rate, tokens, updated_at, now)


def _queued(store: Store, queue: str) -> bool:
    """Whether a job of `queue` is queued (from the claim index alone)."""
    p = store.backend.param
    hint = store.indexed_by("job_claim_queued")
    return store.execute(
        f"SELECT 1 FROM job{hint} WHERE status='queued' AND queue={p} LIMIT 1", (queue,)
    ).fetchone() is not None


@guarded
def keep_only(store: Store, queues: Sequence[str]) -> None:
    """Forget the buckets of queues the config no longer limits (a daemon starting or reloading):
    `status` then stops reporting a rate nobody enforces. The others keep their tokens."""
    p = store.backend.param
    with store.write():
        if queues:
            store.execute(f"DELETE FROM queue_rate WHERE queue NOT IN ({', '.join([p] * len(queues))})", list(queues))
        else:
            store.execute("DELETE FROM queue_rate")


@guarded
def states(store: Store, now: float) -> dict[str, dict[str, Any]]:
    """Each rate-limited queue's rate, its tokens as of `now`, and when the next is due (None
    while it has one): for `status` and the TUI."""
    found: dict[str, dict[str, Any]] = {}
    rows = store.execute("SELECT queue, rate, per_second, capacity, tokens, updated_at FROM queue_rate").fetchall()
    for queue, text, per_second, capacity, tokens, updated_at in rows:
        rate = Rate(text, per_second, capacity)
        now_tokens = refill(rate, tokens, updated_at, now)
        due = None if now_tokens + EPSILON >= 1 else next_token_at(rate, now_tokens, now)
        found[queue] = {"rate": text, "tokens": round(now_tokens, 3),
                        "next_token_in": None if due is None else round(due - now, 3)}  # fmt: skip
    return found
