"""The router of the local target: the weights of two variants of a model's split in ``mlserve serve``.

The split is seen as an object (see :mod:`mlserve.rollout.local.store`) whose ``spec.variants`` maps a
variant's name to its REF and weight. Traffic moves exactly as with the Gateway API router: stable
gets ``100 - w``, the canary ``w``; the canary variant is added (at weight 0, with the new version's
pinned REF) before the first step and removed at the end. A split that gives traffic to a third
variant (an A/B test running on the same model) is refused: its share could not be kept while stable
and canary sum to 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlserve.errors import UsageError
from mlserve.rollout.ops import Op, get_at, pointer, remove_ops, set_ops
from mlserve.rollout.routers import Router

LABEL = "local"
KIND = "Split"


def variants(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return (obj.get("spec") or {}).get("variants") or {}


@dataclass
class SplitRouter(Router):
    name: str  # the served model
    stable: str = "stable"
    canary: str = "canary"
    kind: str = KIND
    label: str = LABEL

    def check(self, obj: dict[str, Any]) -> None:
        """The split must have the stable variant, and no other variant with traffic."""
        found = variants(obj)
        if self.stable not in found:
            raise UsageError(f"the split of {self.name!r} on the server has no {self.stable!r} variant "
                             f"(it has {', '.join(found) or 'none'})",
                             hint=f"serve the production version as {self.stable!r}: mlserve serve {self.name}@production")
        others = [n for n, v in found.items() if n not in (self.stable, self.canary) and float(v.get("weight") or 0) > 0]
        if others:
            raise UsageError(f"the split of {self.name!r} also sends traffic to {', '.join(others)}; a rollout manages "
                             f"a two-way split of {self.stable!r} and {self.canary!r} only",
                             hint="end the other experiment first (its weight to 0), or roll out on another server")

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        return [pointer("spec", "variants", self.canary), pointer("spec", "variants", self.stable, "weight"),
                pointer("spec", "variants", self.stable, "ref")]

    def weight_ops(self, obj: dict[str, Any], weight: int, baseline: int = 0) -> list[Op]:
        if baseline:
            raise UsageError("the local target has no baseline variant")
        self.check(obj)
        ops = set_ops(obj, pointer("spec", "variants", self.stable, "weight"), 100 - weight)
        if self.canary in variants(obj):
            ops += set_ops(obj, pointer("spec", "variants", self.canary, "weight"), weight)
        elif weight > 0:
            raise UsageError(f"the split of {self.name!r} has no {self.canary!r} variant to give {weight}% to")
        return ops

    def load_ops(self, obj: dict[str, Any], ref: str) -> list[Op]:
        """Add (or re-point) the canary variant at ``ref`` with no traffic: the server loads it before answering."""
        return set_ops(obj, pointer("spec", "variants", self.canary), {"ref": ref, "weight": 0})

    def remove_ops(self, obj: dict[str, Any]) -> list[Op]:
        return remove_ops(obj, pointer("spec", "variants", self.canary))

    def ref_ops(self, obj: dict[str, Any], ref: str) -> list[Op]:
        return set_ops(obj, pointer("spec", "variants", self.stable, "ref"), ref)

    def shares(self, obj: dict[str, Any]) -> dict[str, int]:
        found = variants(obj)
        total = sum(float(v.get("weight") or 0) for v in found.values())
        share = {role: round(100 * float((found.get(name) or {}).get("weight") or 0) / total) if total else 0
                 for role, name in (("stable", self.stable), ("canary", self.canary))}
        return {**share, "baseline": 0}

    def weight(self, obj: dict[str, Any]) -> int | None:
        return self.shares(obj)["canary"]

    def version_of(self, obj: dict[str, Any], variant: str) -> str | None:
        return get_at(obj, pointer("status", "variants", variant, "version"), None)
