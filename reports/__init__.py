"""Reports from the event log (``runs/<run_id>/``), computed in SQL by DuckDB.

- ``postmortem``: the strategy post-mortem (guide 9.2) of one run or of several (``trades``);
- ``latency``: latency percentiles per stage (guide 5.1);
- ``eventlog``: opening logs as DuckDB tables; ``runs``: finding runs under a runs root;
- ``pnl``, ``roundtrips``, ``execution``, ``breakdowns``, ``diagnosis``: the queries of each section;
- ``plots``, ``render``: PNG plots and the HTML/Markdown output;
- ``cli``: ``hft report ...``; ``logwriter``: small logs from rows.

Nothing here is compiled by numba (the 1M-fill benchmark is ``bench/reports.py``).
"""
