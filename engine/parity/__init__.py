"""Live-to-backtest parity (``hft parity RUN_DIR``): a recorded paper or live session replayed as
a backtest of its captured market data with the same models, compared decision by decision and
fill by fill (``docs/parity.md``)."""

from engine.parity.report import DEFAULT_TOLERANCE_US, format_report, run_parity
from engine.parity.spec import ParityError

__all__ = ["DEFAULT_TOLERANCE_US", "ParityError", "format_report", "run_parity"]
