"""The compiled path: a backtest of one compiled strategy in one ``@njit`` loop (``loop``), with
the Python path's order semantics and event log (``eventbuf``). ``engine.runners.compiled``
runs a spec on it (``hft backtest CONFIG --engine compiled``); the strategy ABI is
``engine.compiled_strategy``."""
