"""Where ``graph.evaluate``'s (cell, arm) replays run: inline, a local process pool, or Ray.

:func:`run_tasks` is the one entry: it calls ``fn(*args)`` for every task and hands each
result to ``done(key, result)`` as it arrives (any order). The three executors run the same
function on the same arguments, and a replay is deterministic, so the results, and the
summary built from them, are identical whichever runs them; only the timings differ.

Ray (the optional extra ``ray``): ``ray=""`` or ``"local"`` starts a local Ray with ``jobs``
CPUs (no dashboard), any other value is a cluster address (``ray://head:10001``,
``head:6379``, ``auto``). A Ray session the caller already started is used as is and left
running. On a cluster every node needs VOLT installed (the same version), the data CSV at the
same path, and ``--out`` on a filesystem all nodes share (each task writes its ``arm.json``
there; the results themselves come back to the driver through Ray).

Settings come from the environment (``VOLT_*``), and Ray's workers do not have the driver's
environment (they were started with the cluster, maybe on other machines): each Ray task
carries the driver's ``VOLT_*`` and ``OLLAMA_HOST`` variables and runs with exactly those, so
a variable set on a worker machine alone cannot change a replay.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from graph.evaluate.windows import EvaluateError

Task = tuple[Hashable, tuple]  # (key for done() and errors, arguments of fn)
ENV_PREFIXES = ("VOLT_", "OLLAMA_HOST")  # the environment that decides VoltSettings (graph/settings.py)


def settings_env() -> dict[str, str]:
    """This process's variables that VoltSettings reads (``VOLT_*``, ``OLLAMA_HOST``)."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}


def _failed(key: Hashable, label: Callable[[Hashable], str], exc: BaseException) -> EvaluateError:
    cause = getattr(exc, "cause", None) or exc  # Ray wraps the task's exception (RayTaskError.cause)
    return EvaluateError(f"{label(key)}: {type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}")


def run_tasks(fn: Callable[..., Any], tasks: Sequence[Task], done: Callable[[Hashable, Any], None], *,
              jobs: int = 1, ray: str | None = None, label: Callable[[Hashable], str] = str,
              init_worker: Callable[..., None] | None = None, init_args: tuple = ()) -> None:
    """Run ``fn(*args)`` for each ``(key, args)`` of ``tasks``: on Ray when ``ray`` is not None,
    else in a spawned process pool of ``jobs`` workers (``init_worker(*init_args)`` in each)
    when ``jobs > 1`` and there are several tasks, else inline in this order. The first task
    that fails stops the run with a one-line :class:`EvaluateError` (``label(key)`` first)."""
    if ray is not None:
        _run_on_ray(fn, tasks, done, jobs=jobs, address=ray, label=label)
    elif jobs > 1 and len(tasks) > 1:
        _run_in_pool(fn, tasks, done, jobs=jobs, label=label, init_worker=init_worker, init_args=init_args)
    else:
        for key, args in tasks:
            done(key, fn(*args))


def _run_in_pool(fn, tasks, done, *, jobs, label, init_worker, init_args) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, initargs=init_args)
    try:
        futures = {pool.submit(fn, *args): key for key, args in tasks}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:
                raise _failed(key, label, exc) from None
            done(key, result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _call(env: dict[str, str], fn: Callable[..., Any], args: tuple) -> Any:
    """A task on a Ray worker (module level: Ray pickles it by reference), with exactly the
    driver's settings variables ``env`` (workers are reused: every task sets them anew)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for key in [k for k in os.environ if k.startswith(ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)
    return fn(*args)


def _run_on_ray(fn, tasks, done, *, jobs: int, address: str, label) -> None:
    try:
        import ray
    except ImportError:
        raise EvaluateError("--ray needs Ray: pip install 'volt-trader[ray]' (or pip install ray)") from None
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine unasked
        try:
            if address in ("", "local"):
                ray.init(address="local", num_cpus=jobs, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # no cluster there, a version mismatch: one line
            raise EvaluateError(f"cannot start or reach Ray at {address or 'local'}: {type(exc).__name__}: "
                                f"{(str(exc).splitlines() or [''])[0]}") from None
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(_call)  # a failed replay is reported, not re-run blindly
    try:
        env = ray.put(settings_env())
        pending = {remote.remote(env, fn, args): key for key, args in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref)
                raise _failed(key, label, exc) from None
            done(key, result)
    finally:
        if started:
            ray.shutdown()
