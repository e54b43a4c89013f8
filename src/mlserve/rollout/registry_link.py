"""The registry side of a rollout, behind four small calls so the engine does not depend on its internals.

* :meth:`RegistryLink.target` turns ``NAME`` + ``--to VERSION`` into the model and version to roll out
  (``--to`` may be ``3``, ``iris:3`` or ``iris@staging``);
* :meth:`RegistryLink.current` is the version in production now (recorded as the previous version);
* :meth:`RegistryLink.promote` runs on success, :meth:`RegistryLink.journal` on every other outcome,
  :meth:`RegistryLink.rollback` on ``undo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlserve.errors import ExpectationFailedError, NotFoundError, UsageError


@dataclass(frozen=True)
class Target:
    model: str
    version: str
    meta: dict[str, Any] = field(default_factory=dict)


def split_to(name: str, to: str) -> str:
    """The registry reference for ``--to``: a bare version belongs to ``name``."""
    if ":" in to or "@" in to:
        return to
    return f"{name}:{to}"


class RegistryLink:
    """Rollout calls into a :class:`mlserve.registry.Registry`."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    @classmethod
    def open(cls, root: Any = None, lock_timeout: float | None = None) -> "RegistryLink":
        from mlserve.registry import Registry

        return cls(Registry(root=root, lock_timeout=lock_timeout))

    def target(self, name: str, to: str) -> Target:
        ref = split_to(name, to)
        resolved = self.registry.resolve(ref)
        if resolved.model != name:
            raise UsageError(f"--to {to!r} names model {resolved.model!r}, not {name!r}")
        return Target(model=resolved.model, version=str(resolved.version), meta=dict(resolved.meta or {}))

    def current(self, name: str) -> str | None:
        try:
            return str(self.registry.resolve(f"{name}@production").version)
        except NotFoundError:
            return None

    def promote(self, model: str, version: str, reason: str, expect_current: str | None = None) -> str | None:
        """Promote ``version`` to production; with ``expect_current``, only if production holds that version
        ("none": empty). Production already holding ``version`` counts as done (a resumed rollout)."""
        try:
            result = self.registry.promote(model, version, stage="production", reason=reason,
                                           expect_current=expect_current)
        except ExpectationFailedError:
            if self.current(model) == version:
                return None
            raise
        return result.previous

    def rollback(self, model: str, reason: str) -> None:
        self.registry.rollback(model, stage="production", reason=reason)

    def journal(self, model: str, kind: str, details: dict[str, Any], version: str | None = None) -> None:
        self.registry.journal_event(model, kind, details, version=version)

    def restore(self, model: str, previous: str | None, expected: str, reason: str) -> bool:
        """Put ``previous`` back in production if (and only if) production still holds ``expected``.

        A compare-and-swap, so an undo and the rollout process it interrupted can both call it in
        any order and production moves back exactly once.
        """
        if previous is None:
            return False
        try:
            self.registry.promote(model, previous, stage="production", expect_current=expected, reason=reason)
        except ExpectationFailedError:
            return False
        return True


class NoRegistry:
    """For library callers that roll out plain version strings: nothing is resolved or recorded."""

    def target(self, name: str, to: str) -> Target:
        return Target(model=name, version=to.rpartition(":")[2] or to)

    def current(self, name: str) -> str | None:
        return None

    def promote(self, model: str, version: str, reason: str, expect_current: str | None = None) -> str | None:
        return None

    def rollback(self, model: str, reason: str) -> None:
        return None

    def journal(self, model: str, kind: str, details: dict[str, Any], version: str | None = None) -> None:
        return None

    def restore(self, model: str, previous: str | None, expected: str, reason: str) -> bool:
        return False
