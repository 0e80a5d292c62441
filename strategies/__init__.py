"""strategies package."""

from engine import jitcache as _jitcache

#: compiled strategies (``engine.compiled_strategy``); they inline the engine's ABI helpers
_jitcache.register(__name__, ("quote_at_touch_compiled.py",), inlines=("engine",))
