"""The checks of ``hft doctor``: the operator guide's runbooks as code.

``facts`` gathers what the daemon and its host say (read-only HTTP GETs, /proc, the log tails);
``runbooks`` and ``messages`` turn those facts into pass/warn/fail results, each with the guide's
next step. The split keeps every decision a pure function of recorded answers, so the decisions
are tested on captured documents and the gathering end to end against a running daemon.
"""
