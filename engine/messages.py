"""The operator guide's error messages (section 12.1), as constants, with where each comes from.

Every line the system writes for one of these conditions starts with the guide's exact text
(details follow it: ``Failed to bind to port 8080: Address already in use``), so an operator who
greps for the guide's message finds it. ``CATALOGUE`` says, for each message, the guide's cause
and next step (corrected where the venues' documentation contradicts the guide), the log file the
line lands in (besides ``errors.log``, which takes every WARNING and worse), and the code that
emits it; ``docs/errors.md`` is the operator's version, and ``find`` maps a log line back to its
entry (a log scan such as ``hft doctor``'s). Messages whose condition belongs to a part this
repository does not have yet say so instead of pointing at fake code, and
conditions our design cannot produce say why.
"""

from __future__ import annotations

from dataclasses import dataclass

#: config file missing, unreadable, not valid JSON, or a bad field (daemon start, SIGHUP reload)
FAILED_TO_LOAD_CONFIGURATION = "Failed to load configuration"
#: the database store cannot connect (issue 15)
DATABASE_CONNECTION_FAILED = "Database connection failed"
#: the API port is taken (daemon start binds it before anything else)
FAILED_TO_BIND_PORT = "Failed to bind to port"
#: a venue request that changes nothing got no answer in time
EXCHANGE_CONNECTION_TIMEOUT = "Exchange connection timeout"
#: the venue refused our signature or timestamp (Binance -1022, -1021)
INVALID_SIGNATURE = "Invalid signature"
#: the venue answered 429/418 or -1003, or our local weight limiter held a request back
RATE_LIMIT_EXCEEDED = "Rate limit exceeded"
#: the venue (Binance -2010) or our balance check refused an order for lack of funds
INSUFFICIENT_BALANCE = "Insufficient balance"
#: the risk manager refused an order that would take a position past its limit
POSITION_LIMIT_EXCEEDED = "Position limit exceeded"
#: any risk refusal; the rule that failed follows (``Risk check failed: Position limit exceeded``)
RISK_CHECK_FAILED = "Risk check failed"
#: a depth diff did not follow the previous one (Binance ``U != prev u + 1``)
MARKET_DATA_SEQUENCE_GAP = "Market data sequence gap"
#: the REST depth snapshot a book is rebuilt from did not come in time
ORDER_BOOK_SNAPSHOT_TIMEOUT = "Order book snapshot timeout"
#: an order's fills do not add up to what the venue says was filled (a missed execution report)
FILL_NOT_FOUND_FOR_ORDER = "Fill not found for order"
#: a strategy's class could not be loaded or built from its config
STRATEGY_INITIALIZATION_FAILED = "Strategy initialization failed"
#: a MemoryError reached the event loop's exception handler
MEMORY_ALLOCATION_FAILED = "Memory allocation failed"
#: a database query took too long (issue 15)
DATABASE_QUERY_TIMEOUT = "Database query timeout"
#: the run directory's lock is held by another process
LOCK_ACQUISITION_TIMEOUT = "Lock acquisition timeout"
#: every worker thread of the default executor is busy
THREAD_POOL_EXHAUSTED = "Thread pool exhausted"
#: a bounded queue refused an item (the event recorder's hand-over to its writer)
QUEUE_FULL = "Queue full"
#: a venue WebSocket closed (either side); the client reconnects by itself
WEBSOCKET_CONNECTION_CLOSED = "WebSocket connection closed"
#: nothing (not even a ping) came from the venue for longer than the heartbeat timeout
HEARTBEAT_TIMEOUT = "Heartbeat timeout"
#: the pair does not exist on the venue (Binance -1121 ``Invalid symbol.``)
SYMBOL_NOT_FOUND = "Symbol not found"
#: a modify request on a venue without amend: cancel and replace instead
ORDER_MODIFICATION_NOT_SUPPORTED = "Order modification not supported"
#: an order type the venue (or our adapter) does not take
INVALID_ORDER_TYPE = "Invalid order type"

#: the source of the two database messages: the store and its writer service
STORE_SOURCE = (
    "engine.store: StoreUnavailable (Database connection failed: could not connect to server <host>:<port>: "
    "<cause>) and StoreTimeout (Database query timeout: <operation> ...) raised by engine.store.pg; the "
    "writer service (engine.store.service) logs them once per outage, makes them database_unavailable / "
    "database_timeout incidents and keeps orders and fills in its journal until the database is back"
)


@dataclass(frozen=True, slots=True)
class GuideMessage:
    """One of the guide's section 12.1 messages and what stands behind it here."""

    text: str  #: the guide's exact words; every line for the condition starts with them
    runbook: str  #: the guide's sections that treat the condition
    cause: str  #: the guide's cause, in our terms
    next_step: str  #: what the operator does next (the guide's solution, corrected where wrong)
    log: str  #: the component log the line lands in (also ``errors.log``); "" when not raised here
    source: str  #: the code that emits it, or why our design cannot produce it

    @property
    def raised_here(self) -> bool:
        return bool(self.log)


