"""Research at scale: parameter sweeps of independent backtests (``hft sweep``).

``grid`` reads ``--grid`` settings and writes one run config per point, ``plan`` crosses them with
days and symbols, ``datasource`` finds a point's market data by path or URI, ``sweep`` runs the
points on Ray and gathers ``results.parquet``, ``summary_html`` writes ``summary.html``.
"""
