"""The decision: the Validator runs path validation, revocation and identity and returns a Verdict;
the verdict cache. The top of the sans-IO core. Layers: docs/architecture.md.
"""

from .cache import CacheStats, VerdictCache
from .cache import stats as cache_stats
from .validator import Validation, Validator
from .verdict import Verdict

__all__ = ["CacheStats", "Validation", "Validator", "Verdict", "VerdictCache", "cache_stats"]
