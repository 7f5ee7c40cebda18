"""A lane: one source of one tenant, collected on its own.

Each lane has its own watermark, lease, last-run record, manifests and data folder. A
single-tenant deployment has one lane per source and no tenant; in multi-tenant mode each
customer tenant has one lane per source. Graph's request limits also apply per tenant
(per app per tenant), so lanes of different tenants never share a budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sources import Source


@dataclass(frozen=True)
class Lane:
    """One source of one tenant (``tenant`` None: the identity's own, single-tenant mode)."""

    source: Source
    tenant: str | None = None

    @property
    def name(self) -> str:
        """How logs, reports and ``status`` call the lane: ``pstn``, or ``pstn@<tenant>``."""
        return self.source.name if self.tenant is None else f"{self.source.name}@{self.tenant}"


def lanes(sources: tuple[Source, ...], tenant: str | None = None) -> tuple[Lane, ...]:
    """The lanes of ``sources`` in ``tenant``."""
    return tuple(Lane(source, tenant) for source in sources)


def tenant_lanes(sources: tuple[Source, ...], tenants: tuple[str, ...]) -> tuple[Lane, ...]:
    """The lanes of ``sources`` in each of ``tenants`` (none: the identity's own tenant)."""
    return tuple(lane for tenant in tenants or (None,) for lane in lanes(sources, tenant))