CATALOGUE: tuple[GuideMessage, ...] = (
    GuideMessage(
        FAILED_TO_LOAD_CONFIGURATION,
        "§2.1",
        "the config file is missing, unreadable, not valid JSON, or a field is wrong (the line names the "
        "file and the field)",
        "fix the file or field the line names (`jq . <file>` finds a JSON syntax error); restore a lost "
        "file from version control (`git checkout config/production.json`)",
        "system",
        "engine.errors.ConfigError (every config loader); written to system.log by the daemon's start "
        "and SIGHUP reload",
    ),
    GuideMessage(
        DATABASE_CONNECTION_FAILED,
        "§2.1, §2.3",
        "PostgreSQL/TimescaleDB not running or wrong credentials",
        "start the database; verify the connection string and credentials",
        "system",
        STORE_SOURCE,
    ),
    GuideMessage(
        FAILED_TO_BIND_PORT,
        "§2.1",
        "the API port (8080 by default) is already in use, often by a daemon still running",
        "`sudo lsof -i :8080` to find the process; stop it (SIGTERM first: it stops cleanly) or change "
        "`daemon.api.port`",
        "system",
        "the daemon's start binds the API port before anything else (engine.daemon)",
    ),
    GuideMessage(
        EXCHANGE_CONNECTION_TIMEOUT,
        "§2.2, §8.4",
        "a venue request got no answer within its timeout, or the connection was refused or dropped",
        "check the network (`ping`, `curl` the venue's REST time endpoint); check the venue's status page; "
        "the adapter retries with backoff",
        "exchanges",
        "venues.binance.rest (VenueUnavailable), venues.binance.execution (a cancel or order query without an answer)",
    ),
    GuideMessage(
        INVALID_SIGNATURE,
        "§2.2",
        "the venue refused the request's signature (wrong API secret) or its timestamp (clock skew)",
        "verify BINANCE_API_KEY/BINANCE_API_SECRET; sync the clock (chrony/ntp): the line gives the "
        "measured clock_offset_ms",
        "exchanges",
        "venues.binance.errors.log_api_error (Binance -1022, -1021)",
    ),
    GuideMessage(
        RATE_LIMIT_EXCEEDED,
        "§2.2, §4.3, §8.1, §8.3",
        "too many requests: the venue answered 429/418 (-1003), or the local weight limiter held a request back",
        "nothing leaves before Retry-After (automatic backoff); lower the request rate; on a 418 the IP is "
        "banned for minutes to days: stop and wait",
        "exchanges",
        "venues.binance.rest (429/418, Retry-After), venues.binance.errors.log_api_error",
    ),
    GuideMessage(
        INSUFFICIENT_BALANCE,
        "§4.1, §4.3",
        "not enough free funds for the order, at the venue (-2010) or in our own balance check",
        "transfer funds or reduce order sizes (`GET /api/v1/positions`, `./scripts/check_balances.sh binance`)",
        "risk",
        "engine.risk (balance check, risk.log); venue rejections in orders.log",
    ),
    GuideMessage(
        POSITION_LIMIT_EXCEEDED,
        "§4.1, §9.3",
        "the order would take the strategy's position past its configured limit",
        "close positions or raise the limit (`POST /api/v1/risk/limits`)",
        "risk",
        "engine.risk (as `Risk check failed: Position limit exceeded ...`)",
    ),
    GuideMessage(
        RISK_CHECK_FAILED,
        "§4.1, §9.3",
        "the order breaks a risk rule (named after the colon)",
        "review the violation (`GET /api/v1/risk/violations`); adjust the strategy or its limits",
        "risk",
        "engine.risk (every refusal; the line also carries lower-case `risk check failed`)",
    ),
    GuideMessage(
        MARKET_DATA_SEQUENCE_GAP,
        "§3.3",
        "a depth diff did not follow the previous one: messages were missed",
        "automatic: the book is marked invalid and rebuilt from a fresh snapshot; if gaps repeat, check the "
        "network and `POST /api/v1/marketdata/snapshot/binance/BTC-USDT`",
        "market_data",
        "venues.binance.book_sync",
    ),
    GuideMessage(
        ORDER_BOOK_SNAPSHOT_TIMEOUT,
        "§3.3",
        "the REST depth snapshot did not come within its timeout",
        "automatic retry with backoff; check the venue's status page and `grep 'rate limit' exchanges.log` "
        "(a snapshot weighs up to 250)",
        "exchanges",
        "venues.binance.rest (the depth request's outage line); the feed's retry line in market_data.log "
        "starts with it too",
    ),
    GuideMessage(
        FILL_NOT_FOUND_FOR_ORDER,
        "§4.4",
        "the venue reports more filled than the fills we received: an execution report was missed",
        "reconcile with the venue (`POST /api/v1/orders/{id}/reconcile`); the order manager queries the "
        "venue for the order's trades itself",
        "orders",
        "venues.binance.execution (an order state or executionReport whose filled quantity is ahead of "
        "the fills received: the missing part is booked from it)",
    ),
    GuideMessage(
        STRATEGY_INITIALIZATION_FAILED,
        "§9.1",
        "the strategy's class could not be loaded, or its constructor refused its config",
        "fix the strategy's config (the line names the file and the error); `tail errors.log`",
        "strategies",
        "engine.runners.spec (the strategy's constructor refused its config), engine.engine (on_start raised)",
    ),
    GuideMessage(
        MEMORY_ALLOCATION_FAILED,
        "§5.3, §6.1",
        "a MemoryError reached the event loop: the process is out of memory (or at its MemoryMax)",
        "restart the daemon; look for a leak (`./scripts/check_memory_leak.sh`, SIGUSR1 heap dump); check "
        "`memory_management` in the config",
        "system",
        "engine.logs.install_loop_exception_handler (the trading loop's exception handler, installed by "
        "venues.common.loop.new_event_loop); a MemoryError a callback catches itself is logged there",
    ),
    GuideMessage(
        DATABASE_QUERY_TIMEOUT,
        "§2.3, §7.1",
        "slow query or overloaded database",
        "optimise the query; scale the database",
        "system",
        STORE_SOURCE,
    ),
    GuideMessage(
        LOCK_ACQUISITION_TIMEOUT,
        "§5.1, §5.2",
        "the run directory's lock is held: another process is writing the same run (or a pid file is held)",
        "find the other process (`cat` the pid file, `ps`); stop it, or give this run its own directory. The "
        "hot path takes no locks, so this never means contention inside a running daemon",
        "system",
        "engine.runners.session (the run directory's lock, taken without waiting; the daemon's pid file)",
    ),
    GuideMessage(
        THREAD_POOL_EXHAUSTED,
        "§5.2",
        "all threads busy",
        "not produced: the trading process runs on one event loop and hands no work of its own to a thread "
        "pool (the recorder has one dedicated writer thread); high CPU is treated in §5.2 without it",
        "",
        "cannot arise: the trading process hands no work of its own to a thread pool (the recorder's one "
        "writer thread falling behind is reported as Queue full; the only pool user is name resolution "
        "when a connection opens, whose stall shows as Exchange connection timeout)",
    ),
    GuideMessage(
        QUEUE_FULL,
        "§3.2, §5.1",
        "the event recorder's writer cannot keep up with the events handed to it (disk too slow)",
        "check the disk (`iostat -x 1`, free space); the run stops recording cleanly rather than block trading",
        "system",
        "engine.recorder (the hand-over to the writer thread: never refuses, so nothing is dropped; the "
        "message says it holds QUEUE_WARN_JOBS jobs) and engine.store.service (the database writer's bounded "
        "queue of market rows: sampled, then dropped, saying what; orders and fills are journaled, never dropped)",
    ),
    GuideMessage(
        WEBSOCKET_CONNECTION_CLOSED,
        "§10.2",
        "a venue WebSocket closed: the venue's 24 h cut-off, serverShutdown, a network drop, or our own reconnect",
        "nothing: reconnection is automatic; the line gives the close reason; frequent closes: §10.2 "
        "(`grep -E '(disconnect|reconnect)' exchanges.log`)",
        "exchanges",
        "venues.common.ws.ReconnectingWebSocket",
    ),
    GuideMessage(
        HEARTBEAT_TIMEOUT,
        "§10.2",
        "nothing, not even a ping, came from the venue for longer than the watchdog allows (Binance pings "
        "every 20 s, not every 3 minutes)",
        "automatic reconnect; check the network (`mtr`, packet loss)",
        "exchanges",
        "venues.common.ws.ReconnectingWebSocket (the silence watchdog, and a ping without pong)",
    ),
    GuideMessage(
        SYMBOL_NOT_FOUND,
        "§4.3, §8.1",
        "the pair does not exist on the venue (Binance `-1121 Invalid symbol.`, a delisted pair)",
        "check the symbol against the venue's exchangeInfo (`./scripts/list_symbols.sh binance | grep "
        "BTC-USDT`); remove it from the strategy config",
        "exchanges",
        "venues.binance.adapter (instruments at start), venues.binance.errors (-1121); 404 from the API",
    ),
    GuideMessage(
        ORDER_MODIFICATION_NOT_SUPPORTED,
        "§4.3",
        "Binance spot has no order amend here: a modify request is refused",
        "cancel and replace the order",
        "orders",
        "venues.binance.execution (modify_order); the order manager cancels and replaces instead",
    ),
    GuideMessage(
        INVALID_ORDER_TYPE,
        "§4.3",
        "the symbol does not take the order's type (exchangeInfo orderTypes: LIMIT, MARKET, LIMIT_MAKER "
        "for post-only), or Binance answered -1116",
        "use a supported type (limit or market)",
        "orders",
        "venues.binance.execution (checked once per order template), venues.binance.errors (-1116)",
    ),
)

BY_TEXT: dict[str, GuideMessage] = {m.text: m for m in CATALOGUE}


def find(line: str) -> GuideMessage | None:
    """The guide message a log line carries, if any (the earliest in the line)."""
    best: tuple[int, GuideMessage] | None = None
    for m in CATALOGUE:
        i = line.find(m.text)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, m)
    return None if best is None else best[1]
