"""A live web dashboard of a run folder: windows and phases, peers with status and reasons, scores
and weights over time, the global model's held-out loss, compute vs communication."""

from templar_jax.dashboard.server import DashboardServer, render_page
from templar_jax.dashboard.state import dashboard_state

__all__ = ["DashboardServer", "dashboard_state", "render_page"]
