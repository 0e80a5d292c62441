"""Order entry: what the order manager needs from a venue, simulated or live.

The engine calls these methods synchronously on the hot path; a venue answers later by calling
the ``ExecSink`` it was given (``Engine.on_exec_report``) with ``engine.events.ExecReport``s.
A live client writes the bytes before returning (during a market-data callback it may hold them
until the engine returns, so that a cancel and its replacement leave in one write); a simulated
venue schedules the order's arrival.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.events import ExecReport, Incident
    from engine.orders import Order


class ExecSink(Protocol):
    def on_exec_report(self, report: ExecReport) -> None: ...

    def on_incident(self, incident: Incident) -> None: ...


class ExecutionClient(Protocol):
    """What the order manager needs from a venue.

    The calls send and return: a venue reports through the engine's sink later (a simulated
    venue's timeline, a live client's next loop turn), never from inside the call, and leaves
    the ``Order`` as it was given. The order manager relies on this to build an order's event-log
    rows after the bytes have left, numbered as if recorded before.

    A client may also offer ``dry_run() -> ExecutionClient``: the same request preparation
    (filters, signing, framing) with nothing sent, for the path warmer (``engine.warm``), and
    ``track_adopted(order)``: an order reconciliation took over, or booked fills of from the
    venue's trade list (``engine.reconcile.hand_over``); a client that counts fills from the
    venue's cumulative quantity must then book only what the order fills beyond ``order.filled``.
    """

    name: str
    #: False on venues without an amend: the order manager turns modify into cancel + new.
    supports_modify: bool

    def submit_order(self, order: Order) -> None:
        """Send a new order (``order.price``/``order.qty`` already rounded and checked)."""

    def cancel_order(self, order: Order) -> None:
        """Request cancellation; the answer is a ``canceled`` or ``cancel_rejected`` report."""

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        """Amend price/quantity in place (only called when ``supports_modify``)."""


#: the name the engine used before the contract had several parts
ExecutionVenue = ExecutionClient
