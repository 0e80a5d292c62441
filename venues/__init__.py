"""venues package."""

from engine import jitcache as _jitcache

#: modules with cached compiled functions; the depth apply inlines engine's book (engine.jitcache)
_jitcache.register(__name__, ("binance/depth_apply.py", "binance/numbers.py"), inlines=("engine",))
