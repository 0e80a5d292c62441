"""The long-lived service an operator runs (issue 14): the trading process (``service``), the
unix-socket bridge to the API process (``bridge``), the operations the API exposes (``ops``),
the metrics snapshot (``telemetry``), the heap summary (``heap``) and the memory checks
(``memory``). ``docs/daemon-contract.md`` fixes the seams between them."""
