"""The RL controller's policy: load a trained PPO policy, act, and clip what it asks for.

The policy chooses one thing: a per-cycle size multiplier from :data:`MULTIPLIERS`, which
scales the requested ``size_pct`` of entries and adds (``nodes/risk_agent.py``). Whatever it
chooses is clipped to ``[0, MAX_MULTIPLIER]`` here and then by every hard limit in
``tools.risk_limits.size_order`` (position cap, gross exposure, cash, stop risk budget,
protections), which it cannot loosen; exits are never scaled.

PPO comes from stable-baselines3 (the optional extra ``rl``: ``make rl``); without it a
policy cannot be loaded and the graph runs with 1.0 (:class:`PolicyUnavailable` says why).
Next to ``policy.zip`` lies ``policy.json`` (:func:`meta_path`): the feature names the policy
was trained on, the multipliers, the training days and the comparisons; a policy whose
features differ from this build's is refused rather than fed the wrong inputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.learning.rl_features import FEATURE_NAMES, as_vector

MULTIPLIERS: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
MAX_MULTIPLIER = max(MULTIPLIERS)
NEUTRAL = 1.0  # what an absent, off or unusable policy applies: today's sizing
INSTALL_HINT = "install with `make rl`"


class PolicyUnavailable(Exception):
    """No usable policy (extra not installed, no file, unreadable file): one line why."""


def clip_multiplier(value: object) -> float:
    """A policy's multiplier made safe: non-numbers and NaN are :data:`NEUTRAL`, the rest is
    clipped to ``[0, MAX_MULTIPLIER]``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NEUTRAL
    if not math.isfinite(v):
        return NEUTRAL
    return min(MAX_MULTIPLIER, max(0.0, v))


def applied_multiplier(action: object, protections: dict | None = None, allow_short: bool = False) -> float:
    """What is applied of a policy's ``action``: :func:`clip_multiplier`, and 0 while a
    protection blocks every opening order (all orders, or buys when shorts are not allowed):
    the row then says that nothing the policy asked for could be used."""
    p = protections or {}
    if p.get("blocks_orders") or (p.get("blocks_buys") and not allow_short):
        return 0.0
    return clip_multiplier(action)


def multiplier_of(action: object) -> float:
    """The multiplier of a discrete action (an index into :data:`MULTIPLIERS`); an index out
    of range is clipped to the nearest end."""
    index = int(np.asarray(action).reshape(-1)[0])
    return MULTIPLIERS[min(len(MULTIPLIERS) - 1, max(0, index))]


def meta_path(policy_path: Path) -> Path:
    return Path(policy_path).with_suffix(".json")


def require_sb3():
    """The stable-baselines3 module, or :class:`PolicyUnavailable` with the install hint."""
    try:
        import stable_baselines3
    except ImportError:
        raise PolicyUnavailable(f"the RL extra is not installed ({INSTALL_HINT})") from None
    return stable_baselines3


def policy_id(path: Path) -> str:
    """``name@sha256[:12]`` of the policy file: which policy acted, in the ledger's rows."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name}@{digest}"


@dataclass
class Policy:
    """A loaded policy: ``act`` maps the features to the clipped multiplier."""

    id: str
    model: object
    meta: dict

    def act(self, features: dict[str, float]) -> float:
        """The multiplier the policy asks for (deterministic: the same features give the same
        one); callers clip it (:func:`clip_multiplier`, :func:`applied_multiplier`)."""
        action, _ = self.model.predict(as_vector(features), deterministic=True)  # type: ignore[attr-defined]
        return multiplier_of(action)


_cache: dict[tuple, Policy] = {}


def load_policy(path: Path) -> Policy:
    """Load (once per file version per process) the PPO policy at ``path``.

    :class:`PolicyUnavailable` when the extra is missing, the file is missing or unreadable,
    or it was trained on other features than this build's."""
    path = Path(path)
    if not path.is_file():
        raise PolicyUnavailable(f"no RL policy at {path} (train one: python -m graph.rl train --home DIR)")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _cache:
        return _cache[key]
    sb3 = require_sb3()
    meta: dict = {}
    if meta_path(path).is_file():
        try:
            meta = json.loads(meta_path(path).read_text())
        except (OSError, ValueError) as exc:
            raise PolicyUnavailable(f"{meta_path(path)}: unreadable ({exc})") from None
        if list(meta.get("features", FEATURE_NAMES)) != list(FEATURE_NAMES):
            raise PolicyUnavailable(f"{path}: trained on features {meta.get('features')}, this build uses "
                                    f"{list(FEATURE_NAMES)}; train it again")
    import torch

    torch.set_num_threads(1)  # one small MLP per cycle: threads only contend with the other workers
    try:
        model = sb3.PPO.load(str(path), device="cpu")
    except Exception as exc:  # a truncated or foreign zip: any of zipfile, pickle, torch errors
        raise PolicyUnavailable(f"{path}: not a loadable PPO policy ({type(exc).__name__}: {exc})") from None
    n = getattr(model.action_space, "n", None)
    if n != len(MULTIPLIERS):
        raise PolicyUnavailable(f"{path}: {n} actions, this build has {len(MULTIPLIERS)} multipliers")
    policy = Policy(id=policy_id(path), model=model, meta=meta)
    _cache.clear()  # one policy per process at a time
    _cache[key] = policy
    return policy
