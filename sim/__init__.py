"""sim package."""

from engine import jitcache as _jitcache

#: modules with cached compiled functions; they inline engine's (the book), so an edit of either
#: starts a fresh cache for them (engine.jitcache)
_jitcache.register(
    __name__,
    (
        "kernel.py",
        "kernel_state.py",
        "matching.py",
        "queue.py",
        "compiled/eventbuf.py",
        "compiled/loop.py",
        "compiled/rows.py",
    ),
    inlines=("engine",),
)
